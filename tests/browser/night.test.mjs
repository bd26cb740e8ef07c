// A whole tournament night in real browsers against the real `lct` binary: the organiser on a
// desktop screen creates a 3-player tournament, three phones join through the join link, see
// each other online, see each other's clicks live, pick teams (taken teams disable live), the
// organiser draws, and every phone shows the result with its own line highlighted. A refresh
// keeps each device's role. Any console error, page error, failed request or request leaving
// the server fails the test.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, stopServer, launchBrowser, openPerson, screenshot, PHONE, DESKTOP,
} from './helpers.mjs';

const PLAYERS = [
  { name: 'Anna', surname: 'Nowak', team: 'Bayern' },
  { name: 'Ben', surname: 'Okafor', team: 'Real Madrid' },
  { name: 'Chloé', surname: 'Durand', team: 'Barcelona' },
];
const fullName = (p) => `${p.name} ${p.surname}`;
const tile = (page, team) => page.locator(`.tile[data-team="${team}"]`);

describe('a tournament night in the browser', () => {
  let server;
  let browser;
  let organiser;
  let phones = [];
  let id;
  const everyone = () => [organiser, ...phones].filter(Boolean);

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await stopServer(server);
  });

  // Each step checks that nothing went wrong in any page so far; on failure it keeps a
  // screenshot of every page for the post-mortem.
  const step = (name, body) => it(name, async () => {
    try {
      await body();
      const problems = everyone().flatMap((person) => person.problems);
      assert.deepEqual(problems, [], 'the pages met problems');
    } catch (error) {
      for (const person of everyone()) {
        await screenshot(person.page, `failed-${person.label}`).catch(() => {});
      }
      throw error;
    }
  });

  step('the organiser creates a 3-player tournament and gets its QR code', async () => {
    organiser = await openPerson(browser, server.baseUrl, 'organiser', DESKTOP);
    const { page } = organiser;
    await page.goto('/');
    await page.getByLabel('Tournament name').fill('Friday Night Cup');
    await page.getByRole('radio', { name: '3', exact: true }).check();
    await screenshot(page, 'organiser-create');
    await page.getByRole('button', { name: 'Create tournament' }).click();
    await page.waitForURL(/\/t\/[0-9a-f-]{36}$/);
    id = new URL(page.url()).pathname.split('/').pop();

    await page.getByRole('heading', { level: 1, name: 'Friday Night Cup' }).waitFor();
    await page.waitForFunction(() => {
      const qr = document.querySelector('#qr');
      return qr.complete && qr.naturalWidth > 0;
    });
    // The v2 route: the web client keeps working with LCT_V1=off.
    assert.equal(await page.locator('#qr').getAttribute('src'), `/api/v2/tournaments/${id}/qr?format=svg`);
    assert.equal(await page.locator('#join-link').getAttribute('href'), `${server.baseUrl}/player/register/${id}`);
    await page.getByText('0 of 3 seats taken').waitFor();
    await page.locator('#live[data-status="live"]').waitFor();
    const stored = await page.evaluate((key) => JSON.parse(localStorage.getItem(key)), `lct:tournament:${id}`);
    assert.ok(stored?.organiserToken, 'the organiser token is kept on the organiser device');
    assert.ok(await page.getByRole('button', { name: 'Draw teams' }).isDisabled());
    await screenshot(page, 'organiser-waiting');
  });

  step('three phones open the join link and join', async () => {
    for (const [i, player] of PLAYERS.entries()) {
      // The last phone is in dark mode, so both colour schemes get exercised.
      const scheme = i === PLAYERS.length - 1 ? 'dark' : 'light';
      const phone = await openPerson(browser, server.baseUrl, `phone-${player.name.toLowerCase()}`,
        { ...PHONE, colorScheme: scheme });
      phones.push(phone);
      const { page } = phone;
      await page.goto(`/player/register/${id}`);
      await page.getByRole('heading', { level: 1, name: 'Friday Night Cup' }).waitFor();
      await page.getByText(`${3 - i} of 3 seats left.`).waitFor();
      await page.getByLabel('First name').fill(player.name);
      await page.getByLabel('Surname').fill(player.surname);
      if (i === 0) await screenshot(page, 'player-join');
      await page.getByRole('button', { name: 'Join' }).tap();
      await page.waitForURL(`**/p/${id}`);
      await page.locator('#me').getByText(fullName(player)).waitFor();
    }
    await organiser.page.getByText('3 of 3 seats taken').waitFor({ state: 'attached' });
    // The tournament is full: the QR code gives way to the players.
    await organiser.page.locator('#join-card').waitFor({ state: 'hidden' });
  });

  step('everyone sees who is online', async () => {
    for (const phone of phones) {
      await phone.page.locator('#live[data-status="live"]').waitFor();
      for (const player of PLAYERS) {
        await phone.page.locator(`#online li.is-online[data-player="${fullName(player)}"]`).waitFor();
      }
    }
    for (const player of PLAYERS) {
      await organiser.page.locator(`#players li.is-online[data-player="${fullName(player)}"]`).waitFor();
    }
    await organiser.page.getByText('3 online').waitFor();
  });

  step('a tap on a tile shows that player as looking there, on the other phones and the TV', async () => {
    const [anna, ben, chloe] = phones;
    await tile(anna.page, 'Bayern').tap();
    await anna.page.getByRole('button', { name: 'Pick Bayern' }).waitFor();
    for (const other of [ben, chloe, organiser]) {
      await tile(other.page, 'Bayern').locator('.badge', { hasText: 'Anna N.' }).waitFor();
    }
    await organiser.page.locator('#players li[data-player="Anna Nowak"]').getByText('looking at Bayern').waitFor();

    await tile(ben.page, 'PSG').tap();
    await tile(anna.page, 'PSG').locator('.badge', { hasText: 'Ben O.' }).waitFor();
    await tile(chloe.page, 'PSG').locator('.badge', { hasText: 'Ben O.' }).waitFor();
    // A phone does not badge its own look; it marks the tile instead.
    assert.equal(await tile(anna.page, 'Bayern').locator('.badge').count(), 0);
    assert.equal(await tile(anna.page, 'Bayern').getAttribute('aria-pressed'), 'true');

    await screenshot(organiser.page, 'organiser-mid-game');
    await screenshot(anna.page, 'player-mid-game', { fullPage: false });
  });

  step('a pick disables that team on the other phones at once', async () => {
    const [anna, ben, chloe] = phones;
    await anna.page.getByRole('button', { name: 'Pick Bayern' }).tap();
    await tile(anna.page, 'Bayern').getByText('Your pick').waitFor();
    for (const other of [ben, chloe]) {
      const bayern = tile(other.page, 'Bayern');
      await bayern.getByText('Taken by Anna Nowak').waitFor();
      assert.ok(await bayern.isDisabled(), `Bayern is disabled for ${other.label}`);
    }
    await organiser.page.locator('#players li[data-player="Anna Nowak"]').getByText('picked').waitFor();
    // After her pick the other tiles of her phone are locked: a pick is final.
    assert.ok(await tile(anna.page, 'PSG').isDisabled());

    for (const [phone, player] of [[ben, PLAYERS[1]], [chloe, PLAYERS[2]]]) {
      await tile(phone.page, player.team).tap();
      await phone.page.getByRole('button', { name: `Pick ${player.team}` }).tap();
      await tile(phone.page, player.team).getByText('Your pick').waitFor();
    }
    for (const phone of phones) {
      for (const player of PLAYERS) {
        const own = phone.label.endsWith(player.name.toLowerCase());
        await tile(phone.page, player.team).getByText(own ? 'Your pick' : `Taken by ${fullName(player)}`).waitFor();
      }
    }
  });

  step('the organiser draws and every phone shows the result, its own line highlighted', async () => {
    const draw = organiser.page.getByRole('button', { name: 'Draw teams' });
    await organiser.page.getByText('Everyone has picked. Ready when you are.').waitFor();
    assert.ok(await draw.isEnabled());
    await draw.click();

    const lines = organiser.page.locator('#draw-result li');
    await lines.nth(2).waitFor();
    const result = await drawResult(organiser.page);
    assert.deepEqual(Object.keys(result).sort(), PLAYERS.map(fullName).sort());
    assert.deepEqual(Object.values(result).sort(), PLAYERS.map((p) => p.team).sort(),
      'the picked teams are shared out, one each');

    for (const [i, phone] of phones.entries()) {
      const me = fullName(PLAYERS[i]);
      await phone.page.locator('#result-card').waitFor();
      await phone.page.locator('#draw-result li').nth(2).waitFor();
      assert.deepEqual(await drawResult(phone.page), result, `${phone.label} shows the organiser's result`);
      const highlighted = phone.page.locator('#draw-result li[aria-current="true"]');
      assert.equal(await highlighted.count(), 1);
      assert.equal((await highlighted.locator('.who').innerText()).replace(' (you)', ''), me);
      assert.equal(await phone.page.locator('#my-result').innerText(), `You play with ${result[me]}`);
      assert.ok(await tile(phone.page, 'PSG').isDisabled(), 'no tile can be tapped after the draw');
    }

    await screenshot(organiser.page, 'organiser-after-draw');
    await screenshot(phones[1].page, 'player-after-draw');
    await screenshot(phones[2].page, 'player-after-draw-dark');
    await organiser.page.setViewportSize({ width: 1920, height: 1080 });
    await screenshot(organiser.page, 'tv-after-draw');
    await organiser.page.setViewportSize(DESKTOP.viewport);
  });

  step('a refresh keeps each device in its role', async () => {
    const [anna] = phones;
    await anna.page.goto(`/player/register/${id}`);
    await anna.page.waitForURL(`**/p/${id}`);
    await anna.page.locator('#draw-result li[aria-current="true"]').getByText('Anna Nowak').waitFor();

    await organiser.page.reload();
    await organiser.page.locator('#draw-result li').nth(2).waitFor();
    await organiser.page.getByText('The teams are drawn.').waitFor();
  });

  step('every command carried a fresh idempotency key, and the token of its role', async () => {
    // 128 random bits: the server refuses guessable keys on the commands answered with a token.
    const unguessable = /^[0-9a-f]{32}$/;
    const commands = everyone().flatMap((person) => person.requests
      .filter((r) => r.method === 'POST' && r.path.startsWith('/api/v2/'))
      .map((r) => ({ ...r, who: person.label })));
    const kinds = new Set(commands.map((c) => c.path.split('/').pop()));
    for (const kind of ['tournaments', 'players', 'clicks', 'selection', 'draw']) {
      assert.ok(kinds.has(kind), `the pages sent a POST …/${kind}`);
    }
    for (const command of commands) {
      assert.match(command.headers['idempotency-key'] ?? '', unguessable, `${command.who} POST ${command.path}`);
      const needsToken = /\/(clicks|selection|draw)$/.test(command.path);
      assert.equal(/^Bearer \S+$/.test(command.headers.authorization ?? ''), needsToken,
        `${command.who} POST ${command.path} ${needsToken ? 'carries' : 'needs no'} a bearer token`);
    }
    const keys = commands.map((c) => c.headers['idempotency-key']);
    assert.equal(new Set(keys).size, keys.length, 'each action has its own key');
  });
});

/** The draw list of a page as { "name surname": team }. */
async function drawResult(page) {
  const rows = await page.locator('#draw-result li').evaluateAll((items) => items.map((li) => [
    li.querySelector('.who').firstChild.textContent.trim(),
    li.querySelector('.team > span:last-child').textContent.trim(),
  ]));
  return Object.fromEntries(rows);
}
