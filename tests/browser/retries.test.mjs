// A join whose answer never reached the phone: the page asks again with the same idempotency
// key, so the server answers what it did (the player's token) instead of acting twice or
// refusing "already joined" — whether the retry first meets the command still running, or
// comes after a reload of the page. Reads that fail for a while are made again: a TV opened
// while the server cannot answer, and the night's table after a result.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, stopServer, launchBrowser, openPerson, openAsDevice, callV2, PHONE, DESKTOP } from './helpers.mjs';

/** The problems of a person, less the lost answers and refusals this test makes on purpose. */
const unexpected = (person) => person.problems.filter((p) =>
  !/ERR_CONNECTION_RESET|ERR_FAILED|HTTP (409|503) for|status of (409|503)/.test(p));

/** What lct answers while a dependency is down. */
const unavailable = {
  status: 503,
  contentType: 'application/problem+json',
  body: JSON.stringify({
    type: 'urn:lct:problem:dependency-unavailable',
    title: 'Service Unavailable',
    status: 503,
    detail: 'A dependency is unavailable; try again shortly.',
    requestId: '00000000-0000-0000-0000-000000000000',
  }),
};

/** The answer lct gives a retry while the command with its key still runs. */
const inProgress = {
  status: 409,
  contentType: 'application/problem+json',
  headers: { 'retry-after': '1' },
  body: JSON.stringify({
    type: 'urn:lct:problem:request-in-progress',
    title: 'Conflict',
    status: 409,
    detail: 'A request with this Idempotency-Key is still running; retry shortly.',
    requestId: '00000000-0000-0000-0000-000000000000',
  }),
};

async function fillJoin(page, name, surname) {
  await page.getByLabel('First name').fill(name);
  await page.getByLabel('Surname').fill(surname);
  await page.getByRole('button', { name: 'Join' }).tap();
}

