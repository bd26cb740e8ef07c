// `/t/{id}`: the organiser's screen, made to be shown on a TV. The QR code of the join link,
// the players with who is online, what each is looking at or picked, the teams, and the Draw
// button, which only the device that created the tournament (holding its token) can use.

import { api, device, pageTournamentId, qrUrl } from './api.js';
import { TournamentModel, follow, playerKey } from './model.js';
import { $, el, errorLine, statusPill, teamGrid, renderOnline, renderDraw, crest, busy } from './ui.js';

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
