// Shared helpers of the browser tests: start and stop a real `lct`, launch Debian's Chromium
// through playwright-core, and watch pages for console errors, page errors, failed requests
// and any request that would leave the server.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer as startProcess, stopServer as stopProcess } from '../lct-process.mjs';

export { LCT_BIN, deadline } from '../lct-process.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The browser: Debian's chromium unless `CHROMIUM_BIN` names another. */
export const CHROMIUM_BIN = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
/** Screenshots land here (ignored by git). */
export const ARTIFACTS = path.resolve(here, '../artifacts');

/** A phone: the viewport of a common handset, touch, mobile layout. */
export const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
/** The organiser's laptop, plugged into the TV. */
export const DESKTOP = { viewport: { width: 1366, height: 900 }, deviceScaleFactor: 1 };

/**
 * Starts `lct` (by default on an ephemeral port with a fresh data directory) and resolves once
 * its `listening` log line names the bound address.
 */
export async function startServer({ listen = '127.0.0.1:0', dataDir = mkdtempSync(path.join(tmpdir(), 'lct-browser-')) } = {}) {
  try {
    return await startProcess({ listen, dataDir });
  } catch (error) {
    // A restart on a fixed address keeps the data of the run before.
    if (listen.endsWith(':0')) rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
}

/** Sends SIGTERM, waits for the exit and, unless `keepData`, removes the data directory. */
export async function stopServer(server, { keepData = false } = {}) {
  if (!server) return;
  await stopProcess(server);
  if (!keepData) rmSync(server.dataDir, { recursive: true, force: true });
}

/** Chromium, headless, with a fresh temporary profile (playwright's `launch` makes one). */
export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM_BIN,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * A browser context for one person, with every problem its pages meet collected in
 * `problems`: console errors, uncaught page errors, failed requests, HTTP errors, and requests
 * to anywhere but `baseUrl` (which are also blocked). `requests` logs what the pages sent.
 */
export async function openPerson(browser, baseUrl, label, options) {
  const context = await browser.newContext({ ...options, baseURL: baseUrl });
  context.setDefaultTimeout(15_000);
  const problems = [];
  const origin = new URL(baseUrl).origin;
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) return route.continue();
    problems.push(`${label}: request outside the server: ${url}`);
    return route.abort();
  });
  const page = await context.newPage();
  const requests = [];
  page.on('request', (request) => requests.push({
    method: request.method(), path: new URL(request.url()).pathname, headers: request.headers(),
  }));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`${label}: console error: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`${label}: page error: ${error.message}`));
  page.on('requestfailed', (request) => {
    // Leaving a page cancels its pending requests; that is not a failure of the app.
    if (request.failure()?.errorText !== 'net::ERR_ABORTED') {
      problems.push(`${label}: request failed: ${request.method()} ${request.url()} ${request.failure()?.errorText}`);
    }
  });
  page.on('response', (response) => {
    if (response.status() >= 400) problems.push(`${label}: HTTP ${response.status()} for ${response.request().method()} ${response.url()}`);
  });
  return { label, context, page, problems, requests };
}

/** Saves a screenshot (of the whole page unless `fullPage` is false) as tests/artifacts/{name}.png. */
export async function screenshot(page, name, { fullPage = true } = {}) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  // From the top, or the sticky top bar is drawn where the page happens to be scrolled.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: file, fullPage });
  return file;
}

/** Calls the v2 API from the test and returns the parsed answer; a refusal fails the test. */
export async function callV2(server, method, path, { body, token } = {}) {
  const headers = body === undefined ? {} : { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${server.baseUrl}/api/v2${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

/**
 * Gives `person`'s browser what a device keeps for tournament `id` (its tokens, as the pages
 * store them after creating or joining), then opens `path`.
 */
export async function openAsDevice(person, id, stored, path) {
  await person.page.goto('/'); // any page of the origin, to reach its storage
  await person.page.evaluate(([key, value]) => localStorage.setItem(key, value),
    [`lct:tournament:${id}`, JSON.stringify(stored)]);
  await person.page.goto(path);
}
