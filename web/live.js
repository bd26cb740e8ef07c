// The live socket of a tournament, `/api/v2/tournaments/{id}/live`: JSON messages, domain ones
// carrying the stream version. When the socket closes it reconnects with exponential backoff,
// asking for the events after the last version seen, so nothing is lost in between.

const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 15_000;

/**
 * Opens the live socket and keeps it open until `close()` is called.
 *
 * - `version()` returns the last version the page has applied (read at every connect);
 * - `token` makes this connection count as that player being online;
 * - `onMessage(message)` receives every parsed message;
 * - `onStatus('connecting' | 'live' | 'offline', { reconnected })` reports the state; after a
 *   reconnect the page may re-read the tournament to be sure.
 */
export function connectLive({ tournamentId, token, version, onMessage, onStatus }) {
  let socket = null;
  let closed = false;
  let failures = 0;
  let timer = null;
  let everOpened = false;

  const url = () => {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const query = new URLSearchParams({ since: String(version()) });
    if (token) query.set('token', token);
    return `${scheme}://${location.host}/api/v2/tournaments/${encodeURIComponent(tournamentId)}/live?${query}`;
  };

  const open = () => {
    timer = null;
    onStatus('connecting', { reconnected: false });
    socket = new WebSocket(url());
    socket.addEventListener('open', () => {
      failures = 0;
      onStatus('live', { reconnected: everOpened });
      everOpened = true;
    });
    socket.addEventListener('message', (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (message && typeof message.type === 'string') onMessage(message);
    });
    socket.addEventListener('close', () => {
      socket = null;
      if (closed) return;
      onStatus('offline', { reconnected: false });
      // Full jitter, so the clients of a pod that went away do not all come back at once.
      const ceiling = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** failures);
      failures += 1;
      timer = setTimeout(open, MIN_DELAY_MS / 2 + Math.random() * ceiling);
    });
  };

  // Phones suspend background tabs; come back at once instead of waiting out the backoff.
  const onVisible = () => {
    if (document.visibilityState === 'visible' && !socket && timer) {
      clearTimeout(timer);
      open();
    }
  };
  document.addEventListener('visibilitychange', onVisible);
  addEventListener('online', onVisible);

  open();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      document.removeEventListener('visibilitychange', onVisible);
      removeEventListener('online', onVisible);
      if (socket) socket.close(1000);
    },
  };
}
