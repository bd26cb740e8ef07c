// "Create tournament" load test: the original LetChooseTeams scenario set (postTournamentTests.js),
// four executors one after another, every iteration creating one tournament of 2 players.
//
//   k6 run k6/create.js                     (server at LCT_BASE_URL, default http://127.0.0.1:8080)
//
// Corrections against the original: the threshold expression had a leading space
// (' avg < 2000'), the base URL was a hard-coded LAN address (now LCT_BASE_URL), the request
// timeout is a per-request parameter, and the create response is checked for a JSON string id.

import { createTournament } from './lib.js';

export const options = {
  scenarios: {
    ramping_vus: {
      executor: 'ramping-vus',
      startVUs: 0,
      startTime: '0s',
      stages: [
        { duration: '30s', target: 50 },
        { duration: '30s', target: 120 },
        { duration: '30s', target: 80 },
        { duration: '30s', target: 0 },
      ],
      gracefulRampDown: '15s',
    },
    shared_iterations: {
      executor: 'shared-iterations',
      startTime: '130s',
      vus: 80,
      iterations: 1600,
      maxDuration: '40s',
    },
    per_vu_iterations: {
      executor: 'per-vu-iterations',
      startTime: '175s',
      vus: 120,
      iterations: 25,
      maxDuration: '55s',
    },
    constant_vus: {
      executor: 'constant-vus',
      startTime: '235s',
      vus: 120,
      duration: '1m',
    },
  },
  thresholds: {
    http_req_duration: ['avg < 2000'],
    checks: ['rate == 1'],
  },
};

export default function () {
  createTournament(2);
}
