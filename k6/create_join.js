// "Create then join" load test: the original LetChooseTeams assignPlayerToTournament.js.
// Each iteration creates a tournament of 10 seats and joins 6 distinct players to it.
//
// Profiles (environment PROFILE):
//   default  the original ramp: 30s->20, 30s->35, 1m->45, 1m->0 VUs with the original
//            thresholds p(90)<4000, p(95)<4800, p(99.9)<6000 ms
//   target   our own target: a constant 35 VUs for DURATION (default 1m), every request
//            answered (http_req_failed rate == 0) with p(99) < 20 ms
//
//   k6 run k6/create_join.js
//   PROFILE=target k6 run k6/create_join.js            (or k6 run -e PROFILE=target ...)
//   PROFILE=target DURATION=5m k6 run k6/create_join.js
//
// Corrections against the original: base URL from LCT_BASE_URL, the id parsed as JSON,
// distinct player names within a tournament, joins skipped when the create failed.

import { check } from 'k6';
import { createTournament, joinPlayer, uniqueName } from './lib.js';

const PLAYER_LIMIT = 10;
const JOINS = 6;
const PROFILE = (__ENV.PROFILE || 'default').toLowerCase();

const profiles = {
  default: {
    stages: [
      { duration: '30s', target: 20 },
      { duration: '30s', target: 35 },
      { duration: '1m', target: 45 },
      { duration: '1m', target: 0 },
    ],
    thresholds: {
      http_req_duration: ['p(90) < 4000', 'p(95) < 4800', 'p(99.9) < 6000'],
      checks: ['rate == 1'],
    },
  },
  target: {
    scenarios: {
      target: {
        executor: 'constant-vus',
        vus: Number(__ENV.VUS || 35),
        duration: __ENV.DURATION || '1m',
      },
    },
    thresholds: {
      http_req_duration: ['p(99) < 20'],
      http_req_failed: ['rate == 0'],
      checks: ['rate == 1'],
    },
  },
};

if (!profiles[PROFILE]) {
  throw new Error(`unknown PROFILE '${PROFILE}'; use 'default' or 'target'`);
}

export const options = Object.assign(
  { summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'p(99.9)', 'max'] },
  profiles[PROFILE],
);

export default function () {
  const id = createTournament(PLAYER_LIMIT);
  if (!id) {
    return;
  }
  const surname = uniqueName('perf');
  for (let i = 0; i < JOINS; i++) {
    const res = joinPlayer(id, `player${i}`, surname);
    check(res, { 'join has an empty body': (r) => !r.body || r.body.length === 0 });
  }
}
