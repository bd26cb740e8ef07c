// Shared helpers for the lct hub tests: start and stop an `lct` process, call the v1 REST API,
// and open hub connections with the official @microsoft/signalr client.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import {
  HubConnectionBuilder,
  HttpTransportType,
  LogLevel,
} from '@microsoft/signalr';
import { deadline } from '../lct-process.mjs';

export { LCT_BIN, deadline, startServer, stopServer } from '../lct-process.mjs';

/** The ten teams, spelled as the contract spells them. */
export const TEAMS = [
  'Bayern', 'PSG', 'Manchaster City', 'Liverpool', 'Machester United',
  'Real Madrid', 'Chelsea', 'Atletico Madrid', 'Juventus', 'Barcelona',
];

/** A fresh data directory, removed by `removeDataDir`. */
export function freshDataDir() {
  return mkdtempSync(path.join(tmpdir(), 'lct-js-'));
}

export function removeDataDir(dir) {
  rmSync(dir, { recursive: true, force: true });
}

/** Calls the REST API; asserts exactly 200 and returns the parsed JSON body (or null if empty). */
export async function api(server, method, pathAndQuery, body) {
  const response = await fetch(server.baseUrl + pathAndQuery, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.equal(response.status, 200, `${method} ${pathAndQuery} answered ${response.status}: ${text}`);
  return text === '' ? null : JSON.parse(text);
}

export const createTournament = (server, name, playerLimit) =>
  api(server, 'POST', '/api/Tournament/create', { name, playerLimit });

export const assignPlayer = (server, tournamentId, name, surname) =>
  api(server, 'POST', '/api/Tournament/assignPlayer', { name, surname, tournamentId });

export const selectTeam = (server, tournamentId, playerName, playerSurname, team) =>
  api(server, 'POST', '/api/Team/select', { playerName, playerSurname, tournamentId, team });

export const draw = (server, tournamentId) =>
  api(server, 'GET', `/api/Tournament/draw?tournamentId=${tournamentId}`);

/** A unique tournament name (names are unique across tournaments). */
export function uniqueName(prefix) {
  return `${prefix} ${Math.random().toString(36).slice(2, 10)}`;
}

/** An ILogger keeping the client's trace output, for failure messages. */
class TraceLog {
  constructor(label) {
    this.label = label;
    this.lines = [];
  }

  log(level, message) {
    const line = `[${new Date().toISOString()}] ${LogLevel[level]} ${this.label}: ${message}`;
    this.lines.push(line);
    if (process.env.LCT_JS_TRACE) process.stderr.write(line + '\n');
  }

  tail(n = 40) {
    return this.lines.slice(-n).join('\n');
  }
}

/** Messages a connection received for one handler name, in arrival order. */
class Inbox {
  constructor(label, trace) {
    this.label = label;
    this.trace = trace;
    this.messages = [];
    this.waiters = [];
  }

  push(message) {
    this.messages.push(message);
    for (const waiter of [...this.waiters]) waiter();
  }

  /** Resolves with the first message (from index `from`) matching `predicate`. */
  waitFor(predicate, { from = 0, timeout = 10_000, what = 'a matching message' } = {}) {
    const found = () => this.messages.slice(from).find(predicate);
    const existing = found();
    if (existing) return Promise.resolve(existing);
    let waiter;
    const wait = new Promise((resolve) => {
      waiter = () => {
        const message = found();
        if (message) resolve(message);
      };
      this.waiters.push(waiter);
    });
    return deadline(wait, timeout, `${this.label} to receive ${what}`)
      .catch((error) => {
        error.message += `\nreceived so far: ${JSON.stringify(this.messages)}` +
          `\nclient log (tail):\n${this.trace.tail()}`;
        throw error;
      })
      .finally(() => { this.waiters = this.waiters.filter((w) => w !== waiter); });
  }

  /** Resolves once at least `count` messages have arrived. */
  waitForCount(count, options = {}) {
    return this.waitFor(() => this.messages.length >= count, { what: `${count} messages`, ...options })
      .then(() => this.messages.slice(0, count));
  }
}

/** The hub URL of a tournament. */
export function hubUrl(server, tournamentId) {
  return `${server.baseUrl}/hubs/actions?tournamentId=${tournamentId}`;
}

/**
 * Builds a hub connection the way the LetChooseTeams front end does (by default: skip
 * negotiation, WebSockets, automatic reconnect 0/2/10/30 s) and registers a handler named after
 * each of `listen` (default: the tournament id) that JSON-parses the single string argument.
 * Returns `{ connection, inbox, inboxes, trace }` without starting it.
 */
export function buildConnection(server, tournamentId, {
  label = 'client',
  httpOptions = { skipNegotiation: true, transport: HttpTransportType.WebSockets },
  reconnectDelays = [0, 2000, 10000, 30000],
  listen = [tournamentId],
  configure = (builder) => builder,
} = {}) {
  const trace = new TraceLog(label);
  const builder = new HubConnectionBuilder()
    .withUrl(hubUrl(server, tournamentId), { ...httpOptions, logMessageContent: true })
    .configureLogging(trace);
  if (reconnectDelays) builder.withAutomaticReconnect(reconnectDelays);
  const connection = configure(builder).build();
  const inboxes = {};
  for (const target of listen) {
    const inbox = new Inbox(`${label} (handler ${target})`, trace);
    connection.on(target, (message) => {
      assert.equal(typeof message, 'string', `${label}: the argument of ${target} must be a JSON string`);
      inbox.push(JSON.parse(message));
    });
    inboxes[target] = inbox;
  }
  return { connection, inbox: inboxes[tournamentId] ?? inboxes[listen[0]], inboxes, trace };
}

/** Builds and starts a connection; a failing start reports the client's log. */
export async function connect(server, tournamentId, options = {}) {
  const built = buildConnection(server, tournamentId, options);
  try {
    await deadline(built.connection.start(), 10_000, `${options.label ?? 'client'} to connect`);
  } catch (error) {
    error.message += `\nclient log (tail):\n${built.trace.tail()}`;
    throw error;
  }
  return built;
}

/** Stops connections, ignoring ones already stopped. */
export async function stopAll(...connections) {
  await Promise.all(connections.filter(Boolean).map((c) => c.connection.stop().catch(() => {})));
}

export { HttpTransportType, HubConnectionState } from '@microsoft/signalr';
