// The night after the draw, as every screen shows it: the table, the matches (next ones and
// results), the names of rounds, and the score sheet the organiser (or a player, when allowed)
// fills in. The server decides everything; these only draw what `GET …/fixtures` and
// `GET …/standings` answer.

import { $, el, crest, fullName } from './ui.js';

/** 1st, 2nd, 3rd, 4th … 11th, 12th, 13th, 21st. */
export function ordinal(n) {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? 'th' : ({ 1: 'st', 2: 'nd', 3: 'rd' }[n % 10] || 'th');
  return `${n}${suffix}`;
}

/** "Round 2", or in a knockout "Final", "Semi-finals", "Quarter-finals" from the end. */
export function roundName(fixtures, round) {
  if (fixtures.format === 'knockout') {
    const last = fixtures.rounds.length;
    if (round === last) return 'Final';
    if (round === last - 1) return 'Semi-finals';
    if (round === last - 2) return 'Quarter-finals';
    return `Round ${round}`;
  }
  const leg = fixtures.rounds.find((r) => r.round === round)?.leg;
  return leg === 2 ? `Round ${round} · return leg` : `Round ${round}`;
}

/** The players a match has, each side's text: the player, or where the player will come from. */
export function sideText(match, side) {
  const player = match[side];
  if (player) return fullName(player);
  const from = match[`${side}From`];
  return from ? `Winner of match ${from}` : 'To be decided';
}

/** How far a knockout player got, in words: "Champion", "In the final", "Out in round 1". */
export function stageText(fixtures, row) {
  if (row.champion) return 'Champion';
  if (!row.reachedRound) return '';
  const name = roundName(fixtures, row.reachedRound);
  const phrase = name.startsWith('Round') ? name.toLowerCase() : `the ${name.toLowerCase()}`;
  return row.eliminated ? `Out in ${phrase}` : `In ${phrase}`;
}

/** "2 – 1". */
function scoreText(match) {
  const r = match.result;
  return `${r.homeGoals} – ${r.awayGoals}`;
}

function penaltyNote(match) {
  const r = match.result;
  if (!r || !r.penaltyWinner) return null;
  const winner = match[r.penaltyWinner];
  return el('span', { class: 'pens' }, `${winner ? fullName(winner) : `The ${r.penaltyWinner} side`} won on penalties`);
}

function side(match, which, selfKey) {
  const player = match[which];
  const mine = player && selfKey && `${player.name}\u0000${player.surname}` === selfKey;
  const won = match.result && match.result.winnerId && player && match.result.winnerId === player.playerId;
  return el('span', { class: `match-side ${which}${player ? '' : ' is-tbd'}${mine ? ' is-me' : ''}${won ? ' is-winner' : ''}` },
    player && player.team ? crest(player.team) : null,
    el('span', { class: 'side-text' },
      el('span', { class: 'who' }, sideText(match, which), mine ? el('span', { class: 'you' }, ' (you)') : null),
      player && player.team ? el('span', { class: 'team-name' }, player.team) : null));
}

/**
 * One match as a list item: home, score (or "v"), away; `action` adds a button
 * (`{label, onClick}`), e.g. to enter or correct the result.
 */
export function matchItem(fixtures, match, { selfKey = null, action = null, showRound = true } = {}) {
  const played = match.status === 'played';
  const item = el('li', { class: `match is-${match.status}`, 'data-match': match.number },
    el('span', { class: 'match-meta' },
      `Match ${match.number}`, showRound ? ` · ${roundName(fixtures, match.round)}` : null,
      played && match.result.corrected ? el('span', { class: 'corrected' }, ' · corrected') : null),
    el('span', { class: 'match-line' },
      side(match, 'home', selfKey),
      el('span', { class: `score${played ? '' : ' is-vs'}`, 'aria-label': played ? `score ${scoreText(match)}` : 'versus' },
        played ? scoreText(match) : 'v'),
      side(match, 'away', selfKey)),
    played ? penaltyNote(match) : null);
  if (action) {
    const button = el('button', { type: 'button', class: 'secondary small' }, action.label);
    button.addEventListener('click', () => action.onClick(match));
    item.append(button);
  }
  return item;
}

