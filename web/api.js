// The v2 API of lct as the pages use it: JSON requests, RFC 9457 problems turned into errors
// whose message is the problem's `detail`, an idempotency key per user action that is reused
// when a request is retried, and the tokens this device holds for each tournament.

const BASE = '/api/v2/tournaments';
const RETRIES = 3;
/**
 * Longest wait for an answer to start: a request stalled on a bad network is given up and sent
 * again (with the same idempotency key), rather than leaving its button busy for minutes.
 */
const REQUEST_TIMEOUT_MS = 10_000;

/** An answer the server refused; `message` is the sentence to show the user. */
export class ApiError extends Error {
  constructor(message, { status = 0, problem = null } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.problem = problem;
  }
}

/**
 * A fresh idempotency key: 128 random bits in hex. The server wants keys it cannot be guessed
 * from on the routes that answer with a token. `crypto.getRandomValues` works over plain http
 * too, where phones often open the join link on the local network.
 */
export function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Statuses worth retrying with the same idempotency key: the server may not have acted. */
const transient = (status) => status === 502 || status === 503 || status === 504;

/**
 * Answers after which the command may still run or have run: the server timed the request out
 * (the command goes on), or another request with this key is still running (an earlier attempt
 * whose answer was lost). A retry must carry the same key, to be given that command's answer.
 */
const undecided = (status, problem) => transient(status) || status === 408
  || (status === 409 && problem !== null && problem.type === 'urn:lct:problem:request-in-progress');

/** How long to wait before attempt `attempt + 1`: the server's `Retry-After` (up to 5 s), else a backoff. */
function pause(response, attempt) {
  const seconds = Number(response && response.headers.get('Retry-After'));
  return Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds, 5) * 1000 : 300 * 2 ** attempt;
}

// Idempotency keys of actions whose outcome is unknown (the answer was lost, or the command was
// still running), by action. When the user tries the same action again, it goes with the same
// key, so the server does not act twice and answers what it did; an answer, success or
// refusal, settles the action and frees its key. Kept for the tab's session too, so that a
// reload after "Cannot reach the server" does not lose a join that happened (and its token).
const UNSETTLED_KEY = 'lct:unsettled';
const unsettled = new Map(Object.entries((() => {
  try { return JSON.parse(sessionStorage.getItem(UNSETTLED_KEY)) || {}; } catch { return {}; }
})()));

function keepUnsettled() {
  try {
    sessionStorage.setItem(UNSETTLED_KEY, JSON.stringify(Object.fromEntries(unsettled)));
  } catch { /* private mode: kept in memory only */ }
}

async function request(method, path, { body, token } = {}) {
  const headers = { Accept: 'application/json, application/problem+json' };
  const payload = body === undefined ? undefined : JSON.stringify(body);
  if (payload !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  const action = `${method} ${path} ${token || ''} ${payload || ''}`;
  if (method === 'POST') {
    if (!unsettled.has(action)) {
      unsettled.set(action, idempotencyKey());
      keepUnsettled();
    }
    headers['Idempotency-Key'] = unsettled.get(action);
  }
  const init = { method, headers, body: payload };

  for (let attempt = 0; ; attempt += 1) {
    let response;
    let text;
    try {
      // The answer read whole within the time, its body too: one cut short is no answer.
      response = await fetch(path, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      text = response.status === 204 ? '' : await response.text();
    } catch {
      if (attempt < RETRIES) { await wait(pause(null, attempt)); continue; }
      throw new ApiError('Cannot reach the server. Check the connection and try again.');
    }
    const data = text ? parseJson(text) : null;
    const pending = undecided(response.status, data);
    // Refused for its rate (429), a command did not run: it may go again after Retry-After.
    if ((pending || response.status === 429) && attempt < RETRIES) { await wait(pause(response, attempt)); continue; }
    if (!pending && unsettled.delete(action)) keepUnsettled();
    if (response.ok) return data;
    const detail = (data && (data.detail || data.title)) || `The server answered ${response.status}.`;
    throw new ApiError(detail, { status: response.status, problem: data });
  }
}

function parseJson(text) {
  try { return JSON.parse(text); } catch { return null; }
}

const at = (id, rest = '') => `${BASE}/${encodeURIComponent(id)}${rest}`;

export const api = {
  createTournament: (name, playerLimit) => request('POST', BASE, { body: { name, playerLimit } }),
  tournament: (id) => request('GET', at(id)),
  teams: (id) => request('GET', at(id, '/teams')),
  presence: (id) => request('GET', at(id, '/presence')),
  join: (id, name, surname) => request('POST', at(id, '/players'), { body: { name, surname } }),
  select: (id, token, team) => request('POST', at(id, '/selection'), { body: { team }, token }),
  click: (id, token, team) => request('POST', at(id, '/clicks'), { body: { team }, token }),
  draw: (id, token) => request('POST', at(id, '/draw'), { token }),
  fixtures: (id) => request('GET', at(id, '/fixtures')),
  standings: (id) => request('GET', at(id, '/standings')),
  /** `format`: 'league' (with `legs` 1 or 2) or 'knockout'. */
  schedule: (id, token, { format, legs, playersMayRecord }) => request('POST', at(id, '/fixtures'), {
    body: { format, legs: format === 'league' ? legs : undefined, playersMayRecord }, token,
  }),
  /** Records a result, or corrects it with the organiser token. */
  recordResult: (id, token, number, { homeGoals, awayGoals, penaltyWinner = null }) =>
    request('POST', at(id, `/matches/${encodeURIComponent(number)}/result`), {
      body: { homeGoals, awayGoals, penaltyWinner }, token,
    }),
  finish: (id, token) => request('POST', at(id, '/finish'), { token }),
};

/** The QR code of the join link, as the server renders it. */
export const qrUrl = (id) => at(id, '/qr?format=svg');

// What this device holds per tournament: the organiser token where it was created, the player
// id and token where a player joined. Kept in localStorage so a refresh keeps the role.
const KEY_PREFIX = 'lct:tournament:';
const RECENT_KEY = 'lct:recent';

export const device = {
  get(id) {
    try { return JSON.parse(localStorage.getItem(KEY_PREFIX + id)) || {}; } catch { return {}; }
  },
  update(id, fields) {
    const next = { ...device.get(id), ...fields };
    try { localStorage.setItem(KEY_PREFIX + id, JSON.stringify(next)); } catch { /* private mode */ }
    return next;
  },
  /** Tournaments created on this device, newest first. */
  recent() {
    try { return JSON.parse(localStorage.getItem(RECENT_KEY)) || []; } catch { return []; }
  },
  remember(id, name) {
    const list = [{ id, name }, ...device.recent().filter((t) => t.id !== id)].slice(0, 5);
    try { localStorage.setItem(RECENT_KEY, JSON.stringify(list)); } catch { /* private mode */ }
  },
};

/** The tournament id of the current page: the last segment of its path, if it is a UUID. */
export function pageTournamentId() {
  const last = location.pathname.split('/').filter(Boolean).pop() || '';
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(last) ? last.toLowerCase() : null;
}
