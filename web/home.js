// `/`: the organiser creates a tournament, keeps its organiser token on this device and goes
// to the tournament's screen.

import { api, device } from './api.js';
import { $, el, errorLine, busy } from './ui.js';

const MIN_PLAYERS = 2;
const MAX_PLAYERS = 10;
const DEFAULT_PLAYERS = 4;

export function home() {
  const form = $('#create-form');
  const name = $('#name');
  const error = errorLine($('#error'));

  $('#limits').replaceChildren(...Array.from({ length: MAX_PLAYERS - MIN_PLAYERS + 1 }, (_, i) => {
    const n = MIN_PLAYERS + i;
    return el('label', { class: 'chip' },
      el('input', { type: 'radio', name: 'limit', value: n, checked: n === DEFAULT_PLAYERS }),
      el('span', {}, n));
  }));

  const recent = device.recent();
  if (recent.length) {
    $('#recent-list').replaceChildren(...recent.map((t) =>
      el('li', {}, el('a', { href: `/t/${t.id}` }, t.name))));
    $('#recent').hidden = false;
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.clear();
    name.removeAttribute('aria-invalid');
    const title = name.value.trim();
    if (!title) {
      name.setAttribute('aria-invalid', 'true');
      error.show('Give the tournament a name.');
      name.focus();
      return;
    }
    const limit = Number(form.elements.limit.value);
    try {
      const created = await busy(form.querySelector('button[type=submit]'),
        () => api.createTournament(title, limit));
      device.update(created.id, { organiserToken: created.organiserToken });
      device.remember(created.id, created.name);
      location.assign(`/t/${created.id}`);
    } catch (err) {
      error.show(err);
    }
  });
}
