// Clients that do not skip negotiation: the negotiate answer offers WebSockets only, and the
// official client connects with it and receives the tournament's messages.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  HttpTransportType, HubConnectionState, assignPlayer, connect, createTournament, freshDataDir,
  removeDataDir, startServer, stopAll, stopServer, uniqueName,
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

test('negotiate answers a WebSockets-only transport list with a connection token', async () => {
  const tournament = await createTournament(server, uniqueName('Negotiated'), 2);
  const response = await fetch(
    `${server.baseUrl}/hubs/actions/negotiate?negotiateVersion=1&tournamentId=${tournament}`,
    { method: 'POST' },
  );
  const text = await response.text();
  assert.equal(response.status, 200, text);
  assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
  const body = JSON.parse(text);
  assert.equal(body.negotiateVersion, 1);
  assert.equal(typeof body.connectionId, 'string');
  assert.ok(body.connectionId.length > 0);
  assert.equal(typeof body.connectionToken, 'string');
  assert.ok(body.connectionToken.length > 0);
  assert.notEqual(body.connectionToken, body.connectionId);
  assert.equal(body.availableTransports.length, 1, `only one transport: ${text}`);
  assert.equal(body.availableTransports[0].transport, 'WebSockets');
  assert.ok(body.availableTransports[0].transferFormats.includes('Text'), text);
});

test('the client connects after negotiating and receives PlayerAssigned', async () => {
  const tournament = await createTournament(server, uniqueName('Negotiated'), 2);
  // As configured by a front end that does not skip negotiation...
  const ws = await connect(server, tournament, {
    label: 'negotiated-ws',
    httpOptions: { transport: HttpTransportType.WebSockets },
  });
  // ...and with the client's defaults, where it picks a transport from the negotiate answer.
  const auto = await connect(server, tournament, { label: 'negotiated-default', httpOptions: {} });
  open.push(ws, auto);
  for (const client of [ws, auto]) {
    assert.equal(client.connection.state, HubConnectionState.Connected);
    assert.ok(client.connection.connectionId, 'the connection id comes from negotiation');
  }
  assert.notEqual(ws.connection.connectionId, auto.connection.connectionId);
  assert.match(auto.trace.lines.join('\n'), /Selecting transport 'WebSockets'/);

  await assignPlayer(server, tournament, 'Nina', 'Negotiated');
  for (const client of [ws, auto]) {
    const [first] = await client.inbox.waitForCount(1);
    assert.deepEqual(first, { type: 'PlayerAssigned', tournamentId: tournament, name: 'Nina', surname: 'Negotiated' });
  }
});