/** Matches not yet played, in schedule order. */
export const unplayed = (fixtures) => fixtures.matches.filter((m) => m.status !== 'played');
/** Played matches, the latest of the schedule first. */
export const played = (fixtures) => fixtures.matches.filter((m) => m.status === 'played').reverse();

/** Draws the table into `table` (a <table>); the viewer's line marked. */
export function renderTable(table, { fixtures, standings, selfKey = null }) {
  const knockout = fixtures.format === 'knockout';
  const head = (label, title, cls = null) => el('th', { scope: 'col', class: cls },
    title ? el('abbr', { title }, label) : label);
  const headRow = el('tr', {},
    head('#', 'Position', 'pos'), head('Player', null, 'player'),
    knockout ? head('Stage', null, 'stage') : null,
    head('P', 'Played', 'num'), head('W', 'Won', 'num wdl'), head('D', 'Drawn', 'num wdl'), head('L', 'Lost', 'num wdl'),
    head('Goals', 'Goals scored and conceded', 'num goals'), head('GD', 'Goal difference', 'num'),
    head('Pts', 'Points', 'num pts'));
  const rows = standings.rows.map((row) => {
    const key = `${row.name}\u0000${row.surname}`;
    const isMe = key === selfKey;
    const classes = [isMe ? 'is-me' : '', row.champion ? 'is-champion' : '', row.eliminated ? 'is-out' : ''].join(' ').trim();
    const gd = row.goalDifference > 0 ? `+${row.goalDifference}` : String(row.goalDifference);
    return el('tr', { class: classes || null, 'data-player': fullName(row), 'aria-current': isMe ? 'true' : null },
      el('td', { class: 'pos' }, row.position),
      el('th', { scope: 'row', class: 'player' }, el('span', { class: 'player-cell' },
        row.team ? crest(row.team) : null,
        el('span', { class: 'side-text' },
          el('span', { class: 'who' }, fullName(row), isMe ? el('span', { class: 'you' }, ' (you)') : null),
          row.team ? el('span', { class: 'team-name' }, row.team) : null))),
      knockout ? el('td', { class: 'stage' }, stageText(fixtures, row)) : null,
      el('td', { class: 'num' }, row.played),
      el('td', { class: 'num wdl' }, row.won), el('td', { class: 'num wdl' }, row.drawn), el('td', { class: 'num wdl' }, row.lost),
      el('td', { class: 'num goals' }, `${row.goalsFor}:${row.goalsAgainst}`),
      el('td', { class: 'num' }, gd),
      el('td', { class: 'num pts' }, row.points));
  });
  table.classList.toggle('is-knockout', knockout);
  table.replaceChildren(el('thead', {}, headRow), el('tbody', {}, rows));
}

/** The score sheet's markup: a stepper per side, the shoot-out choice, save and cancel. */
function sheetDialog() {
  const stepper = (which) => el('div', { class: 'stepper' },
    el('button', { type: 'button', class: 'step', 'data-step': -1, 'data-for': `${which}-goals` }, '−'),
    el('input', { id: `${which}-goals`, type: 'number', inputmode: 'numeric', min: 0, max: 99, step: 1, value: 0 }),
    el('button', { type: 'button', class: 'step', 'data-step': 1, 'data-for': `${which}-goals` }, '+'));
  const sideBox = (which) => el('div', { class: 'score-side' },
    el('span', { id: `${which}-name`, class: 'score-name' }), stepper(which));
  const pens = (which) => el('label', { class: 'choice' },
    el('input', { type: 'radio', name: 'penalties', value: which }), el('span', { id: `${which}-pens` }));
  return el('dialog', { id: 'score-dialog', class: 'sheet', 'aria-labelledby': 'score-title' },
    el('form', { method: 'dialog', class: 'score-form', novalidate: true },
      el('h2', { id: 'score-title' }, 'Result'),
      el('div', { class: 'score-row' },
        sideBox('home'), el('span', { class: 'score-dash', 'aria-hidden': 'true' }, '–'), sideBox('away')),
      el('fieldset', { id: 'penalties', class: 'choices penalties', hidden: true },
        el('legend', {}, 'Level: who won on penalties?'), pens('home'), pens('away')),
      el('p', { id: 'score-error', class: 'error', role: 'alert', hidden: true }),
      el('div', { class: 'actions' },
        el('button', { id: 'score-cancel', type: 'button', class: 'secondary' }, 'Cancel'),
        el('button', { id: 'score-save', type: 'submit', class: 'primary' }, 'Save result'))));
}

