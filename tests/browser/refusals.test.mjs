// When the server refuses, the pages show the problem's `detail` to the user and stay usable:
// a join link of a tournament that does not exist, and a join the rules refuse.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startServer, stopServer, launchBrowser, openPerson, PHONE } from './helpers.mjs';

/** Calls the v2 API from the test; returns `{ status, body }`. */
async function v2(server, method, path, body) {
  const response = await fetch(`${server.baseUrl}/api/v2${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** The problems of a person, less the refusals this test provokes on purpose. */
const unexpected = (person, status) => person.problems.filter((p) =>
  !p.includes(`HTTP ${status} for`) && !p.includes(`the server responded with a status of ${status}`));

describe('refusals in the browser', () => {
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

  it('the join link of an unknown tournament says so', async () => {
    const id = randomUUID();
    const expected = await v2(server, 'GET', `/tournaments/${id}`);
    assert.equal(expected.status, 404);
    assert.ok(expected.body.detail, 'the problem has a detail');

    const phone = await openPerson(browser, server.baseUrl, 'phone', PHONE);
    await phone.page.goto(`/player/register/${id}`);
    await phone.page.getByRole('heading', { level: 1, name: 'Cannot open the tournament' }).waitFor();
    assert.equal(await phone.page.getByRole('alert').innerText(), expected.body.detail);
    assert.ok(await phone.page.locator('#join-form').isHidden());
    assert.deepEqual(unexpected(phone, 404), []);
    await phone.context.close();
  });

  it('a join the rules refuse shows the reason and keeps the form', async () => {
    const created = await v2(server, 'POST', '/tournaments', { name: 'Refusals', playerLimit: 2 });
    assert.equal(created.status, 201);
    const { id } = created.body;
    assert.equal((await v2(server, 'POST', `/tournaments/${id}/players`, { name: 'Anna', surname: 'Nowak' })).status, 201);
    const twice = await v2(server, 'POST', `/tournaments/${id}/players`, { name: 'Anna', surname: 'Nowak' });
    assert.equal(twice.status, 409);

    const phone = await openPerson(browser, server.baseUrl, 'phone', PHONE);
    await phone.page.goto(`/player/register/${id}`);
    await phone.page.getByText('1 of 2 seats left.').waitFor();
    await phone.page.getByLabel('First name').fill('  Anna ');
    await phone.page.getByLabel('Surname').fill('Nowak');
    await phone.page.getByRole('button', { name: 'Join' }).tap();
    await phone.page.getByRole('alert').getByText(twice.body.detail, { exact: true }).waitFor();
    assert.match(phone.page.url(), new RegExp(`/player/register/${id}$`));

    // Another name goes through from the same form.
    await phone.page.getByLabel('First name').fill('Ben');
    await phone.page.getByRole('button', { name: 'Join' }).tap();
    await phone.page.waitForURL(`**/p/${id}`);
    await phone.page.locator('#me').getByText('Ben Nowak').waitFor();
    assert.deepEqual(unexpected(phone, 409), []);
    await phone.context.close();
  });
});
