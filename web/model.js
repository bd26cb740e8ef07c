// What a page knows about one tournament: the view read from the API, kept current by the live
// messages. Domain messages are applied in version order; a gap (or anything unexpected) makes
// the page read the whole view again. Clicks and presence are not versioned: each message is
// the whole current list and replaces the previous one. After the draw the page also holds the
// night's fixtures and table, read again whenever a fixtures event arrives (the table is the
// server's to compute).

import { api } from './api.js';
import { connectLive } from './live.js';

/** How long after a failed read of the night it is read again. */
const NIGHT_RETRY_MS = 3000;

/** Players are told apart by name and surname, which are unique within a tournament. */
export const playerKey = (p) => `${p.name}\u0000${p.surname}`;

export class TournamentModel {
  constructor(id) {
    this.id = id;
    this.view = null;        // GET /api/v2/tournaments/{id}
    this.teams = [];         // team names, in the order of the API
    this.online = new Set(); // player keys
    this.clicks = [];        // [{team, name, surname}], the latest click of each player
    this.listeners = new Set();
    this.reloading = null;
    this.fixtures = null;    // GET …/fixtures, once drawn
    this.standings = null;   // GET …/standings, once drawn
    this.nightReading = null;
    this.nightStale = false;
    this.nightRetry = null;  // a timer reading the night again after a failed read
    this.newest = 0;         // the highest version the live stream has announced
    this.applied = 0;        // live events applied to the view, counted
  }

  get version() { return this.view ? this.view.version : 0; }
  get players() { return this.view ? this.view.players : []; }
  get draw() { return this.view && this.view.draw && this.view.draw.length ? this.view.draw : null; }
  get seatsLeft() { return this.view ? Math.max(0, this.view.playerLimit - this.players.length) : 0; }
  /** The night's fixtures once scheduled, else null. */
  get night() { return this.fixtures && this.fixtures.scheduled ? this.fixtures : null; }
  get everyonePicked() {
    return this.view !== null && this.seatsLeft === 0 && this.players.every((p) => p.selectedTeam);
  }

  /** Who holds each selected team: team name → player. */
  takenBy() {
    const taken = new Map();
    for (const p of this.players) if (p.selectedTeam) taken.set(p.selectedTeam, p);
    return taken;
  }

  /** The latest clicks of players still choosing (a pick ends a player's browsing). */
  browsing() {
    const picked = new Set(this.players.filter((p) => p.selectedTeam).map(playerKey));
    return this.draw ? [] : this.clicks.filter((c) => !picked.has(playerKey(c)));
  }

  /** Who is looking at each team right now, without `exceptKey` (the viewer). */
  clicksByTeam(exceptKey = null) {
    const byTeam = new Map();
    for (const c of this.browsing()) {
      if (playerKey(c) === exceptKey) continue;
      if (!byTeam.has(c.team)) byTeam.set(c.team, []);
      byTeam.get(c.team).push(c);
    }
    return byTeam;
  }

  /** The team `player` is looking at, if still choosing. */
  clickOf(player) {
    const click = this.browsing().find((c) => playerKey(c) === playerKey(player));
    return click ? click.team : null;
  }

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  changed() {
    for (const listener of this.listeners) listener(this);
  }

  /** Reads the whole view, the teams and who is online. */
  async load() {
    const [view, teams, presence] = await Promise.all([
      api.tournament(this.id), api.teams(this.id), this.readPresence(),
    ]);
    this.view = view;
    this.teams = teams.map((t) => t.name);
    if (presence) this.online = new Set(presence.players.map(playerKey));
    if (this.draw) await this.readNight();
    this.changed();
  }

  /**
   * Reads the fixtures and the table. A call while a read runs makes that read go round once
   * more, so the last event seen is always followed by a read that started after it.
   */
  readNight() {
    if (this.nightReading) {
      this.nightStale = true;
      return this.nightReading;
    }
    this.nightReading = (async () => {
      do {
        this.nightStale = false;
        const [fixtures, standings] = await Promise.all([api.fixtures(this.id), api.standings(this.id)]);
        if (!this.fixtures || fixtures.version >= this.fixtures.version) this.fixtures = fixtures;
        if (!this.standings || standings.version >= this.standings.version) this.standings = standings;
        this.changed();
      } while (this.nightStale);
    })().catch((err) => {
      // Nothing else would read the night again before its next event: try again shortly.
      if (!this.nightRetry) {
        this.nightRetry = setTimeout(() => {
          this.nightRetry = null;
          this.readNight().catch(() => {});
        }, NIGHT_RETRY_MS);
      }
      throw err;
    }).finally(() => { this.nightReading = null; });
    return this.nightReading;
  }

  /** Who is online, or null: not knowing it (say, while the presence store is down) is no reason to fail. */
  readPresence() {
    return api.presence(this.id).catch(() => null);
  }

