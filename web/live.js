// The live socket of a tournament, `/api/v2/tournaments/{id}/live`: JSON messages, domain ones
// carrying the stream version. When the socket closes it reconnects with exponential backoff,
// asking for the events after the last version seen, so nothing is lost in between. The backoff
// starts over only once a socket carried a message: a server that accepts and closes at once
// is not asked again twice a second.

const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 15_000;

/**
 * Opens the live socket and keeps it open until `close()` is called.
 *
 * - `version()` returns the last version the page has applied (read at every connect);
 * - `token()` returns the player token that makes this connection count as that player being
 *   online, or null (read at every connect);
 * - `onMessage(message)` receives every parsed message;
 * - `onStatus('connecting' | 'live' | 'offline', { reconnected })` reports the state; after a
 *   reconnect the page may re-read the tournament to be sure;
 * - `onRefused(failures)` is told of a socket that closed without opening, with the number
 *   of attempts that failed in a row (a browser cannot see why: the server may be down, or
 *   may refuse what the page sends, such as a token the server no longer knows).
 */
export function connectLive({ tournamentId, token = () => null, version, onMessage, onStatus, onRefused = () => {} }) {
  let socket = null;
  let closed = false;
  let failures = 0;
  let timer = null;
  let everOpened = false;

  const url = () => {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const query = new URLSearchParams({ since: String(version()) });
    return `${scheme}://${location.host}/api/v2/tournaments/${encodeURIComponent(tournamentId)}/live?${query}`;
  };
  // The token goes as a subprotocol, not in the URL, which proxies log.
  const protocols = () => {
    const held = token();
    return held ? ['lct.v2', `lct.token.${held}`] : [];
  };

  const open = () => {
    timer = null;
    onStatus('connecting', { reconnected: false });
    socket = new WebSocket(url(), protocols());
    let opened = false;
    socket.addEventListener('open', () => {
      opened = true;
      onStatus('live', { reconnected: everOpened });
      everOpened = true;
    });
    socket.addEventListener('message', (event) => {
      failures = 0;
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
      if (!opened) onRefused(failures);
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
