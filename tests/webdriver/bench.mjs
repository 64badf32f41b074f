// Benchmarks of the real app (figures for docs/benchmarks.md, "The app"; not pass/fail tests):
//   1. start to first paint of the RELEASE app (process start → the page's first contentful
//      paint, from the shell's `startup: process started` log and the page's Paint Timing);
//   2. idle RSS with 10,000 conversations / 200,000 cached messages (app process and the WebKit
//      processes it starts), seeded through airtext-client's cache API (examples/seed_cache.rs);
//   3. opening a 50,000-message thread (the oldest conversation, reached through search): click
//      on the hit → first message bubble in the DOM, measured in the page; the `messages` and
//      `conversations` IPC commands alone; the search itself.
// Run under a display, a session bus and an unlocked keyring (as tests/webdriver/run.mjs):
//   xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- node tests/webdriver/bench.mjs
// Needs the release app (cargo build --release -p airtext-app --features tauri/custom-protocol)
// and the seeder (cargo build --release -p airtext-app --example seed_cache).

import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { remote } from 'webdriverio';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
const targetDir = process.env.CARGO_TARGET_DIR ?? path.join(repoRoot, 'target');
const appBin = process.env.AIRTEXT_APP_BIN ?? path.join(targetDir, 'release/airtext-app');
const seeder = path.join(targetDir, 'release/examples/seed_cache');
const tauriDriver = process.env.TAURI_DRIVER ?? path.join(os.homedir(), '.cargo/bin/tauri-driver');
const runs = Number(process.env.RUNS ?? 5);
for (const p of [appBin, seeder, tauriDriver]) {
  if (!existsSync(p)) {
    console.error(`missing ${p}`);
    process.exit(2);
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const tmp = mkdtempSync(path.join(os.tmpdir(), 'airtext-bench-'));

function startDriver(dataDir) {
  const child = spawn(tauriDriver, [], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, so stopping it stops its WebKitWebDriver too
    env: { ...process.env, AIRTEXT_DATA_DIR: dataDir, AIRTEXT_GATEWAY: 'http://127.0.0.1:1', AIRTEXT_LOG: 'info', NO_COLOR: '1' },
  });
  child.log = '';
  child.stdout.on('data', (d) => (child.log += d));
  child.stderr.on('data', (d) => (child.log += d));
  return child;
}
function stopDriver(child) {
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {
    // already gone
  }
}
async function waitDriver() {
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch('http://127.0.0.1:4444/status')).status < 500) return;
    } catch {
      // not yet
    }
    await sleep(100);
  }
  throw new Error('tauri-driver did not start');
}
async function open() {
  return remote({
    hostname: '127.0.0.1',
    port: 4444,
    logLevel: 'error',
    connectionRetryCount: 0,
    connectionRetryTimeout: 30_000,
    capabilities: { 'tauri:options': { application: appBin }, 'wdio:enforceWebDriverClassic': true },
  });
}
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
/** RSS (kB) of the newest airtext-app process and of every process under it (WebKit's). */
function rssTree() {
  const procs = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
  const info = new Map();
  for (const pid of procs) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      const anon = Number(/RssAnon:\s+(\d+)/.exec(status)?.[1] ?? 0);
      let pss = 0;
      try {
        pss = Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
      } catch {
        // not readable
      }
      info.set(pid, { comm, ppid, rss, anon, pss });
    } catch {
      // gone
    }
  }
  const apps = [...info.entries()].filter(([, v]) => v.comm === 'airtext-app').map(([pid]) => pid);
  const app = Math.max(...apps);
  const tree = [app];
  for (let i = 0; i < tree.length; i++) {
    for (const [pid, v] of info) if (v.ppid === tree[i]) tree.push(pid);
  }
  return tree.map((pid) => ({ pid, ...info.get(pid) }));
}

