// After the draw, in real browsers against the real `lct`: the organiser, on a phone, draws,
// schedules and runs the night; a TV (no token) shows the next matches, the results and the
// table updating live; each player's phone shows their own next match and position. A league of
// four (players enter round one themselves, the organiser corrects a result) and a knockout of
// five (three byes, a level match settled on penalties). Joining and picking, which the night
// test covers, are done through the API. Any console error, page error, failed request or
// request leaving the server fails the test; screenshots are kept in tests/artifacts/.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, stopServer, launchBrowser, openPerson, screenshot, callV2, openAsDevice, PHONE,
} from './helpers.mjs';

const TV = { viewport: { width: 1920, height: 1080 }, deviceScaleFactor: 1 };
const TEAMS = ['Bayern', 'PSG', 'Liverpool', 'Real Madrid', 'Juventus'];
const fullName = (p) => `${p.name} ${p.surname}`;

/** A tournament of `players`, joined and picked through the API; the draw is left to do. */
async function tournamentOf(server, name, players) {
  const created = await callV2(server, 'POST', '/tournaments', { body: { name, playerLimit: players.length } });
  const seats = [];
  for (const [i, player] of players.entries()) {
    const joined = await callV2(server, 'POST', `/tournaments/${created.id}/players`, { body: player });
    await callV2(server, 'POST', `/tournaments/${created.id}/selection`,
      { body: { team: TEAMS[i] }, token: joined.playerToken });
    seats.push({ ...player, ...joined });
  }
  return { id: created.id, organiserToken: created.organiserToken, seats };
}

/** Opens a phone already holding this player's token, on the player's page. */
async function playerPhone(browser, server, t, seat, { colorScheme = 'light' } = {}) {
  const phone = await openPerson(browser, server.baseUrl, `phone-${seat.name.toLowerCase()}`, { ...PHONE, colorScheme });
  await openAsDevice(phone, t.id, { playerId: seat.playerId, playerToken: seat.playerToken, name: seat.name, surname: seat.surname },
    `/p/${t.id}`);
  await phone.page.locator('#live[data-status="live"]').waitFor();
  return phone;
}

/** The table a page shows, as [[name, points text]], first place first. */
function tableOf(page) {
  return page.locator('#standings tbody tr').evaluateAll((rows) => rows.map((row) => [
    row.dataset.player, row.querySelector('.pts').textContent.trim(),
  ]));
}

/** Fills the score sheet (open on `page`) and saves it. */
async function fillSheet(page, match, homeGoals, awayGoals, { penalties = null, save = 'Save result' } = {}) {
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  await dialog.getByLabel(`Goals of ${fullName(match.home)}`).fill(String(homeGoals));
  await dialog.getByLabel(`Goals of ${fullName(match.away)}`).fill(String(awayGoals));
  if (penalties) {
    await dialog.getByRole('group', { name: 'Level: who won on penalties?' }).waitFor();
    await dialog.getByRole('radio', { name: fullName(match[penalties]) }).check();
  }
  await dialog.getByRole('button', { name: save }).click();
  await dialog.waitFor({ state: 'hidden' });
}

/** Nothing on a phone is wider than the phone. */
async function fitsTheScreen(page) {
  const { width, inner } = await page.evaluate(() => ({
    width: document.documentElement.scrollWidth, inner: window.innerWidth,
  }));
  assert.ok(width <= inner, `the page is ${width} px wide on a ${inner} px screen`);
}

