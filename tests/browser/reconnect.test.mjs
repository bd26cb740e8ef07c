// The live connection survives a server restart: the pages say they are reconnecting, come
// back on their own (with backoff), and catch up with what happened while they were away; and
// when the server comes back with a shorter history (its data restored from a backup), they
// drop what it no longer knows and follow it from there.

import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, stopServer, launchBrowser, openPerson, openAsDevice, DESKTOP, PHONE } from './helpers.mjs';

async function v2(server, method, path, body, token) {
  const headers = body === undefined ? {} : { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${server.baseUrl}/api/v2${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path} answered ${response.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

/** While the server is down, the browser reports each failed attempt to reconnect. */
const unexpected = (person) => person.problems.filter((p) => !/console error: WebSocket connection to .* failed/.test(p));

describe('live updates across a server restart', () => {
  let server;
  let browser;

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await stopServer(server);
  });

  /**
   * Takes the operator's backup of the server's data (the server stopped, then started again)
   * and runs `body` with `restore(page)`: it stops the server, waits until `page` says it is
   * offline, puts the backup back and starts the server again on the same address.
   */
  async function withBackup(body) {
    const { addr, dataDir } = server;
    const backup = mkdtempSync(path.join(tmpdir(), 'lct-backup-'));
    try {
      await stopServer(server, { keepData: true });
      cpSync(dataDir, backup, { recursive: true });
      server = await startServer({ listen: addr, dataDir });
      await body(async (page) => {
        await stopServer(server, { keepData: true });
        await page.locator('#live[data-status="offline"]').waitFor();
        rmSync(dataDir, { recursive: true, force: true });
        cpSync(backup, dataDir, { recursive: true });
        server = await startServer({ listen: addr, dataDir });
      });
    } finally {
      rmSync(backup, { recursive: true, force: true });
    }
  }

  it('the TV and a phone reconnect and catch up', async () => {
    const { id } = await v2(server, 'POST', '/tournaments', { name: 'Restart Cup', playerLimit: 3 });
    const anna = await v2(server, 'POST', `/tournaments/${id}/players`, { name: 'Anna', surname: 'Nowak' });

    const tv = await openPerson(browser, server.baseUrl, 'tv', DESKTOP);
    await tv.page.goto(`/t/${id}`);
    await tv.page.locator('#live[data-status="live"]').waitFor();

    const phone = await openPerson(browser, server.baseUrl, 'phone', PHONE);
    const sockets = [];
    phone.page.on('websocket', (socket) => sockets.push(socket.url()));
    await phone.page.goto(`/t/${id}`); // any page of the origin, to reach its storage
    await phone.page.evaluate(([key, value]) => localStorage.setItem(key, value),
      [`lct:tournament:${id}`, JSON.stringify({ playerId: anna.playerId, playerToken: anna.playerToken })]);
    await phone.page.goto(`/p/${id}`);
    await phone.page.locator('#me').getByText('Anna Nowak').waitFor();
    await phone.page.locator('#live[data-status="live"]').waitFor();

    const { addr, dataDir } = server;
    await stopServer(server, { keepData: true });
    for (const person of [tv, phone]) await person.page.locator('#live[data-status="offline"]').waitFor();

    server = await startServer({ listen: addr, dataDir });
    await v2(server, 'POST', `/tournaments/${id}/players`, { name: 'Ben', surname: 'Okafor' });
    await v2(server, 'POST', `/tournaments/${id}/selection`, { team: 'Chelsea' }, anna.playerToken);

    for (const person of [tv, phone]) {
      await person.page.locator('#live[data-status="live"]').waitFor({ timeout: 30_000 });
      await person.page.locator('[data-player="Ben Okafor"]').waitFor();
    }
    await tv.page.locator('#players li[data-player="Anna Nowak"]').getByText('picked').waitFor();
    await phone.page.locator('.tile[data-team="Chelsea"]').getByText('Your pick').waitFor();
    // The phone is online again, with its token.
    await tv.page.locator('#players li.is-online[data-player="Anna Nowak"]').waitFor();
    assert.deepEqual([...unexpected(tv), ...unexpected(phone)], []);
    // The token went as a subprotocol: no URL that a proxy logs carries it.
    assert.ok(sockets.length >= 3, `the phone's sockets: ${sockets}`);
    assert.deepEqual(sockets.filter((url) => url.includes(anna.playerToken)), []);
  });

  it('a page ahead of a server restored from a backup forgets what the server no longer knows', async () => {
    const { id, organiserToken } = await v2(server, 'POST', '/tournaments', { name: 'Backup Cup', playerLimit: 2 });
    for (const [name, surname, team] of [['Anna', 'Nowak', 'Chelsea'], ['Ben', 'Okafor', 'PSG']]) {
      const joined = await v2(server, 'POST', `/tournaments/${id}/players`, { name, surname });
      await v2(server, 'POST', `/tournaments/${id}/selection`, { team }, joined.playerToken);
    }
    await v2(server, 'POST', `/tournaments/${id}/draw`, undefined, organiserToken);
    await v2(server, 'POST', `/tournaments/${id}/fixtures`, { format: 'league', legs: 1 }, organiserToken);

    await withBackup(async (restore) => {
      // After the backup: the match is played, and the TV shows its result.
      const tv = await openPerson(browser, server.baseUrl, 'tv-restored', DESKTOP);
      await tv.page.goto(`/t/${id}`);
      await tv.page.locator('#live[data-status="live"]').waitFor();
      await v2(server, 'POST', `/tournaments/${id}/matches/1/result`, { homeGoals: 2, awayGoals: 1 }, organiserToken);
      const result = tv.page.locator('#results li[data-match="1"] .score');
      await result.getByText('2 – 1').waitFor();

      // The data is restored: as far as the server knows, the match was never played.
      await restore(tv.page);
      await tv.page.locator('#live[data-status="live"]').waitFor({ timeout: 30_000 });
      await result.waitFor({ state: 'detached' });

      // The result entered now takes the version the forgotten one had: the TV shows it.
      await v2(server, 'POST', `/tournaments/${id}/matches/1/result`, { homeGoals: 0, awayGoals: 3 }, organiserToken);
      await result.getByText('0 – 3').waitFor();
      assert.deepEqual(unexpected(tv), []);
    });
  });

  it('a phone whose player the restored server does not know says so and goes live', async () => {
    const { id } = await v2(server, 'POST', '/tournaments', { name: 'Forgotten player', playerLimit: 3 });
    await v2(server, 'POST', `/tournaments/${id}/players`, { name: 'Anna', surname: 'Nowak' });
    await withBackup(async (restore) => {
      // Ben joins after the backup, on his phone.
      const ben = await v2(server, 'POST', `/tournaments/${id}/players`, { name: 'Ben', surname: 'Okafor' });
      const phone = await openPerson(browser, server.baseUrl, 'phone-forgotten', PHONE);
      await openAsDevice(phone, id, { playerId: ben.playerId, playerToken: ben.playerToken, name: 'Ben', surname: 'Okafor' },
        `/p/${id}`);
      await phone.page.locator('#me').getByText('Ben Okafor').waitFor();
      await phone.page.locator('#live[data-status="live"]').waitFor();

      // Restored, the server knows nothing of Ben: it refuses his token on the live socket.
      await restore(phone.page);
      await phone.page.locator('#status').getByText('This device is not a player of this tournament.').waitFor({ timeout: 30_000 });
      await phone.page.locator('#live[data-status="live"]').waitFor({ timeout: 30_000 });
      // Anna, who joined before the backup, is still there for everyone to see.
      await phone.page.locator('[data-player="Anna Nowak"]').waitFor();
    });
  });
});
