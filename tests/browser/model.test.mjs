// The web client's tournament model on its own, under Node (no browser, no server): the API it
// reads is replaced by answers the test gives, so the order of answers and live messages that
// a network can produce is exact.

import { describe, it, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { api } from '../../web/api.js';
import { TournamentModel } from '../../web/model.js';

const view = (version, players) => ({ id: 't', name: 'Cup', playerLimit: 2, version, players, draw: [] });
const anna = (selectedTeam = null) => ({ id: 'a', name: 'Anna', surname: 'Nowak', selectedTeam });

/** Makes `api.tournament` answer `views` in turn, each when the test resolves it. */
function answering(views) {
  const pending = [];
  api.tournament = () => new Promise((resolve) => pending.push(() => resolve(views.shift())));
  return { answerNext: () => pending.shift()(), waiting: () => pending.length };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('the tournament model', () => {
  beforeEach(() => {
    api.presence = async () => ({ players: [] });
  });

  it('a read that answers older than what live events applied does not undo them', async () => {
    const model = new TournamentModel('t');
    model.view = view(4, [anna()]);
    model.newest = 4;
    const seen = [];
    model.subscribe((m) => seen.push(m.version));
    const reads = answering([view(4, [anna()]), view(5, [anna('Chelsea')])]);
    const reading = model.reload();
    await settle();
    // Anna's pick arrives live while the read is on its way, and the read answers from before it.
    model.apply({ type: 'TeamSelected', version: 5, event: { name: 'Anna', surname: 'Nowak', team: 'Chelsea' } });
    reads.answerNext();
    await settle();
    assert.equal(model.players[0].selectedTeam, 'Chelsea', 'the pick stays shown');
    reads.answerNext();
    await reading;
    assert.equal(model.version, 5);
    assert.ok(seen.every((version) => version >= 5), `versions shown: ${seen}`);
  });

  it('a read that answers older than an event announced is made again', async () => {
    const model = new TournamentModel('t');
    model.view = view(3, []);
    model.newest = 3;
    const reads = answering([view(4, [anna()]), view(5, [anna('PSG')])]);
    // Version 5 arrives with 4 missing: a gap, which reads the view.
    const reading = model.apply({ type: 'TeamSelected', version: 5, event: { name: 'Anna', surname: 'Nowak', team: 'PSG' } });
    await settle();
    reads.answerNext();
    await settle();
    assert.equal(reads.waiting(), 1, 'read again: the answer was older than version 5');
    reads.answerNext();
    await reading;
    assert.equal(model.version, 5);
    assert.equal(model.players[0].selectedTeam, 'PSG');
  });

  it('a resumption too far back to replay reads the tournament again', async () => {
    const model = new TournamentModel('t');
    model.view = view(3, [anna()]);
    model.newest = 3;
    const reads = answering([view(600, [anna('PSG')])]);
    // The server replays nothing (600 - 3 events is more than it replays) and says where it is.
    const reading = model.apply({ type: 'Subscribed', version: 600 });
    assert.ok(reading, 'a read of the tournament is started');
    await settle();
    reads.answerNext();
    await reading;
    assert.equal(model.version, 600);
    assert.equal(model.players[0].selectedTeam, 'PSG');
    // Live events go on from there.
    model.apply({ type: 'TeamSelected', version: 601, event: { name: 'Anna', surname: 'Nowak', team: 'Chelsea' } });
    assert.equal(model.players[0].selectedTeam, 'Chelsea');
  });

  it('after a rewind an older view is the truth, and the night read before is forgotten', async () => {
    const model = new TournamentModel('t');
    model.view = view(6, [anna('Chelsea')]);
    model.fixtures = { version: 6, scheduled: true, matches: [] };
    const reads = answering([view(3, [anna()])]);
    const reading = model.apply({ type: 'Subscribed', version: 3 });
    assert.equal(model.fixtures, null);
    await settle();
    reads.answerNext();
    await reading;
    assert.equal(model.version, 3);
    assert.equal(model.players[0].selectedTeam, null);
    // The next event takes the version the forgotten one had, and is applied.
    model.apply({ type: 'TeamSelected', version: 4, event: { name: 'Anna', surname: 'Nowak', team: 'PSG' } });
    assert.equal(model.players[0].selectedTeam, 'PSG');
  });
});
