// Draining on SIGTERM: the server closes hub connections with allowReconnect, so clients with
// automatic reconnect go to Reconnecting instead of Disconnected. A new process on the same
// port and data directory then takes the client back, with the tournament still there.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  HubConnectionState, api, assignPlayer, connect, createTournament, deadline, freshDataDir,
  removeDataDir, startServer, stopAll, stopServer, uniqueName,
} from './helpers.mjs';

let server;
let restarted;
let dataDir;
const open = [];

before(async () => {
  dataDir = freshDataDir();
  server = await startServer({ dataDir });
});

after(async () => {
  await stopAll(...open);
  await stopServer(server);
  await stopServer(restarted);
  removeDataDir(dataDir);
});

test('SIGTERM makes the client reconnect, and it comes back to a restarted server', { timeout: 60_000 }, async () => {
  const name = uniqueName('Late night');
  const tournament = await createTournament(server, name, 3);
  await assignPlayer(server, tournament, 'Rita', 'Before');
  const client = await connect(server, tournament, {
    label: 'reconnecting',
    reconnectDelays: [0, 500, 1000, 2000],
  });
  open.push(client);
  const closed = [];
  client.connection.onclose((error) => closed.push(error?.message ?? 'no error'));
  const reconnecting = new Promise((resolve) => client.connection.onreconnecting(resolve));
  const reconnected = new Promise((resolve) => client.connection.onreconnected(resolve));

  const exit = stopServer(server);
  const error = await deadline(reconnecting, 10_000, 'onreconnecting after SIGTERM').catch((e) => {
    e.message += `\nclose events: ${JSON.stringify(closed)}\nclient log (tail):\n${client.trace.tail()}`;
    throw e;
  });
  assert.equal(client.connection.state, HubConnectionState.Reconnecting);
  // The client reports a close record carrying an error this way; it reconnects after one only
  // when the record says allowReconnect.
  assert.match(
    error?.message ?? '',
    /^Server returned an error on close: .+/,
    `the server's close record caused the reconnect\nclient log (tail):\n${client.trace.tail()}`,
  );
  const { code, signal } = await exit;
  assert.equal(code, 0, `lct exits cleanly on SIGTERM (signal ${signal})\n${server.logs.slice(-10).join('\n')}`);

  // A new process on the same address and data directory.
  restarted = await startServer({ dataDir, listen: server.addr });
  const state = await api(restarted, 'GET', `/api/Tournament?id=${tournament}`);
  assert.equal(state.tournamentName, name);
  assert.deepEqual(state.players.map((p) => `${p.name} ${p.surname}`), ['Rita Before']);

  await deadline(reconnected, 15_000, 'onreconnected to the restarted server').catch((e) => {
    e.message += `\nclose events: ${JSON.stringify(closed)}\nclient log (tail):\n${client.trace.tail()}`;
    throw e;
  });
  assert.equal(client.connection.state, HubConnectionState.Connected);
  await assignPlayer(restarted, tournament, 'Rudi', 'After');
  const [first] = await client.inbox.waitForCount(1);
  assert.deepEqual(first, { type: 'PlayerAssigned', tournamentId: tournament, name: 'Rudi', surname: 'After' });
  assert.deepEqual(closed, [], 'the client never gave up');
});