const results = {};
// The machine is shared: the load average goes with every figure (1, 5, 15 minutes).
const load = () => os.loadavg().map((x) => Math.round(x * 100) / 100);
results.load_at_start = load();
// AIRTEXT_GPU (on, off, auto) reaches the app through tauri-driver's environment.
results.airtext_gpu = process.env.AIRTEXT_GPU ?? 'auto (unset)';
console.log('load average at start:', results.load_at_start, '; AIRTEXT_GPU:', results.airtext_gpu);
try {
  // ——— 1. start to first paint (a fresh data directory: the onboarding screen) ———
  // (a) the binary started directly: the shell logs when the page finished loading, measured
  //     from its own process start; (b) through WebDriver: the session request (which starts
  //     the process) to the page's first contentful paint (Paint Timing, wall clock).
  {
    const loads = [];
    const spawnToLoad = [];
    for (let i = 0; i < runs; i++) {
      const dir = path.join(tmp, `direct-${i}`);
      const t0 = Date.now();
      const child = spawn(appBin, [], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, AIRTEXT_DATA_DIR: dir, AIRTEXT_GATEWAY: 'http://127.0.0.1:1', AIRTEXT_LOG: 'info', NO_COLOR: '1' },
      });
      let log = '';
      const loaded = await new Promise((resolve) => {
        const on = (d) => {
          log += d;
          const m = /startup: page loaded ms=(\d+)/.exec(log);
          if (m) resolve(Number(m[1]));
        };
        child.stdout.on('data', on);
        child.stderr.on('data', on);
        setTimeout(() => resolve(null), 30_000);
      });
      spawnToLoad.push(Date.now() - t0);
      if (loaded != null) loads.push(loaded);
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      await sleep(300);
    }
    results.page_loaded_ms = { median: median(loads), all: loads, spawn_to_log_median: median(spawnToLoad) };
    console.log('process start → page loaded (ms):', results.page_loaded_ms);

    const dir = path.join(tmp, 'fresh');
    const driver = startDriver(dir);
    await waitDriver();
    const paints = [];
    for (let i = 0; i < runs; i++) {
      const t0 = Date.now();
      const app = await open();
      await (await app.$('[data-testid="username"], [data-testid="gateway"]')).waitForDisplayed({ timeout: 20_000 });
      const t = await app.execute(() => {
        const fcp = performance.getEntriesByType('paint').find((e) => e.name === 'first-contentful-paint');
        return { origin: performance.timeOrigin, fcp: fcp ? fcp.startTime : null };
      });
      if (t.fcp != null) paints.push(t.origin + t.fcp - t0);
      await app.deleteSession();
      await sleep(500);
    }
    stopDriver(driver);
    results.first_paint_ms = { median: median(paints), all: paints.map(Math.round) };
    console.log('WebDriver session request → first contentful paint (ms):', results.first_paint_ms);
  }

  // ——— 2 and 3: a seeded cache ———
  const seeded = path.join(tmp, 'seeded');
  console.log(execFileSync(seeder, [seeded, 'http://127.0.0.1:1'], { encoding: 'utf8' }).trim());
  const driver = startDriver(seeded);
  await waitDriver();
  const app = await open();
  const t0 = Date.now();
  await (await app.$('[data-testid="conversation-list"]')).waitForDisplayed({ timeout: 60_000 });
  await (await app.$('[data-testid="conversation"]')).waitForDisplayed({ timeout: 60_000 });
  results.list_shown_ms = Date.now() - t0;
  await sleep(2_000);
  results.list_rows_in_dom = await app.execute(() => document.querySelectorAll('[data-testid="conversation"]').length);
  console.log('conversation list shown (ms):', results.list_shown_ms, '; rows in the DOM:', results.list_rows_in_dom);
  await sleep(15_000);
  const tree = rssTree();
  const main = tree[0];
  results.idle_rss_mb = {
    app: Math.round(main.rss / 1024),
    // RSS counts every shared library page the process touched (WebKitGTK, Mesa's llvmpipe
    // under Xvfb); PSS shares them out, RssAnon is the process's own heap and stacks.
    app_pss: Math.round(main.pss / 1024),
    app_anon: Math.round(main.anon / 1024),
    total_with_webkit: Math.round(tree.reduce((a, p) => a + p.rss, 0) / 1024),
    // name:RSS/PSS/anonymous, in MB
    processes: tree.map((p) => `${p.comm}:${Math.round(p.rss / 1024)}/${Math.round(p.pss / 1024)}/${Math.round(p.anon / 1024)}`),
  };
  results.idle_rss_mb.load = load();
  console.log('idle RSS (MB), 10,000 conversations / 200,000 messages:', results.idle_rss_mb);

  const opens = [];
  const ipc = [];
  const searches = [];
  const convIpc = [];
  for (let i = 0; i < runs; i++) {
    // IPC alone: the newest page of the 50,000-message thread.
    ipc.push(
      await app.execute(async () => {
        const t = performance.now();
        await window.__TAURI_INTERNALS__.invoke('messages', { peer: '+12065550000', before: null, limit: 50 });
        return performance.now() - t;
      }),
    );
    // One page of the conversation list (the first 50 of 10,000).
    convIpc.push(
      await app.execute(async () => {
        const t = performance.now();
        await window.__TAURI_INTERNALS__.invoke('conversations', { before: null, limit: 50 });
        return performance.now() - t;
      }),
    );
    // Leave the thread (open another one), then time opening the big one. It is the oldest of
    // the 10,000 conversations, so far down the paged list: reach it through search (the
    // local cache), as a user would, and time the click on the hit.
    const r = await app.execute(async () => {
      const wait = (f, ms = 20_000) =>
        new Promise((resolve) => {
          const t0 = performance.now();
          const tick = () => {
            const v = f();
            if (v || performance.now() - t0 > ms) resolve(v ?? null);
            else requestAnimationFrame(tick);
          };
          tick();
        });
      const other = [...document.querySelectorAll('[data-testid="conversation"]')].find((c) => !c.textContent.includes('555-0000'));
      if (!other) return { open: -1, search: -1 };
      other.click();
      await new Promise((r) => setTimeout(r, 400));
      const input = document.querySelector('#search');
      const s0 = performance.now();
      input.value = '2065550000';
      input.dispatchEvent(new Event('input', { bubbles: true }));
      const hit = await wait(() =>
        [...document.querySelectorAll('[aria-label="Search results"] button.item')].find((b) => b.textContent.includes('555-0000')),
      );
      // includes the search box's 150 ms debounce
      const search = performance.now() - s0;
      if (!hit) return { open: -3, search };
      await new Promise((r) => setTimeout(r, 200));
      const t = performance.now();
      hit.click();
      const open = await new Promise((resolve) => {
        const done = () => {
          const m = document.querySelector('[data-testid="message"]');
          if (m && m.textContent.includes('thread 0')) {
            resolve(performance.now() - t);
            return true;
          }
          return false;
        };
        if (done()) return;
        const obs = new MutationObserver(() => {
          if (done()) obs.disconnect();
        });
        obs.observe(document.body, { childList: true, subtree: true, characterData: true });
        setTimeout(() => resolve(-2), 10_000);
      });
      return { open, search };
    });
    const ms = r.open;
    searches.push(r.search);
    opens.push(ms);
  }
  results.open_thread_ms = { median: median(opens), all: opens.map(Math.round) };
  results.messages_ipc_ms = { median: median(ipc), all: ipc.map((x) => Math.round(x * 10) / 10) };
  results.conversations_ipc_ms = { median: median(convIpc), all: convIpc.map((x) => Math.round(x * 10) / 10) };
  results.search_to_hit_ms = { median: median(searches), all: searches.map(Math.round) };
  console.log('open the 50,000-message thread, click → first bubble (ms):', results.open_thread_ms);
  console.log('`messages` IPC, newest 50 of 50,000 (ms):', results.messages_ipc_ms);
  console.log('`conversations` IPC, first 50 of 10,000 (ms):', results.conversations_ipc_ms);
  console.log('search the cache for the peer → hit shown, incl. 150 ms debounce (ms):', results.search_to_hit_ms);
  await app.saveScreenshot(path.join(repoRoot, 'docs/screenshots/app-bench-50k-thread.png'));
  await app.deleteSession();
  stopDriver(driver);
  results.load_at_end = load();
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
console.log(JSON.stringify(results));