describe('retried commands in the browser', () => {
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

  it('a join whose answer was lost, retried while it seems to run, gets its token', async () => {
    const { id } = await callV2(server, 'POST', '/tournaments', { body: { name: 'Lost answer', playerLimit: 3 } });
    const phone = await openPerson(browser, server.baseUrl, 'phone', PHONE);
    const keys = [];
    await phone.page.route(`**/api/v2/tournaments/${id}/players`, async (route) => {
      keys.push(route.request().headers()['idempotency-key']);
      if (keys.length === 1) {
        await route.fetch(); // the server joins Anna; the answer is lost on the way back
        return route.abort('connectionreset');
      }
      if (keys.length === 2) return route.fulfill(inProgress);
      return route.continue();
    });
    await phone.page.goto(`/player/register/${id}`);
    await fillJoin(phone.page, 'Anna', 'Nowak');
    await phone.page.waitForURL(`**/p/${id}`);
    await phone.page.locator('#me').getByText('Anna Nowak').waitFor();
    assert.equal(keys.length, 3);
    assert.equal(new Set(keys).size, 1, `one key for every attempt: ${keys}`);
    const view = await callV2(server, 'GET', `/tournaments/${id}`);
    assert.deepEqual(view.players.map((p) => p.name), ['Anna']);
    assert.deepEqual(unexpected(phone), []);
    await phone.context.close();
  });

  it('a join whose answers were all lost is answered after the page is reloaded', async () => {
    const { id } = await callV2(server, 'POST', '/tournaments', { body: { name: 'Lost answers', playerLimit: 3 } });
    const phone = await openPerson(browser, server.baseUrl, 'phone', PHONE);
    const keys = [];
    let cut = true;
    await phone.page.route(`**/api/v2/tournaments/${id}/players`, async (route) => {
      keys.push(route.request().headers()['idempotency-key']);
      if (!cut) return route.continue();
      if (keys.length === 1) await route.fetch(); // the server joins Ben
      return route.abort('connectionreset');
    });
    await phone.page.goto(`/player/register/${id}`);
    await fillJoin(phone.page, 'Ben', 'Okafor');
    await phone.page.getByRole('alert').getByText('Cannot reach the server', { exact: false }).waitFor();

    // The connection is back; the player reloads and tries again.
    cut = false;
    await phone.page.reload();
    await fillJoin(phone.page, 'Ben', 'Okafor');
    await phone.page.waitForURL(`**/p/${id}`);
    await phone.page.locator('#me').getByText('Ben Okafor').waitFor();
    assert.equal(new Set(keys).size, 1, `one key for every attempt: ${keys}`);
    assert.deepEqual(unexpected(phone), []);
    await phone.context.close();
  });

  it('a join whose request stalls is given up and sent again with the same key', async () => {
    const { id } = await callV2(server, 'POST', '/tournaments', { body: { name: 'Stalled', playerLimit: 3 } });
    const phone = await openPerson(browser, server.baseUrl, 'phone-stalled', PHONE);
    const keys = [];
    await phone.page.route(`**/api/v2/tournaments/${id}/players`, (route) => {
      keys.push(route.request().headers()['idempotency-key']);
      // The first attempt goes nowhere and is never answered.
      return keys.length === 1 ? new Promise(() => {}) : route.continue();
    });
    await phone.page.goto(`/player/register/${id}`);
    await fillJoin(phone.page, 'Cleo', 'Silva');
    await phone.page.waitForURL(`**/p/${id}`, { timeout: 30_000 });
    await phone.page.locator('#me').getByText('Cleo Silva').waitFor();
    assert.equal(keys.length, 2);
    assert.equal(new Set(keys).size, 1, `one key for every attempt: ${keys}`);
    await phone.context.close();
  });

  it('a join refused for its rate is sent again after Retry-After', async () => {
    const { id } = await callV2(server, 'POST', '/tournaments', { body: { name: 'Rate', playerLimit: 3 } });
    const phone = await openPerson(browser, server.baseUrl, 'phone-rate', PHONE);
    let attempts = 0;
    await phone.page.route(`**/api/v2/tournaments/${id}/players`, (route) => {
      attempts += 1;
      if (attempts > 1) return route.continue();
      return route.fulfill({
        status: 429,
        contentType: 'application/problem+json',
        headers: { 'retry-after': '1' },
        body: JSON.stringify({ type: 'urn:lct:problem:rate-limited', title: 'Too Many Requests', status: 429,
          detail: 'Too many requests; slow down.', requestId: '00000000-0000-0000-0000-000000000000' }),
      });
    });
    await phone.page.goto(`/player/register/${id}`);
    await fillJoin(phone.page, 'Dara', 'Kim');
    await phone.page.waitForURL(`**/p/${id}`);
    assert.equal(attempts, 2);
    await phone.context.close();
  });

  it('a TV opened while the server cannot answer shows the tournament once it can', async () => {
    const { id } = await callV2(server, 'POST', '/tournaments', { body: { name: 'Patient TV', playerLimit: 2 } });
    const tv = await openPerson(browser, server.baseUrl, 'tv', DESKTOP);
    let refused = 0;
    // More failed reads than one read's own retries.
    await tv.page.route((url) => url.pathname === `/api/v2/tournaments/${id}`, (route) => {
      if (refused < 6) {
        refused += 1;
        return route.fulfill(unavailable);
      }
      return route.continue();
    });
    await tv.page.goto(`/t/${id}`);
    await tv.page.getByRole('heading', { level: 1, name: 'Patient TV' }).waitFor({ timeout: 30_000 });
    await tv.page.locator('#live[data-status="live"]').waitFor();
    assert.equal(refused, 6);
    assert.deepEqual(unexpected(tv), []);
    await tv.context.close();
  });

  /** A drawn tournament of two with its league of one match scheduled. */
  async function scheduledNight(name) {
    const { id, organiserToken } = await callV2(server, 'POST', '/tournaments', { body: { name, playerLimit: 2 } });
    for (const [player, team] of [['Anna', 'Chelsea'], ['Ben', 'PSG']]) {
      const joined = await callV2(server, 'POST', `/tournaments/${id}/players`, { body: { name: player, surname: 'S' } });
      await callV2(server, 'POST', `/tournaments/${id}/selection`, { body: { team }, token: joined.playerToken });
    }
    await callV2(server, 'POST', `/tournaments/${id}/draw`, { token: organiserToken });
    await callV2(server, 'POST', `/tournaments/${id}/fixtures`, { body: { format: 'league', legs: 1 }, token: organiserToken });
    return { id, organiserToken };
  }

  it('the score sheet stays open while its save is on its way, and shows its refusal', async () => {
    const { id, organiserToken } = await scheduledNight('Slow save');
    const organiser = await openPerson(browser, server.baseUrl, 'organiser', PHONE);
    let answer;
    const answered = new Promise((resolve) => { answer = resolve; });
    await organiser.page.route(`**/api/v2/tournaments/${id}/matches/1/result`, async (route) => {
      await answered;
      return route.fulfill({
        status: 409,
        contentType: 'application/problem+json',
        body: JSON.stringify({ type: 'urn:lct:problem:night-already-finished', title: 'Conflict', status: 409,
          detail: 'The night is finished; its results are final.', requestId: '00000000-0000-0000-0000-000000000000' }),
      });
    });
    await openAsDevice(organiser, id, { organiserToken }, `/t/${id}`);
    await organiser.page.locator('#next-matches li[data-match="1"]').getByRole('button', { name: 'Enter result' }).click();
    const sheet = organiser.page.getByRole('dialog');
    await sheet.getByRole('button', { name: 'Save result' }).click();
    await sheet.locator('#score-save[aria-busy="true"]').waitFor();
    // Leaving while it saves: Escape and Cancel do nothing until the answer.
    await organiser.page.keyboard.press('Escape');
    assert.ok(await sheet.getByRole('button', { name: 'Cancel' }).isDisabled());
    answer();
    await sheet.getByRole('alert').getByText('The night is finished; its results are final.').waitFor();
    assert.ok(await sheet.isVisible(), 'the sheet shows why the save was refused');
    await organiser.context.close();
  });

  it('a night read that fails is made again, and the TV shows the result', async () => {
    const { id, organiserToken } = await scheduledNight('Flaky night');
    const tv = await openPerson(browser, server.baseUrl, 'tv-night', DESKTOP);
    await tv.page.goto(`/t/${id}`);
    await tv.page.locator('#live[data-status="live"]').waitFor();
    await tv.page.locator('#next-matches li[data-match="1"]').waitFor();

    // The next reads of the fixtures fail, more than one read's own retries.
    let failed = 0;
    await tv.page.route(`**/api/v2/tournaments/${id}/fixtures`, (route) => {
      if (failed < 5) {
        failed += 1;
        return route.fulfill(unavailable);
      }
      return route.continue();
    });
    await callV2(server, 'POST', `/tournaments/${id}/matches/1/result`, {
      body: { homeGoals: 2, awayGoals: 0 }, token: organiserToken,
    });
    await tv.page.locator('#results li[data-match="1"] .score').getByText('2 – 0').waitFor();
    assert.equal(failed, 5);
    await tv.context.close();
  });
});
