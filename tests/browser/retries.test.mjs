// A join whose answer never reached the phone: the page asks again with the same idempotency
// key, so the server answers what it did (the player's token) instead of acting twice or
// refusing "already joined" — whether the retry first meets the command still running, or
// comes after a reload of the page.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, stopServer, launchBrowser, openPerson, callV2, PHONE } from './helpers.mjs';

/** The problems of a person, less the lost answers and refusals this test makes on purpose. */
const unexpected = (person) => person.problems.filter((p) => !/ERR_CONNECTION_RESET|ERR_FAILED|HTTP 409 for|status of 409/.test(p));

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
});
