// Shared helpers of the lct k6 scripts (HTTP API v1, the API the LetChooseTeams front end uses).
//
// Environment:
//   LCT_BASE_URL      base URL of the server (default http://127.0.0.1:8080)
//   LCT_HTTP_TIMEOUT  per-request timeout (default 10s)

import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';

export const BASE_URL = (__ENV.LCT_BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');

// ws://host:port or wss://host:port for the same server.
export const WS_BASE_URL = BASE_URL.replace(/^http/i, 'ws');

export const HTTP_TIMEOUT = __ENV.LCT_HTTP_TIMEOUT || '10s';

// The ten teams, in the order of GET /api/Team (the misspellings are part of the contract).
export const TEAMS = [
  'Bayern',
  'PSG',
  'Manchaster City',
  'Liverpool',
  'Machester United',
  'Real Madrid',
  'Chelsea',
  'Atletico Madrid',
  'Juventus',
  'Barcelona',
];

// Request parameters: JSON body, the timeout given per request, and a fixed `name` tag so
// URLs with query strings do not each become a metric series of their own.
export function params(name) {
  return {
    headers: { 'Content-Type': 'application/json' },
    timeout: HTTP_TIMEOUT,
    tags: { name },
  };
}

// A tournament or player name that is unique across VUs, iterations and runs, at most 50
// characters (the server's limit).
export function uniqueName(prefix) {
  const vu = exec.vu.idInTest;
  const iter = exec.vu.iterationInInstance;
  const rand = Math.floor(Math.random() * 0x7fffffff).toString(36);
  return `${prefix}-${Date.now().toString(36)}-${vu}-${iter}-${rand}`.slice(0, 50);
}

function ok(res, what) {
  return check(res, { [`${what} is 200`]: (r) => r.status === 200 });
}

// POST /api/Tournament/create -> the new id (a JSON string), or null when it failed.
export function createTournament(limit, name) {
  const body = JSON.stringify({ name: name || uniqueName('k6'), playerLimit: limit });
  const res = http.post(`${BASE_URL}/api/Tournament/create`, body, params('POST /api/Tournament/create'));
  if (!ok(res, 'create')) {
    return null;
  }
  try {
    const id = res.json();
    return typeof id === 'string' ? id : null;
  } catch (e) {
    return null;
  }
}

// POST /api/Tournament/assignPlayer; returns the response.
export function joinPlayer(id, name, surname) {
  const body = JSON.stringify({ name, surname, tournamentId: id });
  const res = http.post(`${BASE_URL}/api/Tournament/assignPlayer`, body, params('POST /api/Tournament/assignPlayer'));
  ok(res, 'assignPlayer');
  return res;
}

// GET /api/Tournament?id=; returns the response.
export function getTournament(id) {
  const res = http.get(`${BASE_URL}/api/Tournament?id=${encodeURIComponent(id)}`, params('GET /api/Tournament'));
  ok(res, 'get');
  return res;
}

// POST /api/Team/select; returns the response.
export function selectTeam(id, playerName, playerSurname, team) {
  const body = JSON.stringify({ playerName, playerSurname, tournamentId: id, team });
  const res = http.post(`${BASE_URL}/api/Team/select`, body, params('POST /api/Team/select'));
  ok(res, 'select');
  return res;
}

// GET /api/Team?tournamentId=; returns the response.
export function getTeams(id) {
  const res = http.get(`${BASE_URL}/api/Team?tournamentId=${encodeURIComponent(id)}`, params('GET /api/Team'));
  ok(res, 'teams');
  return res;
}
