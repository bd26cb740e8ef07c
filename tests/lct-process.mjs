// Starting and stopping a real `lct` for the JavaScript suites (tests/js and tests/browser);
// node built-ins only, so both packages import it as it is.

import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The `lct` binary: `LCT_BIN`, or target/debug/lct of the workspace, as an absolute path. */
export const LCT_BIN = path.resolve(here, process.env.LCT_BIN ?? '../target/debug/lct');

/** Rejects `promise` with a message naming `what` when it does not settle within `ms`. */
export function deadline(promise, ms, what) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/**
 * Starts `lct` on `listen` (default an ephemeral port) with `dataDir`, and resolves once its
 * `listening` log line names the bound address.
 */
export function startServer({ dataDir, listen = '127.0.0.1:0' } = {}) {
  const child = spawn(LCT_BIN, [], {
    env: { ...process.env, LCT_LISTEN: listen, LCT_DATA_DIR: dataDir, LCT_LOG: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const server = { child, dataDir, logs: [], stderr: '', exited: null };
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
    server.port = Number(addr.slice(addr.lastIndexOf(':') + 1));
    server.baseUrl = `http://${addr}`;
    return server;
  }, async (error) => {
    child.kill('SIGKILL');
    await server.exited;
    throw error;
  });
}

/** Sends SIGTERM and waits for the process to exit. */
export async function stopServer(server) {
  if (!server) return undefined;
  if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGTERM');
  return deadline(server.exited, 30_000, 'lct to exit after SIGTERM');
}