describe('after the draw: a league night and a knockout', () => {
  let server;
  let browser;
  let people = [];

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await stopServer(server);
  });

  // Checks that no page met a problem; on failure keeps a screenshot of every page.
  const night = (name, body) => it(name, async () => {
    people = [];
    try {
      await body((person) => { people.push(person); return person; });
      assert.deepEqual(people.flatMap((p) => p.problems), [], 'the pages met problems');
    } catch (error) {
      for (const person of people) await screenshot(person.page, `failed-${name.split(' ')[1]}-${person.label}`).catch(() => {});
      throw error;
    } finally {
      await Promise.all(people.map((p) => p.context.close()));
    }
  });

  night('a league of four: players enter round one, the organiser the rest and a correction', async (keep) => {
    const players = [
      { name: 'Anna', surname: 'Nowak' }, { name: 'Ben', surname: 'Okafor' },
      { name: 'Chloé', surname: 'Durand' }, { name: 'Dev', surname: 'Patel' },
    ];
    const t = await tournamentOf(server, 'League Night', players);
    const rank = (p) => players.findIndex((q) => fullName(q) === fullName(p));

    // The organiser's phone draws; the TV and the four phones follow.
    const organiser = keep(await openPerson(browser, server.baseUrl, 'organiser', PHONE));
    await openAsDevice(organiser, t.id, { organiserToken: t.organiserToken }, `/t/${t.id}`);
    const tv = keep(await openPerson(browser, server.baseUrl, 'tv', TV));
    await tv.page.goto(`/t/${t.id}`);
    const phones = [];
    // The last phone is in dark mode, so both colour schemes get exercised.
    for (const [i, seat] of t.seats.entries()) {
      const colorScheme = i === t.seats.length - 1 ? 'dark' : 'light';
      phones.push(keep(await playerPhone(browser, server, t, seat, { colorScheme })));
    }
    await organiser.page.getByRole('button', { name: 'Draw teams' }).click();
    await tv.page.getByText('The organiser chooses how the night is played.').waitFor();

    const form = organiser.page.locator('#schedule-form');
    await form.getByRole('radio', { name: /^League Everyone plays everyone once/ }).check();
    await form.getByRole('checkbox', { name: 'Players enter the results of their own matches' }).check();
    await fitsTheScreen(organiser.page);
    await screenshot(organiser.page, 'league-organiser-schedule');
    await form.getByRole('button', { name: 'Schedule matches' }).click();
    await organiser.page.locator('#next-matches li').first().waitFor();

    const fixtures = await callV2(server, 'GET', `/tournaments/${t.id}/fixtures`);
    assert.equal(fixtures.matches.length, 6);
    // The TV: the next four matches and a table of four at zero; no buttons.
    await tv.page.locator('#next-matches li').nth(3).waitFor();
    assert.equal(await tv.page.locator('#next-matches li').count(), 4);
    assert.equal(await tv.page.locator('#next-card button:visible').count(), 0, 'the TV has no organiser controls');
    await tv.page.locator('#standings tbody tr').nth(3).waitFor();
    assert.deepEqual((await tableOf(tv.page)).map(([, pts]) => pts), ['0', '0', '0', '0']);
    const size = await tv.page.locator('#standings tbody .who').first().evaluate((n) => parseFloat(getComputedStyle(n).fontSize));
    assert.ok(size >= 24, `table names are ${size} px on the TV: readable from across the room`);
    assert.equal(await tv.page.locator('#teams-card').isVisible(), false, 'the team tiles give way to the night');

    // Each phone: its own next match.
    for (const [i, phone] of phones.entries()) {
      const me = fullName(players[i]);
      const first = fixtures.matches.find((m) => [m.home, m.away].some((p) => fullName(p) === me));
      const opponent = fullName(first.home) === me ? first.away : first.home;
      await phone.page.locator('#my-next').getByText(`You v ${fullName(opponent)}`).waitFor();
      await phone.page.locator('#my-position').getByText(/ of 4 · 0 points$/).waitFor();
    }
    await fitsTheScreen(phones[0].page);
    await screenshot(phones[0].page, 'league-player-next-match', { fullPage: false });

    // The earlier joiner wins each match by the gap between them: a table with no ties.
    const scoreOf = (m) => {
      const gap = rank(m.away) - rank(m.home);
      return gap > 0 ? [gap, 0] : [0, -gap];
    };
    const points = new Map(players.map((p) => [fullName(p), 0]));
    for (const m of fixtures.matches) {
      const [h, a] = scoreOf(m);
      if (m.round === 1) {
        // Round one: the home player enters it on their own phone.
        const phone = phones[rank(m.home)];
        await phone.page.getByRole('button', { name: 'Enter the result' }).click();
        await fillSheet(phone.page, m, h, a);
      } else {
        await organiser.page.locator(`#next-matches li[data-match="${m.number}"]`)
          .getByRole('button', { name: 'Enter result' }).click();
        await fillSheet(organiser.page, m, h, a);
      }
      const winner = h > a ? m.home : m.away;
      points.set(fullName(winner), points.get(fullName(winner)) + 3);
      // The TV shows the result and the table at once.
      await tv.page.locator(`#results li[data-match="${m.number}"] .score`).getByText(`${h} – ${a}`).waitFor();
      // Each player's points; the order of players level on points is the server's to decide.
      const expected = [...points].map(([who, pts]) => `${who}:${pts}`).sort();
      await tv.page.waitForFunction((want) => JSON.stringify([...document.querySelectorAll('#standings tbody tr')]
        .map((r) => `${r.dataset.player}:${r.querySelector('.pts').textContent.trim()}`).sort()) === want,
      JSON.stringify(expected));
      const shown = (await tableOf(tv.page)).map(([, pts]) => Number(pts));
      assert.deepEqual(shown, [...shown].sort((x, y) => y - x), 'the table is in order of points');
      if (m.round === 1 && m === fixtures.matches[0]) {
        await screenshot(tv.page, 'league-tv-after-first-result', { fullPage: false });
      }
    }
    assert.deepEqual(await tableOf(tv.page), [
      ['Anna Nowak', '9'], ['Ben Okafor', '6'], ['Chloé Durand', '3'], ['Dev Patel', '0'],
    ]);
    await fitsTheScreen(organiser.page);
    await screenshot(organiser.page, 'league-organiser-results');

    // The organiser corrects Anna v Ben: Ben won 2-0.
    const annaBen = fixtures.matches.find((m) => [rank(m.home), rank(m.away)].sort().join() === '0,1');
    await organiser.page.locator(`#results li[data-match="${annaBen.number}"]`)
      .getByRole('button', { name: 'Correct' }).click();
    const benHome = rank(annaBen.home) === 1;
    await fillSheet(organiser.page, annaBen, benHome ? 2 : 0, benHome ? 0 : 2, { save: 'Save correction' });
    const corrected = tv.page.locator(`#results li[data-match="${annaBen.number}"]`);
    await corrected.getByText('corrected').waitFor();
    await tv.page.locator('#standings tbody tr').first().and(tv.page.locator('[data-player="Ben Okafor"]')).waitFor();
    assert.deepEqual(await tableOf(tv.page), [
      ['Ben Okafor', '9'], ['Anna Nowak', '6'], ['Chloé Durand', '3'], ['Dev Patel', '0'],
    ]);

    // Finish: the final table everywhere; each phone shows its final position.
    await organiser.page.getByRole('button', { name: 'Finish the night' }).click();
    await tv.page.getByRole('heading', { name: 'Final table' }).waitFor();
    await tv.page.getByText('The night is over.').waitFor();
    const finalPositions = ['2nd of 4 · 6 points', '1st of 4 · 9 points', '3rd of 4 · 3 points', '4th of 4 · 0 points'];
    for (const [i, phone] of phones.entries()) {
      await phone.page.locator('#my-position').getByText(finalPositions[i]).waitFor();
      await phone.page.locator('#my-next').getByText('The night is over.').waitFor();
      const mine = phone.page.locator('#standings tr[aria-current="true"]');
      assert.equal(await mine.getAttribute('data-player'), fullName(players[i]));
    }
    assert.equal(await organiser.page.locator('#results button').count(), 0, 'results are final');
    await screenshot(tv.page, 'league-tv-final-table');
    await screenshot(phones[1].page, 'league-player-final', { fullPage: false });
    await screenshot(phones[3].page, 'league-player-final-dark', { fullPage: false });
  });

  night('a knockout of five: byes, penalties, the bracket filling in live and a champion', async (keep) => {
    const players = [
      { name: 'Anna', surname: 'Nowak' }, { name: 'Ben', surname: 'Okafor' }, { name: 'Chloé', surname: 'Durand' },
      { name: 'Dev', surname: 'Patel' }, { name: 'Eva', surname: 'Lind' },
    ];
    const t = await tournamentOf(server, 'Knockout Night', players);
    await callV2(server, 'POST', `/tournaments/${t.id}/draw`, { token: t.organiserToken });

    const organiser = keep(await openPerson(browser, server.baseUrl, 'organiser', PHONE));
    await openAsDevice(organiser, t.id, { organiserToken: t.organiserToken }, `/t/${t.id}`);
    const tv = keep(await openPerson(browser, server.baseUrl, 'tv', TV));
    await tv.page.goto(`/t/${t.id}`);
    await tv.page.locator('#live[data-status="live"]').waitFor();
    const form = organiser.page.locator('#schedule-form');
    await form.getByRole('radio', { name: /^Knockout/ }).check();
    await form.getByRole('button', { name: 'Schedule matches' }).click();
    await organiser.page.locator('#next-matches li').first().waitFor();

    const fixtures = await callV2(server, 'GET', `/tournaments/${t.id}/fixtures`);
    const [first, semi1, semi2, final] = fixtures.matches;
    assert.deepEqual(fixtures.matches.map((m) => m.round), [1, 2, 2, 3]);
    assert.equal(fixtures.rounds[0].byes.length, 3);
    const top = semi1.home; // the top seed, who meets the winner of the first round
    const seat = (p) => t.seats.find((s) => fullName(s) === fullName(p));
    const topPhone = keep(await playerPhone(browser, server, t, seat(top)));
    const loserPhone = keep(await playerPhone(browser, server, t, seat(first.home)));

    // The TV: the first-round match, the byes, a semi-final waiting for its winner.
    await tv.page.locator('#byes').getByText(`Through to the next round on a bye: ${fixtures.rounds[0].byes.map(fullName).join(', ')}`).waitFor();
    const waiting = tv.page.locator(`#next-matches li[data-match="${semi1.number}"]`);
    await waiting.getByText('Winner of match 1').waitFor();
    await waiting.getByText('Semi-finals').waitFor();
    await topPhone.page.locator('#my-next').getByText('You v Winner of match 1').waitFor();
    await topPhone.page.locator('#my-next-detail').getByText(/Semi-finals/).waitFor();
    await screenshot(tv.page, 'knockout-tv-byes', { fullPage: false });

    // Round one ends 1-1; the away side wins on penalties and fills the semi-final.
    await organiser.page.locator(`#next-matches li[data-match="${first.number}"]`)
      .getByRole('button', { name: 'Enter result' }).click();
    await organiser.page.getByRole('dialog').getByLabel(`Goals of ${fullName(first.home)}`).fill('1');
    await organiser.page.getByRole('dialog').getByLabel(`Goals of ${fullName(first.away)}`).fill('1');
    await organiser.page.getByRole('group', { name: 'Level: who won on penalties?' }).waitFor();
    await screenshot(organiser.page, 'knockout-organiser-penalties', { fullPage: false });
    await fillSheet(organiser.page, first, 1, 1, { penalties: 'away' });
    await tv.page.locator(`#results li[data-match="${first.number}"]`)
      .getByText(`${fullName(first.away)} won on penalties`).waitFor();
    await waiting.getByText(fullName(first.away)).waitFor();
    await topPhone.page.locator('#my-next').getByText(`You v ${fullName(first.away)}`).waitFor();
    await loserPhone.page.locator('#my-next').getByText('You are out of the knockout.').waitFor();

    // The semi-finals and the final: the home sides win; the top seed takes the title.
    const semi1Now = { ...semi1, away: first.away };
    for (const [m, h, a] of [[semi1Now, 2, 0], [semi2, 3, 1]]) {
      await organiser.page.locator(`#next-matches li[data-match="${m.number}"]`)
        .getByRole('button', { name: 'Enter result' }).click();
      await fillSheet(organiser.page, m, h, a);
    }
    const finalNow = { ...final, home: top, away: semi2.home };
    await tv.page.locator(`#next-matches li[data-match="${final.number}"]`).getByText(fullName(semi2.home)).waitFor();
    await topPhone.page.locator('#my-next-detail').getByText(/Final/).waitFor();
    await organiser.page.locator(`#next-matches li[data-match="${final.number}"]`)
      .getByRole('button', { name: 'Enter result' }).click();
    await fillSheet(organiser.page, finalNow, 1, 0);
    await organiser.page.getByRole('button', { name: 'Finish the night' }).click();

    await tv.page.getByRole('heading', { name: 'Final table' }).waitFor();
    await tv.page.locator('#champion').getByText(`Champion: ${fullName(top)}`).waitFor();
    const firstRow = tv.page.locator('#standings tbody tr').first();
    assert.equal(await firstRow.getAttribute('data-player'), fullName(top));
    assert.equal((await firstRow.locator('.stage').innerText()).trim(), 'Champion');
    const stages = await tv.page.locator('#standings tbody .stage').allInnerTexts();
    assert.deepEqual(stages.map((s) => s.trim()),
      ['Champion', 'Out in the final', 'Out in the semi-finals', 'Out in the semi-finals', 'Out in the quarter-finals']);
    await topPhone.page.locator('#my-next').getByText('Champion!').waitFor();
    await topPhone.page.locator('#my-position').getByText('1st of 5 · Champion').waitFor();
    await loserPhone.page.locator('#my-position').getByText('5th of 5 · Out in the quarter-finals').waitFor();
    await fitsTheScreen(topPhone.page);
    await screenshot(tv.page, 'knockout-tv-final');
    await screenshot(topPhone.page, 'knockout-player-champion', { fullPage: false });
    await screenshot(organiser.page, 'knockout-organiser-final');
  });
});
