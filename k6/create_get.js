// "Create then get" load test: the original LetChooseTeams getTournament_loadTests.js.
// Each iteration creates a tournament (group 'post is success') and reads it back
// (group 'get is ok'), checking the GET is 200 and returns the same id.
//
//   k6 run k6/create_get.js
//
// Corrections against the original: base URL from LCT_BASE_URL instead of a hard-coded LAN
// address, no remote jslib import (the URL is built directly), the id is parsed as JSON instead of
// stripping quotes, the POST is checked too and the GET is skipped when the create failed.

import { check, group } from 'k6';
import { createTournament, getTournament } from './lib.js';

export const options = {
  stages: [
    { duration: '30s', target: 50 },
    { duration: '30s', target: 100 },
    { duration: '30s', target: 100 },
    { duration: '40s', target: 0 },
  ],
  thresholds: {
    'group_duration{group:::get is ok}': ['avg < 2000'],
    checks: ['rate == 1'],
  },
};

export default function () {
  let id = null;
  group('post is success', function () {
    id = createTournament(2);
  });
  if (!id) {
    return;
  }
  group('get is ok', function () {
    const res = getTournament(id);
    check(res, {
      'get returns the same id': (r) => {
        try {
          return r.json('id') === id;
        } catch (e) {
          return false;
        }
      },
    });
  });
}
