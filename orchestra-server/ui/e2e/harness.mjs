// Test harness for the console's end-to-end tests: the real orchestra-server
// binary on a free loopback port, and the system Chromium driven by
// playwright-core with a fresh profile. Nothing is downloaded.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '../../..');
/**
 * Where the tests save screenshots: target/ui-screenshots, or the folder in
 * ORCHESTRA_UI_SCREENSHOTS (`ORCHESTRA_UI_SCREENSHOTS=docs/console
 * scripts/test-ui` refreshes the ones in the docs).
 */
export const screenshotsDir = process.env.ORCHESTRA_UI_SCREENSHOTS
  ? resolve(repoRoot, process.env.ORCHESTRA_UI_SCREENSHOTS)
  : join(process.env.CARGO_TARGET_DIR ?? join(repoRoot, 'target'), 'ui-screenshots');

const serverBin =
  process.env.ORCHESTRA_SERVER_BIN ??
  join(process.env.CARGO_TARGET_DIR ?? join(repoRoot, 'target'), 'debug', 'orchestra-server');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** How long a UI expectation may take before the test fails. */
export const TIMEOUT = 15_000;

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** A port nothing listens on (for an agent that is down). */
export const closedPort = freePort;

/**
 * Starts orchestra-server with this TOML config; resolves once /health
 * answers. `stop()` ends it.
 */
export async function startServer(configToml = '', env = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'orchestra-ui-'));
  const config = join(dir, 'config.toml');
  writeFileSync(config, configToml);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(serverBin, ['--config', config, '--bind', `127.0.0.1:${port}`], {
    env: { ...process.env, RUST_LOG: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  const exited = new Promise((ok) => child.once('exit', (code) => ok(code)));
  const deadline = Date.now() + 30_000;
  for (;;) {
    const early = await Promise.race([exited, new Promise((ok) => setTimeout(() => ok(undefined), 50))]);
    if (early !== undefined) throw new Error(`orchestra-server exited (${early}) at start:\n${log}`);
    try {
      const r = await fetch(`${base}/health`);
      if (r.status === 200 || r.status === 503) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`orchestra-server did not answer /health in 30 s:\n${log}`);
    }
  }
  return {
    base,
    url: (path) => `${base}${path}`,
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Chromium with a fresh profile, laptop-sized. `close()` ends it. */
export async function launchBrowser() {
  const profile = mkdtempSync(join(tmpdir(), 'orchestra-ui-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1440, height: 900 },
    deviceScaleFactor: 1,
  });
  context.setDefaultTimeout(TIMEOUT);
  const errors = [];
  context.on('weberror', (e) => errors.push(String(e.error())));
  return {
    context,
    /** Uncaught page errors seen so far. */
    errors,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
