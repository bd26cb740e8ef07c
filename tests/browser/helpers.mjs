// Shared helpers of the browser tests: start and stop a real `lct`, launch Debian's Chromium
// through playwright-core, and watch pages for console errors, page errors, failed requests
// and any request that would leave the server.

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The `lct` binary: `LCT_BIN`, or target/debug/lct of the workspace, as an absolute path. */
export const LCT_BIN = path.resolve(here, process.env.LCT_BIN ?? '../../target/debug/lct');
/** The browser: Debian's chromium unless `CHROMIUM_BIN` names another. */
export const CHROMIUM_BIN = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
/** Screenshots land here (ignored by git). */
export const ARTIFACTS = path.resolve(here, '../artifacts');

/** A phone: the viewport of a common handset, touch, mobile layout. */
export const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
/** The organiser's laptop, plugged into the TV. */
export const DESKTOP = { viewport: { width: 1366, height: 900 }, deviceScaleFactor: 1 };

/** Rejects `promise` with a message naming `what` when it does not settle within `ms`. */
export function deadline(promise, ms, what) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/**
 * Starts `lct` (by default on an ephemeral port with a fresh data directory) and resolves once
 * its `listening` log line names the bound address.
 */
export function startServer({ listen = '127.0.0.1:0', dataDir = mkdtempSync(path.join(tmpdir(), 'lct-browser-')) } = {}) {
  const child = spawn(LCT_BIN, [], {
    env: { ...process.env, LCT_LISTEN: listen, LCT_DATA_DIR: dataDir, LCT_LOG: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const server = { child, dataDir, logs: [], stderr: '' };
  server.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => { server.stderr += chunk; });
  const lines = readline.createInterface({ input: child.stdout });
  const listening = new Promise((resolve, reject) => {
    lines.on('line', (line) => {
      server.logs.push(line);
      let entry;
      try { entry = JSON.parse(line); } catch { return; }
      if (entry.message === 'listening' && typeof entry.addr === 'string') resolve(entry.addr);
    });
    child.once('error', reject);
    server.exited.then(({ code, signal }) => reject(new Error(
      `lct exited (code ${code}, signal ${signal}) before listening\n` +
      `stdout:\n${server.logs.join('\n')}\nstderr:\n${server.stderr}`)));
  });
  return deadline(listening, 30_000, `lct (${LCT_BIN}) to log "listening"`).then((addr) => {
    server.addr = addr;
    server.baseUrl = `http://${addr}`;
    return server;
  }, async (error) => {
    child.kill('SIGKILL');
    await server.exited;
    if (!listen.endsWith(':0')) throw error; // a restart keeps the data of the run before
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  });
}

/** Sends SIGTERM, waits for the exit and, unless `keepData`, removes the data directory. */
export async function stopServer(server, { keepData = false } = {}) {
  if (!server) return;
  if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGTERM');
  await deadline(server.exited, 30_000, 'lct to exit after SIGTERM');
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
