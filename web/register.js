// `/player/register/{id}`, the link in the QR code: a phone joins with first name and surname,
// keeps its player token and goes to the player's screen. A phone that already joined goes
// straight there.

import { api, device, pageTournamentId } from './api.js';
import { $, errorLine, busy } from './ui.js';

export async function register() {
  const id = pageTournamentId();
  const error = errorLine($('#error'));
  const form = $('#join-form');
  const button = $('#join-button');
  if (!id) {
    $('#title').textContent = 'Unknown tournament';
    form.hidden = true;
    return;
  }
  if (device.get(id).playerToken) {
    location.replace(`/p/${id}`);
    return;
  }

  let closed = false;
  try {
    const view = await api.tournament(id);
    $('#title').textContent = view.name;
    document.title = `Join ${view.name} · LCT`;
    const left = view.playerLimit - view.players.length;
    closed = left <= 0 || Boolean(view.draw && view.draw.length);
    $('#seats').textContent = closed
      ? 'All seats are taken.'
      : `${left} of ${view.playerLimit} seats left.`;
  } catch (err) {
    $('#title').textContent = 'Cannot open the tournament';
    error.show(err);
    closed = true;
  }
  form.hidden = closed;
  if (!closed) $('#first-name').focus();

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.clear();
    const fields = [$('#first-name'), $('#surname')];
    for (const field of fields) field.removeAttribute('aria-invalid');
    const [name, surname] = fields.map((f) => f.value.trim());
    const missing = fields.find((f) => !f.value.trim());
    if (missing) {
      missing.setAttribute('aria-invalid', 'true');
      error.show(missing.id === 'surname' ? 'Enter your surname.' : 'Enter your first name.');
      missing.focus();
      return;
    }
    try {
      const joined = await busy(button, () => api.join(id, name, surname));
      device.update(id, { playerId: joined.playerId, playerToken: joined.playerToken, name, surname });
      location.replace(`/p/${id}`);
    } catch (err) {
      error.show(err);
    }
  });
}
