// Small DOM helpers and the pieces every screen shows: the team tiles, the online list, the
// draw result, the live-connection pill and the error line.

import { playerKey } from './model.js';

/** `el('li', {class: 'x', 'aria-current': 'true'}, 'text', child)`; null/false attributes are skipped. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const fullName = (p) => `${p.name} ${p.surname}`;
/** "Anna N.", short enough for a badge on a tile. */
export const shortName = (p) => `${p.name} ${p.surname.slice(0, 1)}.`;

// Three-letter crests of the ten teams; their colours live in app.css.
const CRESTS = {
  'Bayern': 'fcb', 'PSG': 'psg', 'Manchaster City': 'mci', 'Liverpool': 'liv',
  'Machester United': 'mun', 'Real Madrid': 'rma', 'Chelsea': 'che',
  'Atletico Madrid': 'atm', 'Juventus': 'juv', 'Barcelona': 'bar',
};

export function crest(team) {
  const code = CRESTS[team] || team.replace(/[^A-Za-z]/g, '').slice(0, 3).toLowerCase();
  return el('span', { class: `crest crest-${code}`, 'aria-hidden': 'true' }, code.toUpperCase());
}

/** The error line of a page: shows the server's `detail`, or clears. */
export function errorLine(node) {
  return {
    show(error) {
      node.textContent = error && error.message ? error.message : String(error);
      node.hidden = false;
    },
    clear() {
      node.textContent = '';
      node.hidden = true;
    },
  };
}

/** The live-connection pill in the top bar. */
export function statusPill(node) {
  const labels = { connecting: 'Connecting…', live: 'Live', offline: 'Reconnecting…' };
  return (status) => {
    node.dataset.status = status;
    node.textContent = labels[status] || status;
  };
}

/**
 * The grid of team tiles. Tiles are built once and updated in place, so focus and the
 * screen-reader position survive live updates. With `onTap` the tiles are buttons.
 */
export function teamGrid(container, { onTap = null } = {}) {
  let names = [];
  const tiles = new Map();

  const build = (teams) => {
    names = teams.slice();
    tiles.clear();
    container.replaceChildren(...teams.map((team) => {
      const state = el('span', { class: 'tile-state' });
      const badges = el('span', { class: 'badges' });
      const tile = onTap
        ? el('button', { type: 'button', class: 'tile', 'data-team': team, 'aria-pressed': 'false' })
        : el('div', { class: 'tile', 'data-team': team });
      tile.append(crest(team), el('span', { class: 'tile-name' }, team), state, badges);
      if (onTap) tile.addEventListener('click', () => onTap(team));
      tiles.set(team, { tile, state, badges });
      return el('li', {}, tile);
    }));
  };

  /**
   * `takenBy`: team → player; `clicks`: team → [players looking]; `mine`: the viewer's pick;
   * `candidate`: the tile the viewer tapped; `locked`: no tile can be tapped.
   */
  const update = ({ teams, takenBy, clicks, mine = null, candidate = null, locked = false }) => {
    if (teams.join('\n') !== names.join('\n')) build(teams);
    for (const [team, { tile, state, badges }] of tiles) {
      const holder = takenBy.get(team);
      const isMine = team === mine;
      const lookers = holder ? [] : (clicks.get(team) || []);
      tile.classList.toggle('is-taken', Boolean(holder) && !isMine);
      tile.classList.toggle('is-mine', isMine);
      tile.classList.toggle('is-candidate', team === candidate);
      tile.classList.toggle('has-clicks', lookers.length > 0);
      state.textContent = isMine ? 'Your pick' : holder ? `Taken by ${fullName(holder)}` : '';
      badges.replaceChildren(...(lookers.length
        ? [el('span', { class: 'sr-only' }, 'Looking now: '),
          ...lookers.map((p) => el('span', { class: 'badge', title: fullName(p) }, shortName(p)))]
        : []));
      if (onTap) {
        tile.disabled = locked || Boolean(holder);
        tile.setAttribute('aria-pressed', String(team === candidate));
      }
    }
  };

  return { update };
}

/** The players with a dot each: green when their phone is connected. */
export function renderOnline(list, { players, online, selfKey = null, extra = null }) {
  list.replaceChildren(...players.map((p) => {
    const key = playerKey(p);
    const isOnline = online.has(key);
    return el('li', { class: isOnline ? 'is-online' : 'is-offline', 'data-player': fullName(p) },
      el('span', { class: 'dot', 'aria-hidden': 'true' }),
      el('span', { class: 'who' }, fullName(p), key === selfKey ? el('span', { class: 'you' }, ' (you)') : null),
      el('span', { class: 'presence' }, isOnline ? 'online' : 'offline'),
      extra ? extra(p) : null);
  }));
}

/** The draw as "name surname → team", the viewer's own line highlighted. */
export function renderDraw(list, { draw, selfKey = null }) {
  list.replaceChildren(...draw.map((a) => {
    const isMe = playerKey(a) === selfKey;
    return el('li', { class: isMe ? 'is-me' : null, 'aria-current': isMe ? 'true' : null },
      el('span', { class: 'who' }, fullName(a), isMe ? el('span', { class: 'you' }, ' (you)') : null),
      el('span', { class: 'gets' },
        el('span', { class: 'arrow', 'aria-hidden': 'true' }, '→'),
        el('span', { class: 'sr-only' }, ' gets '),
        el('span', { class: 'team' }, crest(a.team), el('span', {}, a.team))));
  }));
}

/** Runs `action` with `button` disabled and marked busy. */
export async function busy(button, action) {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await action();
  } finally {
    button.removeAttribute('aria-busy');
    button.disabled = false;
  }
}
