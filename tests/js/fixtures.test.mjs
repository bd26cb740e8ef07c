// The matches after the draw, heard through the hub by the official @microsoft/signalr client
// connected as the LetChooseTeams front end connects: the night is played in v1 (join, pick,
// draw), the organiser then schedules and records through v2, and the hub's new payloads
// (FixturesScheduled, ResultRecorded, ResultCorrected, NightFinished) arrive as JSON strings
// like every other, after the old ones, without disturbing the connection or v1's answers.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  HubConnectionState, api, assignPlayer, connect, draw, freshDataDir, removeDataDir, selectTeam,
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

/** A v2 command (with the organiser token when given); asserts success and returns the answer. */
async function v2Post(path, token, body) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${server.baseUrl}/api/v2/tournaments${path}`, {
    method: 'POST', headers, body: JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `POST ${path} answered ${response.status}: ${text}`);
  return JSON.parse(text);
}

test('a final, its correction and the end of the night reach a hub client as new payload types', async () => {
  const created = await v2Post('', null, { name: uniqueName('Final night'), playerLimit: 2 });
  const id = created.id;
  const client = await connect(server, id, { label: 'front end' });
  open.push(client);

  const anna = { name: 'Anna', surname: 'Nowak' };
  const ben = { name: 'Ben', surname: 'Kowalski' };
  await assignPlayer(server, id, anna.name, anna.surname);
  await assignPlayer(server, id, ben.name, ben.surname);
  await selectTeam(server, id, anna.name, anna.surname, 'PSG');
  await selectTeam(server, id, ben.name, ben.surname, 'Chelsea');
  await draw(server, id);
  const v1Before = await api(server, 'GET', `/api/Tournament?id=${id}`);

  const fixtures = await v2Post(`/${id}/fixtures`, created.organiserToken, { format: 'knockout' });
  const final = fixtures.matches[0];
  const home = { name: final.home.name, surname: final.home.surname };
  const away = { name: final.away.name, surname: final.away.surname };
  await v2Post(`/${id}/matches/1/result`, created.organiserToken,
    { homeGoals: 1, awayGoals: 1, penaltyWinner: 'home' });
  await v2Post(`/${id}/matches/1/result`, created.organiserToken, { homeGoals: 0, awayGoals: 2 });
  await v2Post(`/${id}/finish`, created.organiserToken, {});

  const all = await client.inbox.waitForCount(9);
  assert.deepEqual(all.slice(0, 5).map((m) => m.type),
    ['PlayerAssigned', 'PlayerAssigned', 'TeamSelected', 'TeamSelected', 'TeamsDrawn'], 'the old payloads, unchanged');
  assert.deepEqual(all.slice(5), [
    {
      type: 'FixturesScheduled', tournamentId: id, format: 'knockout', legs: null,
      matches: [{ number: 1, round: 1, leg: 1, home, away, homeFrom: null, awayFrom: null }],
    },
    {
      type: 'ResultRecorded', tournamentId: id, matchNumber: 1, home, away,
      homeGoals: 1, awayGoals: 1, penaltyWinner: 'home',
    },
    {
      type: 'ResultCorrected', tournamentId: id, matchNumber: 1, home, away,
      homeGoals: 0, awayGoals: 2, penaltyWinner: null,
    },
    { type: 'NightFinished', tournamentId: id },
  ]);
  assert.equal(client.connection.state, HubConnectionState.Connected);
  assert.deepEqual(new Set([anna, ben].map((p) => p.name)), new Set([home.name, away.name]));

  // v1 answers as before: the matches add nothing to its shape.
  const v1After = await api(server, 'GET', `/api/Tournament?id=${id}`);
  assert.deepEqual({ ...v1After, version: v1Before.version }, v1Before);
  assert.equal(v1After.version, v1Before.version + 4);
});
