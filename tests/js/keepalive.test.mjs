// Server keep-alive: the server pings every 15 s when idle, which keeps a client with a 20 s
// server timeout connected. The test idles for 21 s on purpose.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  HubConnectionState, assignPlayer, connect, createTournament, freshDataDir, removeDataDir,
  startServer, stopAll, stopServer, uniqueName,
} from './helpers.mjs';

let server;
let dataDir;
const open = [];

before(async () => {
  dataDir = freshDataDir();
  server = await startServer({ dataDir });
});

after(async () => {
  await stopAll(...open);
  await stopServer(server);
  removeDataDir(dataDir);
});

const SERVER_TIMEOUT_MS = 20_000;
const IDLE_MS = 21_000;

test('an idle connection stays connected past the client server-timeout', { timeout: 60_000 }, async () => {
  const tournament = await createTournament(server, uniqueName('Quiet night'), 2);
  const client = await connect(server, tournament, {
    label: 'idle',
    configure: (builder) => builder
      .withServerTimeout(SERVER_TIMEOUT_MS)
      .withKeepAliveInterval(5_000),
  });
  open.push(client);
  assert.equal(client.connection.serverTimeoutInMilliseconds, SERVER_TIMEOUT_MS);
  assert.equal(client.connection.keepAliveIntervalInMilliseconds, 5_000);

  const events = [];
  client.connection.onclose((error) => events.push(`closed: ${error?.message ?? 'no error'}`));
  client.connection.onreconnecting((error) => events.push(`reconnecting: ${error?.message ?? 'no error'}`));

  // Idle on purpose: longer than the client's server timeout, with no traffic from the server
  // except its pings.
  await new Promise((resolve) => setTimeout(resolve, IDLE_MS));

  assert.deepEqual(events, [], `no close or reconnect while idle\nclient log (tail):\n${client.trace.tail()}`);
  assert.equal(client.connection.state, HubConnectionState.Connected);
  const received = client.trace.lines.filter((l) => /data received/.test(l));
  assert.ok(
    received.some((l) => l.includes('{"type":6}')),
    `the server sent at least one ping while idle\nclient log (tail):\n${client.trace.tail()}`,
  );

  // The connection still delivers.
  await assignPlayer(server, tournament, 'Ida', 'Idle');
  const [first] = await client.inbox.waitForCount(1);
  assert.deepEqual(first, { type: 'PlayerAssigned', tournamentId: tournament, name: 'Ida', surname: 'Idle' });
});
