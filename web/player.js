// `/p/{id}`: the player's phone. Tapping a tile shows everyone where the player is looking and
// asks to confirm; the confirmed pick is final. Taken teams are disabled as soon as they are
// taken, others' looks show as badges, and the draw result appears when the organiser draws.
// Once the matches are scheduled the phone shows the player's own next match and position, the
// table and every match, live; when the organiser allows it the player enters their results.

import { api, device, pageTournamentId } from './api.js';
import { TournamentModel, follow, playerKey } from './model.js';
import { $, el, errorLine, statusPill, teamGrid, renderOnline, renderDraw, fullName, busy } from './ui.js';
import { matchItem, renderTable, scoreSheet, roundName, sideText, ordinal, stageText } from './night.js';

export async function player() {
  const id = pageTournamentId();
  const error = errorLine($('#error'));
  if (!id) {
    $('#title').textContent = 'Unknown tournament';
    return;
  }
  const own = device.get(id);
  if (!own.playerToken) {
    location.replace(`/player/register/${id}`);
    return;
  }
  const token = own.playerToken;
  const model = new TournamentModel(id);
  const confirmBar = $('#confirm');
  const confirmButton = $('#confirm-button');
  let candidate = null; // the tile tapped, waiting for confirmation
  let picking = false;
  let resultShown = false;

  // This device's player: by id, or by the name it joined with.
  const me = () => model.players.find((p) => p.id && p.id === own.playerId)
    || model.players.find((p) => own.name && p.name === own.name && p.surname === own.surname)
    || null;

  const tap = (team) => {
    const self = me();
    if (!self || self.selectedTeam || model.draw || picking) return;
    error.clear();
    candidate = team;
    render();
    api.click(id, token, team).catch((err) => error.show(err));
  };
  const grid = teamGrid($('#teams'), { onTap: tap });
  const sheet = scoreSheet();
  const enterButton = $('#enter-result');
  let nextMatch = null; // the player's next match, when they may enter its result

  const render = () => {
    const view = model.view;
    if (!view) return;
    const self = me();
    const selfKey = self ? playerKey(self) : null;
    const { players, draw } = model;
    const takenBy = model.takenBy();
    $('#title').textContent = view.name;
    document.title = `${view.name} · LCT`;

    if (candidate && (takenBy.has(candidate) || draw || (self && self.selectedTeam))) {
      const holder = takenBy.get(candidate);
      if (holder && playerKey(holder) !== selfKey) error.show(`${candidate} was just taken by ${fullName(holder)}.`);
      candidate = null;
    }

    $('#me').textContent = self ? fullName(self) : 'Not a player of this tournament';
    const choosing = Boolean(self && !self.selectedTeam && !draw);
    $('#teams-title').textContent = choosing ? 'Pick your team' : 'Teams';
    $('#teams-hint').hidden = !choosing;
    if (self) {
      $('#status').textContent = statusText(model, self);
    } else {
      // The server does not know this device's player (say, its data was reset): let it join anew.
      device.update(id, { playerId: null, playerToken: null });
      $('#status').replaceChildren('This device is not a player of this tournament. ',
        el('a', { href: `/player/register/${id}` }, 'Join it'));
    }

    grid.update({
      teams: model.teams,
      takenBy,
      clicks: model.clicksByTeam(selfKey),
      mine: self ? self.selectedTeam : null,
      candidate,
      locked: !self || Boolean(self.selectedTeam) || Boolean(draw) || picking,
    });

    confirmBar.hidden = !candidate;
    if (candidate) {
      $('#confirm-team').textContent = candidate;
      confirmButton.textContent = `Pick ${candidate}`;
    }

    $('#online-count').textContent = `· ${players.filter((p) => model.online.has(playerKey(p))).length} of ${players.length}`;
    renderOnline($('#online'), { players, online: model.online, selfKey });

    $('#result-card').hidden = !draw;
    if (draw) {
      renderDraw($('#draw-result'), { draw, selfKey });
      const mine = draw.find((a) => playerKey(a) === selfKey);
      $('#my-result').textContent = mine ? `You play with ${mine.team}` : '';
      if (!resultShown) {
        resultShown = true;
        $('#result-card').scrollIntoView({ block: 'start' });
      }
    }
    renderNight(self, selfKey);
  };

  const renderNight = (self, selfKey) => {
    const night = model.night;
    for (const card of ['#night-card', '#table-card', '#matches-card']) $(card).hidden = !night;
    $('#teams-card').hidden = Boolean(night);
    nextMatch = null;
    if (!night) return;
    const rows = model.standings && model.standings.scheduled ? model.standings.rows : [];
    const row = self ? rows.find((r) => playerKey(r) === selfKey) : null;
    const next = row && row.nextMatch ? night.matches.find((m) => m.number === row.nextMatch) : null;
    $('#night-title').textContent = next ? 'Your next match' : 'Your night';
    if (next) {
      const atHome = Boolean(next.home) && playerKey(next.home) === selfKey;
      const opponent = next[atHome ? 'away' : 'home'];
      $('#my-next').textContent = `You v ${sideText(next, atHome ? 'away' : 'home')}`;
      $('#my-next-detail').textContent = [`Match ${next.number}`, roundName(night, next.round),
        atHome ? 'at home' : 'away', opponent && opponent.team ? `they play with ${opponent.team}` : null]
        .filter(Boolean).join(' · ');
      if (next.status === 'ready' && night.playersMayRecord && !night.finished) nextMatch = next;
    } else {
      $('#my-next').textContent = !row ? ''
        : row.champion ? 'Champion!'
          : row.eliminated ? 'You are out of the knockout.'
            : night.finished ? 'The night is over.' : 'All your matches are played.';
      $('#my-next-detail').textContent = night.finished ? 'Thanks for playing.' : '';
    }
    enterButton.hidden = !nextMatch;
    $('#my-position').textContent = !row ? ''
      : `${ordinal(row.position)} of ${rows.length} · ${night.format === 'knockout'
        ? stageText(night, row)
        : `${row.points} ${row.points === 1 ? 'point' : 'points'}`}`;

    $('#table-title').textContent = night.finished ? 'Final table' : 'Table';
    if (rows.length) renderTable($('#standings'), { fixtures: night, standings: model.standings, selfKey });
    const champion = night.champion;
    $('#champion').hidden = !champion;
    $('#champion').textContent = champion ? `Champion: ${fullName(champion)}` : '';
    $('#matches').replaceChildren(...night.matches.map((m) => matchItem(night, m, { selfKey })));
  };

  enterButton.addEventListener('click', () => {
    const match = nextMatch;
    if (!match) return;
    error.clear();
    sheet.open(model.night, match, async (homeGoals, awayGoals, penaltyWinner) => {
      const fixtures = await api.recordResult(id, token, match.number, { homeGoals, awayGoals, penaltyWinner });
      if (fixtures.version > model.fixtures.version) model.fixtures = fixtures;
      model.changed();
      model.readNight().catch((err) => error.show(err));
    });
  });

  confirmButton.addEventListener('click', async () => {
    const team = candidate;
    if (!team) return;
    error.clear();
    picking = true;
    try {
      const view = await busy(confirmButton, () => api.select(id, token, team));
      // The answer is the whole view; keep it unless live messages already went further.
      if (view && typeof view.version === 'number' && view.version > model.version) model.view = view;
    } catch (err) {
      error.show(err);
    }
    picking = false;
    candidate = null;
    model.changed();
  });
  $('#cancel-button').addEventListener('click', () => {
    candidate = null;
    render();
  });

  model.subscribe(render);
  try {
    // Read at every connect: a token the server no longer knows is dropped (see `render`).
    const held = () => device.get(id).playerToken || null;
    await follow(model, { token: held, onStatus: statusPill($('#live')), onError: (err) => error.show(err) });
  } catch (err) {
    $('#title').textContent = 'Cannot open the tournament';
    error.show(err);
  }
}

function statusText(model, self) {
  const { view, players } = model;
  if (model.draw) return 'The teams are drawn.';
  const picked = players.filter((p) => p.selectedTeam).length;
  if (self.selectedTeam) {
    return model.everyonePicked
      ? `You picked ${self.selectedTeam}. Everyone has picked: waiting for the draw.`
      : `You picked ${self.selectedTeam}. Waiting for the others (${picked} of ${view.playerLimit} picked).`;
  }
  const waiting = view.playerLimit - players.length;
  return waiting > 0
    ? `${players.length} of ${view.playerLimit} players are here. Tap a team, then confirm.`
    : 'Everyone is here. Tap a team, then confirm.';
}
