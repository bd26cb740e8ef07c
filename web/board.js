// `/t/{id}`: the organiser's screen, made to be shown on a TV. The QR code of the join link,
// the players with who is online, what each is looking at or picked, the teams, and the Draw
// button, which only the device that created the tournament (holding its token) can use. After
// the draw that device schedules the matches, enters and corrects results and finishes the
// night; every screen shows the next matches, the results and the table as they change.

import { api, device, pageTournamentId, qrUrl } from './api.js';
import { TournamentModel, follow, playerKey } from './model.js';
import { $, el, errorLine, statusPill, teamGrid, renderOnline, renderDraw, crest, busy, fullName } from './ui.js';
import { matchItem, unplayed, played, renderTable, scoreSheet, roundName } from './night.js';

export async function board() {
  const id = pageTournamentId();
  const error = errorLine($('#error'));
  if (!id) {
    $('#title').textContent = 'Unknown tournament';
    return;
  }
  const organiserToken = device.get(id).organiserToken || null;
  const model = new TournamentModel(id);
  const grid = teamGrid($('#teams'));
  const drawButton = $('#draw-button');
  const scheduleForm = $('#schedule-form');
  const finishButton = $('#finish-button');
  const sheet = organiserToken ? scoreSheet() : null;

  const joinUrl = `${location.origin}/player/register/${id}`;
  $('#qr').src = qrUrl(id);
  $('#join-link').href = joinUrl;
  $('#join-link').textContent = joinUrl.replace(/^https?:\/\//, '');

  const render = () => {
    const view = model.view;
    if (!view) return;
    const { players, draw } = model;
    const picked = players.filter((p) => p.selectedTeam).length;
    $('#title').textContent = view.name;
    document.title = `${view.name} · LCT`;

    $('#join-card').hidden = model.seatsLeft === 0;
    $('#seats').textContent = `${players.length} of ${view.playerLimit} seats taken`;

    $('#no-players').hidden = players.length > 0;
    $('#online-count').textContent = players.length ? `· ${players.filter(isOnline).length} online` : '';
    renderOnline($('#players'), { players, online: model.online, extra: (p) => playerState(model, p) });

    grid.update({ teams: model.teams, takenBy: model.takenBy(), clicks: model.clicksByTeam() });

    renderDraw($('#draw-result'), { draw: draw || [] });
    $('#draw-card').classList.toggle('is-drawn', Boolean(draw));
    drawButton.hidden = Boolean(draw) || !organiserToken;
    drawButton.disabled = !model.everyonePicked || drawButton.hasAttribute('aria-busy');
    $('#draw-hint').textContent = draw
      ? 'The teams are drawn.'
      : !organiserToken
        ? 'The draw is made on the device that created this tournament.'
        : model.everyonePicked
          ? 'Everyone has picked. Ready when you are.'
          : `The draw opens when all ${view.playerLimit} players have joined and picked (${picked} picked so far).`;
    renderNight();
  };

  // Enters or corrects a result with the organiser token; the answer is the new fixtures.
  const enterResult = (match) => sheet.open(model.night, match, async (homeGoals, awayGoals, penaltyWinner) => {
    const fixtures = await api.recordResult(id, organiserToken, match.number, { homeGoals, awayGoals, penaltyWinner });
    if (fixtures.version > model.fixtures.version) model.fixtures = fixtures;
    model.changed();
    model.readNight().catch((err) => error.show(err));
  });

  const renderNight = () => {
    const night = model.night;
    const drawn = Boolean(model.draw);
    $('#schedule-card').hidden = !drawn || Boolean(night);
    scheduleForm.hidden = !organiserToken;
    $('#schedule-hint').textContent = organiserToken
      ? 'Everyone has a team. Now choose how the night is played.'
      : 'Everyone has a team. The organiser chooses how the night is played.';
    for (const card of ['#next-card', '#results-card', '#table-card']) $(card).hidden = !night;
    $('#teams-card').hidden = Boolean(night);
    $('#draw-card').hidden = Boolean(night);
    document.body.classList.toggle('is-night', Boolean(night));
    if (!night) return;

    const open = !night.finished && Boolean(organiserToken);
    const toPlay = unplayed(night);
    // The organiser can enter any match; the TV shows what comes next.
    const next = open ? toPlay : toPlay.slice(0, 4);
    $('#next-matches').replaceChildren(...next.map((m) => matchItem(night, m, {
      action: open && m.status === 'ready' ? { label: 'Enter result', onClick: enterResult } : null,
    })));
    // Who sits out the round being played: a bye in a knockout, the rest in an odd league.
    const current = toPlay.length ? night.rounds.find((r) => r.round === toPlay[0].round) : null;
    const byes = current ? current.byes.map(fullName) : [];
    $('#byes').hidden = byes.length === 0;
    $('#byes').textContent = !byes.length ? ''
      : night.format === 'knockout'
        ? `Through to the next round on a bye: ${byes.join(', ')}`
        : `Resting in ${roundName(night, current.round).toLowerCase()}: ${byes.join(', ')}`;
    $('#no-next').hidden = toPlay.length > 0;
    $('#no-next').textContent = night.finished ? 'The night is over.' : 'Every match is played.';
    finishButton.hidden = !open || toPlay.length > 0;

    const done = played(night);
    $('#results-card').hidden = done.length === 0;
    $('#results').replaceChildren(...done.map((m) => matchItem(night, m, {
      action: open ? { label: 'Correct', onClick: enterResult } : null,
    })));

    $('#table-title').textContent = night.finished ? 'Final table' : 'Table';
    if (model.standings && model.standings.scheduled) {
      renderTable($('#standings'), { fixtures: night, standings: model.standings });
    }
    const champion = night.champion;
    $('#champion').hidden = !champion;
    $('#champion').textContent = champion
      ? `Champion: ${fullName(champion)}${champion.team ? ` with ${champion.team}` : ''}`
      : '';
  };
  const isOnline = (p) => model.online.has(playerKey(p));

  drawButton.addEventListener('click', async () => {
    error.clear();
    try {
      const draw = await busy(drawButton, () => api.draw(id, organiserToken));
      // The live TeamsDrawn event brings the same result; show it now in case it is late.
      if (!model.draw) {
        model.view.draw = draw;
        for (const a of draw) {
          const player = model.players.find((p) => p.name === a.name && p.surname === a.surname);
          if (player) player.drawnTeam = a.team;
        }
      }
    } catch (err) {
      error.show(err);
    }
    render();
  });

  scheduleForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.clear();
    const choice = scheduleForm.elements.format.value;
    const format = choice === 'knockout' ? 'knockout' : 'league';
    const legs = choice === 'league-2' ? 2 : 1;
    const playersMayRecord = scheduleForm.elements.playersMayRecord.checked;
    try {
      const fixtures = await busy($('#schedule-button'),
        () => api.schedule(id, organiserToken, { format, legs, playersMayRecord }));
      if (!model.fixtures || fixtures.version > model.fixtures.version) model.fixtures = fixtures;
      await model.readNight();
    } catch (err) {
      error.show(err);
    }
    render();
  });

  finishButton.addEventListener('click', async () => {
    error.clear();
    try {
      await busy(finishButton, () => api.finish(id, organiserToken));
      await model.readNight();
    } catch (err) {
      error.show(err);
    }
    render();
  });

  model.subscribe(render);
  try {
    await follow(model, { onStatus: statusPill($('#live')), onError: (err) => error.show(err) });
  } catch (err) {
    $('#title').textContent = 'Cannot open the tournament';
    $('#join-card').hidden = true;
    error.show(err);
  }
}

/** What a player is doing: looking at a team, picked one, or got one in the draw. */
function playerState(model, player) {
  if (player.drawnTeam) {
    return el('span', { class: 'state is-drawn' }, el('span', { class: 'arrow', 'aria-hidden': 'true' }, '→ '),
      crest(player.drawnTeam), player.drawnTeam);
  }
  if (player.selectedTeam) {
    return el('span', { class: 'state is-picked' }, 'picked ', crest(player.selectedTeam), player.selectedTeam);
  }
  const looking = model.clickOf(player);
  return el('span', { class: 'state is-choosing' }, looking ? `looking at ${looking}` : 'choosing…');
}
