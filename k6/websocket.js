// WebSocket fan-out load test of the SignalR-compatible hub (/hubs/actions), lobbies of 10.
//
// Every iteration plays one whole lobby:
//   1. creates a tournament of 10 seats (HTTP);
//   2. opens 10 WebSockets to /hubs/actions?tournamentId={id} and does the SignalR JSON
//      handshake on each ({"protocol":"json","version":1}␞ answered {}␞);
//   3. joins the 10 players over HTTP one at a time (each: PlayerAssigned on all 10 sockets);
//   4. for each player in turn: a TeamClicked hub invocation from that player's socket
//      (TeamClicked on all 10 sockets, completion on the sender) and then
//      POST /api/Team/select of a distinct team (TeamSelected on all 10 sockets);
//   5. draws (GET /api/Tournament/draw; TeamsDrawn on all 10 sockets) and closes the sockets.
// Each command is sent only after the previous one was answered and its message reached all 10
// sockets (or STEP_TIMEOUT_MS passed), so every message is attributed to exactly one command.
//
// Metrics:
//   lct_command_to_message  time from sending a command (HTTP request or hub invocation) to the
//                           arrival of its message on a socket; one sample per socket and command
//                           (tag `command`: join, click, select, draw)
//   lct_command_to_all      the same until the last of the 10 sockets had it (lobby fan-out done)
//   lct_messages_received   invocation records received (everything type 1, incl. repeats)
//   lct_message_delivered   rate of (socket, command) pairs whose message arrived: 1 = no loss
//   lct_messages_duplicated a domain event seen twice on one socket
//   lct_hub_errors          socket errors, unexpected closes, close records, refused invocations
//   lct_lobby_completed     rate of iterations that played the whole lobby
//
// Arrival times are the k6 WebSocket event timestamps (sub-millisecond, taken when k6 reads the
// frame); send times come from Date.now(), so samples carry up to 1 ms of resolution error.
//
// Environment: LCT_BASE_URL (http://127.0.0.1:8080), VUS (5), DURATION (30s),
// STEP_TIMEOUT_MS (5000), ITERATION_TIMEOUT_MS (60000).
//
//   k6 run k6/websocket.js
//   VUS=10 DURATION=2m k6 run k6/websocket.js

import http from 'k6/http';
import { check } from 'k6';
import { WebSocket } from 'k6/experimental/websockets';
import { setTimeout, clearTimeout } from 'k6/timers';
import { Trend, Counter, Rate } from 'k6/metrics';
import { BASE_URL, WS_BASE_URL, TEAMS, createTournament, params, uniqueName } from './lib.js';

const RS = '\x1e';
const LOBBY = 10;
const STEP_TIMEOUT_MS = Number(__ENV.STEP_TIMEOUT_MS || 5000);
const ITERATION_TIMEOUT_MS = Number(__ENV.ITERATION_TIMEOUT_MS || 60000);

const commandToMessage = new Trend('lct_command_to_message', true);
const commandToAll = new Trend('lct_command_to_all', true);
const messagesReceived = new Counter('lct_messages_received');
const messageDelivered = new Rate('lct_message_delivered');
const messagesDuplicated = new Counter('lct_messages_duplicated');
const hubErrors = new Counter('lct_hub_errors');
const lobbyCompleted = new Rate('lct_lobby_completed');