  /**
   * Reads the view again (one read at a time), after a gap or a reconnect. A read that answers
   * older than an event the stream has already announced is made again (a few times at most;
   * the next event's gap starts another), so an event that arrived while the view was being
   * read is not lost.
   */
  reload() {
    if (!this.reloading) {
      this.reloading = (async () => {
        for (let round = 0; round < 3; round += 1) {
          const applied = this.applied;
          const [view, presence] = await Promise.all([api.tournament(this.id), this.readPresence()]);
          // Older than an event applied while it was on its way, it would undo that event for
          // a moment (a taken team shown free); older than a view no event changed meanwhile,
          // it is the server's word (its data was restored from a backup).
          if (!this.view || view.version >= this.version || this.applied === applied) this.view = view;
          if (presence) this.online = new Set(presence.players.map(playerKey));
          this.changed();
          if (view.version >= this.newest) break;
        }
        if (this.draw) await this.readNight();
      })().finally(() => { this.reloading = null; });
    }
    return this.reloading;
  }

  /**
   * The server's history ends before what the page shows (its store was restored from a
   * backup): nothing past the server's version happened as far as it knows now. The page
   * forgets the night it read and reads everything again.
   */
  rewind() {
    this.fixtures = null;
    this.standings = null;
    return this.reload();
  }

  /** Applies a live message; returns a promise when it had to read the view again. */
  apply(message) {
    switch (message.type) {
      case 'TeamClicked':
        this.clicks = message.clickedTeams || [];
        this.changed();
        return null;
      case 'Subscribed':
        // The server says the stream is live from this version; replayed events came first.
        this.newest = message.version;
        if (message.version < this.version) return this.rewind();
        return message.version > this.version ? this.reload() : null;
      case 'Presence':
        this.online = new Set((message.players || []).map(playerKey));
        this.changed();
        return null;
      default:
        return this.applyEvent(message);
    }
  }

  applyEvent(message) {
    if (!this.view || typeof message.version !== 'number') return null;
    this.newest = Math.max(this.newest, message.version);
    if (message.version <= this.version) return null; // already seen
    if (message.version !== this.version + 1) return this.reload();
    const event = message.event || {};
    const view = this.view;
    const find = (e) => view.players.find((p) => playerKey(p) === playerKey(e));
    switch (message.type) {
      case 'TournamentCreated':
        break;
      case 'TournamentRenamed':
        view.name = event.name;
        break;
      case 'PlayerJoined':
        if (!find(event)) {
          view.players.push({ id: null, name: event.name, surname: event.surname, selectedTeam: null, drawnTeam: null });
        }
        break;
      case 'TeamSelected': {
        const player = find(event);
        if (!player) return this.reload();
        player.selectedTeam = event.team;
        break;
      }
      case 'TeamsDrawn':
        view.draw = (event.assignments || []).map((a) => ({ ...a, playerId: find(a)?.id ?? null }));
        for (const a of view.draw) {
          const player = find(a);
          if (player) player.drawnTeam = a.team;
        }
        break;
      case 'FixturesScheduled':
      case 'ResultRecorded':
      case 'ResultCorrected':
      case 'NightFinished':
        view.version = message.version;
        this.applied += 1;
        this.changed();
        return this.readNight();
      default:
        // A kind of event this page does not know: read the view rather than guess.
        return this.reload();
    }
    view.version = message.version;
    this.applied += 1;
    this.changed();
    return null;
  }
}

/** Waits before the next attempt to read the tournament: 1 s, doubling, at most 15 s. */
const wait = (attempt) => new Promise((resolve) => setTimeout(resolve, Math.min(15_000, 1000 * 2 ** attempt)));

/**
 * Reads the tournament, then follows it live: messages update `model`, and after a reconnect
 * the view is read again (presence and clicks are not replayed). `token()` returns the player
 * token that makes this device count as that player being online, or null. A first read that
 * fails for want of the server (a restart, a network down) is made again until it works, the
 * page saying it is reconnecting; one the server refuses (the tournament does not exist)
 * rejects. A live socket refused twice in a row has the view read again: a token the server no
 * longer knows (its data restored from a backup) shows as this device not being a player.
 */
export async function follow(model, { token = () => null, onStatus, onError }) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      await model.load();
      break;
    } catch (err) {
      if (err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429) throw err;
      onStatus('offline');
      await wait(attempt);
    }
  }
  return connectLive({
    tournamentId: model.id,
    token,
    version: () => model.version,
    onMessage: (message) => {
      const reading = model.apply(message);
      if (reading) reading.catch(onError);
    },
    onStatus: (status, { reconnected }) => {
      onStatus(status);
      if (reconnected) model.reload().catch(onError);
    },
    // A probe: while the server is down it fails too, which says nothing new.
    onRefused: (failures) => { if (failures >= 2) model.reload().catch(() => {}); },
  });
}