/**
 * The score sheet, a <dialog> added to the page. `open(fixtures, match, save)` shows it for
 * `match`; `save(homeGoals, awayGoals, penaltyWinner)` returns a promise, and an error it
 * throws is shown in the sheet, which stays open.
 */
export function scoreSheet() {
  const dialog = sheetDialog();
  document.body.append(dialog);
  const form = $('form', dialog);
  const home = $('#home-goals', dialog);
  const away = $('#away-goals', dialog);
  const penalties = $('#penalties', dialog);
  const error = $('#score-error', dialog);
  const saveButton = $('#score-save', dialog);
  const cancelButton = $('#score-cancel', dialog);
  let current = null;
  let saving = false;

  const value = (input) => Number.parseInt(input.value, 10);
  const level = () => value(home) === value(away);
  const refresh = () => {
    penalties.hidden = !(current && current.knockout && level());
  };
  for (const button of dialog.querySelectorAll('[data-step]')) {
    button.addEventListener('click', () => {
      const input = $(`#${button.dataset.for}`, dialog);
      const next = Math.min(99, Math.max(0, (value(input) || 0) + Number(button.dataset.step)));
      input.value = String(next);
      refresh();
    });
  }
  for (const input of [home, away]) input.addEventListener('input', refresh);
  cancelButton.addEventListener('click', () => dialog.close());
  // While a save is on its way the sheet stays open, so that its answer (an error above all)
  // is seen; Escape waits too.
  dialog.addEventListener('cancel', (event) => { if (saving) event.preventDefault(); });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.hidden = true;
    const [h, a] = [value(home), value(away)];
    if (![h, a].every((g) => Number.isInteger(g) && g >= 0 && g <= 99)) {
      error.textContent = 'Goals are whole numbers from 0 to 99.';
      error.hidden = false;
      return;
    }
    const chosen = form.elements.penalties.value || null;
    if (current.knockout && h === a && !chosen) {
      error.textContent = 'A level knockout match needs the winner on penalties.';
      error.hidden = false;
      return;
    }
    saving = true;
    saveButton.disabled = true;
    cancelButton.disabled = true;
    saveButton.setAttribute('aria-busy', 'true');
    try {
      await current.save(h, a, current.knockout && h === a ? chosen : null);
      dialog.close();
    } catch (err) {
      error.textContent = err && err.message ? err.message : String(err);
      error.hidden = false;
    } finally {
      saving = false;
      saveButton.disabled = false;
      cancelButton.disabled = false;
      saveButton.removeAttribute('aria-busy');
    }
  });

  return {
    open(fixtures, match, save) {
      current = { knockout: fixtures.format === 'knockout', save };
      $('#score-title', dialog).textContent = `Match ${match.number} · ${roundName(fixtures, match.round)}`;
      for (const [which, input] of [['home', home], ['away', away]]) {
        const name = sideText(match, which);
        $(`#${which}-name`, dialog).textContent = name;
        $(`#${which}-pens`, dialog).textContent = name;
        input.value = String(match.result ? match.result[`${which}Goals`] : 0);
        input.setAttribute('aria-label', `Goals of ${name}`);
        for (const button of dialog.querySelectorAll(`[data-for="${which}-goals"]`)) {
          button.setAttribute('aria-label', `${button.dataset.step > 0 ? 'One more goal' : 'One goal fewer'} for ${name}`);
        }
      }
      for (const radio of form.elements.penalties) radio.checked = Boolean(match.result && radio.value === match.result.penaltyWinner);
      saveButton.textContent = match.result ? 'Save correction' : 'Save result';
      error.hidden = true;
      refresh();
      dialog.showModal();
      home.focus();
      home.select();
    },
  };
}
