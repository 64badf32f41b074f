// Screenshots of the real app's conversation list and a thread over a seeded cache, at phone
// width (360 px) and desktop width, light and dark (docs/screenshots/app-list-{light,dark}-{360,1280}.png,
// app-thread-…). Not a test: for looking at the layout after changes to the list.
// Needs the release app and seeder (as tests/webdriver/bench.mjs), under a display, a session
// bus and an unlocked keyring:
//   xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- node tests/webdriver/screens.mjs
// Dark mode: the app follows GTK's preference (GTK_THEME=Adwaita:dark for the app process).

import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { remote } from 'webdriverio';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
const targetDir = process.env.CARGO_TARGET_DIR ?? path.join(repoRoot, 'target');
const appBin = process.env.AIRTEXT_APP_BIN ?? path.join(targetDir, 'release/airtext-app');
const seeder = process.env.AIRTEXT_SEEDER ?? path.join(targetDir, 'release/examples/seed_cache');
const tauriDriver = process.env.TAURI_DRIVER ?? path.join(os.homedir(), '.cargo/bin/tauri-driver');
const shots = process.env.AIRTEXT_SHOTS_DIR ?? path.join(repoRoot, 'docs/screenshots');
for (const p of [appBin, seeder, tauriDriver]) {
  if (!existsSync(p)) {
    console.error(`missing ${p}`);
    process.exit(2);
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const tmp = mkdtempSync(path.join(os.tmpdir(), 'airtext-screens-'));

async function session(dataDir, dark) {
  const env = { ...process.env, AIRTEXT_DATA_DIR: dataDir, AIRTEXT_GATEWAY: 'http://127.0.0.1:1', NO_COLOR: '1' };
  if (dark) env.GTK_THEME = 'Adwaita:dark';
  else delete env.GTK_THEME;
  const driver = spawn(tauriDriver, [], { stdio: 'ignore', detached: true, env });
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch('http://127.0.0.1:4444/status')).status < 500) break;
    } catch {
      // not yet
    }
    await sleep(100);
  }
  const app = await remote({
    hostname: '127.0.0.1',
    port: 4444,
    logLevel: 'error',
    connectionRetryCount: 0,
    connectionRetryTimeout: 30_000,
    capabilities: { 'tauri:options': { application: appBin }, 'wdio:enforceWebDriverClassic': true },
  });
  return {
    app,
    async close() {
      await app.deleteSession().catch(() => {});
      try {
        process.kill(-driver.pid, 'SIGTERM');
      } catch {
        // gone
      }
      await sleep(500);
    },
  };
}

try {
  const dir = path.join(tmp, 'seeded');
  // 120 conversations, 6,000 messages, the thread with +12065550000 holding 1,000.
  console.log(execFileSync(seeder, [dir, 'http://127.0.0.1:1', '120', '6000', '1000'], { encoding: 'utf8' }).trim());
  for (const dark of [false, true]) {
    const scheme = dark ? 'dark' : 'light';
    const { app, close } = await session(dir, dark);
    try {
      for (const [width, height, size] of [
        [1280, 800, 'desktop'],
        [360, 760, 'phone'],
      ]) {
        await app.setWindowSize(width, height);
        await sleep(800);
        // The list (on a phone: the list alone; close any open thread first).
        const back = await app.$('button[aria-label="Back to conversations"]');
        if (size === 'phone' && (await back.isExisting())) await back.click();
        await (await app.$('[data-testid="conversation"]')).waitForDisplayed({ timeout: 30_000 });
        await sleep(600);
        const open = await app.execute(() => matchMedia('(prefers-color-scheme: dark)').matches);
        if (open !== dark) console.warn(`warning: prefers-color-scheme dark=${open}, wanted ${dark}`);
        await app.saveScreenshot(path.join(shots, `app-list-${scheme}-${width}.png`));
        // A thread: the second conversation in the list.
        const convs = await app.$$('[data-testid="conversation"]');
        await convs[1].click();
        await (await app.$('[data-testid="message"]')).waitForDisplayed({ timeout: 30_000 });
        await sleep(800);
        await app.saveScreenshot(path.join(shots, `app-thread-${scheme}-${width}.png`));
        console.log(`shot ${size} ${scheme}`);
      }
    } finally {
      await close();
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