export const options = {
  scenarios: {
    lobbies: {
      executor: 'constant-vus',
      vus: Number(__ENV.VUS || 5),
      duration: __ENV.DURATION || '30s',
      gracefulStop: `${Math.ceil(ITERATION_TIMEOUT_MS / 1000) + 10}s`,
    },
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'],
  thresholds: {
    lct_command_to_message: ['p(99) < 50'],
    'lct_command_to_message{command:join}': ['p(99) < 50'],
    'lct_command_to_message{command:click}': ['p(99) < 50'],
    'lct_command_to_message{command:select}': ['p(99) < 50'],
    'lct_command_to_message{command:draw}': ['p(99) < 50'],
    lct_message_delivered: ['rate == 1'],
    lct_messages_duplicated: ['count == 0'],
    lct_hub_errors: ['count == 0'],
    lct_lobby_completed: ['rate == 1'],
    checks: ['rate == 1'],
  },
};

function record(payload) {
  return JSON.stringify(payload) + RS;
}

// The key of a domain event, to spot one delivered twice to the same socket.
function eventKey(p) {
  switch (p.type) {
    case 'PlayerAssigned':
      return `PlayerAssigned|${p.name}|${p.surname}`;
    case 'TeamSelected':
      return `TeamSelected|${p.playerName}|${p.playerSurname}|${p.team}`;
    case 'TeamsDrawn':
      return 'TeamsDrawn';
    default:
      return null; // TeamClicked is a repeated snapshot of the clicks, not a domain event
  }
}

export default function () {
  const id = createTournament(LOBBY);
  if (!id) {
    lobbyCompleted.add(false);
    return;
  }
  const surname = uniqueName('ws');
  const players = [];
  for (let i = 0; i < LOBBY; i++) {
    players.push({ name: `player${i}`, surname, team: TEAMS[i] });
  }

  // The commands, in order; `matches` recognises the payload each one causes.
  const steps = [];
  players.forEach((p) => {
    steps.push({
      command: 'join',
      matches: (m) => m.type === 'PlayerAssigned' && m.name === p.name && m.surname === p.surname,
      send: () => post('/api/Tournament/assignPlayer', { name: p.name, surname: p.surname, tournamentId: id }),
    });
  });
  players.forEach((p, i) => {
    steps.push({
      command: 'click',
      matches: (m) =>
        m.type === 'TeamClicked' &&
        Array.isArray(m.clickedTeams) &&
        m.clickedTeams.some((c) => c.name === p.name && c.surname === p.surname && c.team === p.team),
      send: () => invoke(i, 'TeamClicked', { groupKey: id, team: p.team, name: p.name, surname: p.surname }),
    });
    steps.push({
      command: 'select',
      matches: (m) =>
        m.type === 'TeamSelected' && m.playerName === p.name && m.playerSurname === p.surname && m.team === p.team,
      send: () =>
        post('/api/Team/select', { playerName: p.name, playerSurname: p.surname, tournamentId: id, team: p.team }),
    });
  });
  steps.push({
    command: 'draw',
    matches: (m) => m.type === 'TeamsDrawn' && Array.isArray(m.drawnTeams) && m.drawnTeams.length === LOBBY,
    send: () => request('GET', `/api/Tournament/draw?tournamentId=${id}`, null, 'GET /api/Tournament/draw'),
  });

  const sockets = [];
  let handshaken = 0;
  let stepIndex = -1;
  let current = null; // { step, sentAt, got: [bool], count, answered, timer }
  let finished = false;
  let invocationSeq = 0;

  const iterationTimer = setTimeout(() => finish(false, 'iteration timeout'), ITERATION_TIMEOUT_MS);

  function request(method, path, body, name) {
    return http.asyncRequest(method, `${BASE_URL}${path}`, body === null ? null : JSON.stringify(body), params(name));
  }

  function post(path, body) {
    return request('POST', path, body, `POST ${path}`);
  }

  // Sends a hub invocation with an invocationId; resolved by the completion record.
  function invoke(socketIndex, target, argument) {
    const invocationId = String(invocationSeq++);
    current.invocationId = invocationId;
    current.invoker = socketIndex;
    sockets[socketIndex].ws.send(record({ type: 1, target, arguments: [argument], invocationId }));
    return null;
  }

  function nextStep() {
    if (finished) {
      return;
    }
    stepIndex++;
    if (stepIndex >= steps.length) {
      finish(true);
      return;
    }
    const step = steps[stepIndex];
    const state = { step, sentAt: 0, got: new Array(LOBBY).fill(false), count: 0, answered: false, timer: null };
    current = state;
    state.timer = setTimeout(() => stepTimedOut(state), STEP_TIMEOUT_MS);
    state.sentAt = Date.now();
    const pending = step.send();
    if (pending) {
      pending.then(
        (res) => {
          const ok = check(res, { [`${step.command} is 200`]: (r) => r.status === 200 });
          if (current !== state) {
            return;
          }
          if (!ok) {
            console.warn(`${step.command} answered ${res.status}: ${res.body}`);
            finish(false, `${step.command} failed`, false);
            return;
          }
          state.answered = true;
          maybeAdvance(state);
        },
        (err) => {
          check(null, { [`${step.command} is 200`]: () => false });
          finish(false, `${step.command} request error: ${err}`, false);
        },
      );
    }
  }

  function maybeAdvance(state) {
    if (current === state && state.answered && state.count === LOBBY) {
      clearTimeout(state.timer);
      commandToAll.add(state.lastAt - state.sentAt, { command: state.step.command });
      nextStep();
    }
  }

  function stepTimedOut(state) {
    if (current !== state || finished) {
      return;
    }
    const missing = [];
    state.got.forEach((got, i) => {
      if (!got) {
        missing.push(i);
      }
    });
    console.warn(
      `tournament ${id}: step ${stepIndex} (${state.step.command}) timed out; answered=${state.answered}, ` +
        `sockets without the message: ${missing.join(',') || 'none'}`,
    );
    finish(false, 'step timeout');
  }

  // Ends the lobby and closes the sockets. With countLost (a timeout or a broken socket, not a
  // refused command) the sockets still waiting for the current step's message count as losses.
  function finish(completed, reason, countLost = true) {
    if (finished) {
      return;
    }
    finished = true;
    clearTimeout(iterationTimer);
    if (current) {
      clearTimeout(current.timer);
    }
    if (!completed) {
      console.warn(`tournament ${id}: lobby abandoned: ${reason}`);
      if (countLost && current && handshaken === LOBBY) {
        current.got.forEach((got) => {
          if (!got) {
            messageDelivered.add(false, { command: current.step.command });
          }
        });
      }
    }
    lobbyCompleted.add(completed);
    sockets.forEach((s) => {
      s.closing = true;
      if (!s.closed) {
        s.ws.close();
      }
    });
  }

  function onInvocation(socketIndex, socket, rec, at) {
    messagesReceived.add(1);
    if (rec.target !== id || !Array.isArray(rec.arguments) || typeof rec.arguments[0] !== 'string') {
      hubErrors.add(1, { kind: 'unexpected_invocation' });
      console.warn(`socket ${socketIndex}: unexpected invocation ${JSON.stringify(rec)}`);
      return;
    }
    let payload;
    try {
      payload = JSON.parse(rec.arguments[0]);
    } catch (e) {
      hubErrors.add(1, { kind: 'bad_payload' });
      return;
    }
    if (payload.tournamentId !== undefined && payload.tournamentId !== id) {
      hubErrors.add(1, { kind: 'foreign_tournament' });
    }
    const key = eventKey(payload);
    if (key !== null) {
      if (socket.seen[key]) {
        messagesDuplicated.add(1, { type: payload.type });
      }
      socket.seen[key] = true;
    }
    const state = current;
    if (state && !finished && !state.got[socketIndex] && state.step.matches(payload)) {
      state.got[socketIndex] = true;
      state.count++;
      state.lastAt = Math.max(state.lastAt || 0, at);
      commandToMessage.add(at - state.sentAt, { command: state.step.command });
      messageDelivered.add(true, { command: state.step.command });
      maybeAdvance(state);
    }
  }

  function onRecord(socketIndex, socket, text, at) {
    if (!socket.handshaken) {
      let answer;
      try {
        answer = JSON.parse(text);
      } catch (e) {
        answer = { error: `not JSON: ${text}` };
      }
      if (answer.error) {
        hubErrors.add(1, { kind: 'handshake' });
        finish(false, `handshake refused: ${answer.error}`);
        return;
      }
      socket.handshaken = true;
      handshaken++;
      if (handshaken === LOBBY) {
        nextStep();
      }
      return;
    }
    let rec;
    try {
      rec = JSON.parse(text);
    } catch (e) {
      hubErrors.add(1, { kind: 'bad_record' });
      return;
    }
    switch (rec.type) {
      case 1:
        onInvocation(socketIndex, socket, rec, at);
        break;
      case 3: {
        // Completion of our TeamClicked invocation.
        const ok = check(rec, { 'TeamClicked completion without error': (r) => !r.error });
        if (!ok) {
          hubErrors.add(1, { kind: 'invocation_refused' });
          console.warn(`socket ${socketIndex}: invocation ${rec.invocationId} refused: ${rec.error}`);
          finish(false, 'invocation refused', false);
          return;
        }
        const state = current;
        if (state && state.invocationId === rec.invocationId && state.invoker === socketIndex) {
          state.completed = true;
          state.answered = true;
          maybeAdvance(state);
        }
        break;
      }
      case 6:
        socket.ws.send(record({ type: 6 }));
        break;
      case 7:
        hubErrors.add(1, { kind: 'close_record' });
        finish(false, `socket ${socketIndex} got a close record: ${text}`);
        break;
      default:
        break; // unknown record types are ignored, as the protocol says
    }
  }

  for (let i = 0; i < LOBBY; i++) {
    const ws = new WebSocket(`${WS_BASE_URL}/hubs/actions?tournamentId=${id}`);
    const socket = { ws, handshaken: false, closing: false, closed: false, seen: {} };
    sockets.push(socket);
    ws.onopen = () => {
      ws.send(record({ protocol: 'json', version: 1 }));
    };
    ws.onmessage = (event) => {
      const at = typeof event.timestamp === 'number' ? event.timestamp : Date.now();
      if (typeof event.data !== 'string') {
        hubErrors.add(1, { kind: 'binary_frame' });
        return;
      }
      event.data
        .split(RS)
        .filter((r) => r.trim().length > 0)
        .forEach((text) => onRecord(i, socket, text, at));
    };
    ws.onerror = (event) => {
      if (!socket.closing) {
        hubErrors.add(1, { kind: 'socket_error' });
        finish(false, `socket ${i} error: ${event.error}`);
      }
    };
    ws.onclose = () => {
      socket.closed = true;
      if (!socket.closing) {
        hubErrors.add(1, { kind: 'unexpected_close' });
        finish(false, `socket ${i} closed by the server`);
      }
    };
  }
}
