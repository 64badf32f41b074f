// End-to-end tests of the REAL Airtext app: the built Tauri binary (UI embedded) driven through
// tauri-driver + WebKitWebDriver, against a real gateway binary on a free port with a temporary
// SQLite database, a second device (the `airtext` CLI) and the gateway's simulated outside
// phones. Desktop notifications are asserted on D-Bus (dbus-monitor), closing the window keeping
// the app running and notifying (the close sent as a window manager does, wm-close.py), the
// sign-in surviving a restart through the OS keyring (gnome-keyring's Secret Service).
//
// Run it under a display and a session bus, with an unlocked keyring (scripts/test.sh does):
//   xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- node tests/webdriver/run.mjs
// Binaries: AIRTEXT_APP_BIN, AIRTEXT_GATEWAY_BIN, AIRTEXT_CLI_BIN (default: $CARGO_TARGET_DIR/debug/…),
// TAURI_DRIVER (default: tauri-driver on PATH or ~/.cargo/bin). Screenshots go to
// docs/screenshots/app-*.png (AIRTEXT_SCREENSHOTS=0 to skip). Prints "N passed, N failed" and
// exits non-zero on any failure.

import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { remote } from 'webdriverio';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
const targetDir = process.env.CARGO_TARGET_DIR ?? path.join(repoRoot, 'target');
const appBin = process.env.AIRTEXT_APP_BIN ?? path.join(targetDir, 'debug/airtext-app');
const gatewayBin = process.env.AIRTEXT_GATEWAY_BIN ?? path.join(targetDir, 'debug/airtext-gateway');
const cliBin = process.env.AIRTEXT_CLI_BIN ?? path.join(targetDir, 'debug/airtext');
const shotsDir = path.join(repoRoot, 'docs/screenshots');
const wmClose = path.join(here, 'wm-close.py');
const takeShots = process.env.AIRTEXT_SCREENSHOTS !== '0';

function which(name) {
  for (const dir of (process.env.PATH ?? '').split(':').concat(path.join(os.homedir(), '.cargo/bin'), '/root/.cargo/bin')) {
    const p = path.join(dir, name);
    if (dir && existsSync(p)) return p;
  }
  return null;
}
const tauriDriver = process.env.TAURI_DRIVER ?? which('tauri-driver');

// ——— preconditions: fail fast with what to fix, never hang ———
const missing = [];
if (!process.env.DISPLAY) missing.push('an X display (run under xvfb-run -a)');
if (!process.env.DBUS_SESSION_BUS_ADDRESS) missing.push('a session bus (run under dbus-run-session --)');
for (const [what, p] of [['app', appBin], ['gateway', gatewayBin], ['CLI', cliBin]]) {
  if (!existsSync(p)) missing.push(`the ${what} binary at ${p}`);
}
if (!tauriDriver) missing.push('tauri-driver (cargo install tauri-driver --locked --version ^2)');
if (!which('WebKitWebDriver')) missing.push('WebKitWebDriver (apt-get install webkit2gtk-driver)');
if (missing.length) {
  console.error(`cannot run the app end-to-end tests; missing:\n  - ${missing.join('\n  - ')}`);
  process.exit(2);
}

// ——— tiny harness ———
let passed = 0;
let failed = 0;
const cleanups = [];
async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}\n     ${String(e?.stack ?? e).split('\n').slice(0, 8).join('\n     ')}`);
    try {
      const file = path.join(os.tmpdir(), `airtext-e2e-failed-${passed + failed}.png`);
      execFileSync('/usr/bin/import', ['-window', 'root', file]);
      console.log(`     (screen at the failure: ${file})`);
    } catch {
      // no screen to show
    }
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, fn, timeoutMs = 15_000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(150);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ''}`);
}
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}
function start(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  child.log = '';
  child.stdout.on('data', (d) => (child.log += d));
  child.stderr.on('data', (d) => (child.log += d));
  cleanups.push(() => {
    if (child.exitCode === null) child.kill('SIGTERM');
  });
  return child;
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'airtext-app-e2e-'));
cleanups.push(() => rmSync(tmp, { recursive: true, force: true }));
const appData = path.join(tmp, 'app');
const cliData = path.join(tmp, 'cli');

// ——— the gateway ———
const gwPort = await freePort();
const gwUrl = `http://127.0.0.1:${gwPort}`;
const gw = start(gatewayBin, ['--listen', `127.0.0.1:${gwPort}`, '--database-url', `sqlite://${tmp}/gateway.db`, '--simulator', 'true'], {
  env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn', NO_COLOR: '1' },
});

async function api(method, p, body, token) {
  const r = await fetch(gwUrl + p, {
    method,
    headers: {
      ...(body ? { 'content-type': 'application/json' } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${p} → ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
function cli(...args) {
  return execFileSync(cliBin, ['--gateway', gwUrl, '--data-dir', cliData, ...args], {
    env: { ...process.env, AIRTEXT_PASSWORD: password, NO_COLOR: '1' },
    encoding: 'utf8',
    timeout: 30_000,
  });
}

// ——— notifications on the session bus ———
const monitor = start('dbus-monitor', ['--session', "interface='org.freedesktop.Notifications',member='Notify'"]);

// ——— tauri-driver (fixed ports 4444/4445: never two suites at once) ———
const driver = start(tauriDriver, [], {
  env: { ...process.env, AIRTEXT_DATA_DIR: appData, AIRTEXT_GATEWAY: gwUrl, AIRTEXT_LOG: 'info' },
  detached: true, // its own process group: stopping it also stops the WebKitWebDriver it starts
});
cleanups.push(() => {
  try {
    process.kill(-driver.pid, 'SIGTERM');
  } catch {
    // already gone
  }
});

async function cleanup() {
  for (const c of cleanups.reverse()) {
    try {
      await c();
    } catch {
      // best effort
    }
  }
}

async function openApp() {
  const browser = await remote({
    hostname: '127.0.0.1',
    port: 4444,
    logLevel: 'error',
    connectionRetryCount: 0,
    connectionRetryTimeout: 30_000,
    capabilities: { 'tauri:options': { application: appBin }, 'wdio:enforceWebDriverClassic': true },
  });
  return browser;
}

const suffix = Date.now().toString(36).slice(-5);
const alice = `alice_${suffix}`;
const password = 'correct horse battery';
const outsidePhone = '+12065550123';
let aliceNumber = null;
let observer = null; // a token of another account, for the simulator endpoints
let app = null;

const $id = (id) => app.$(`[data-testid="${id}"]`);
async function shot(name) {
  if (!takeShots) return;
  await sleep(300);
  await app.saveScreenshot(path.join(shotsDir, `app-${name}.png`));
}
/** The whole X screen (window + notification popups), scaled down to stay small. */
function screenShot(name) {
  if (!takeShots) return;
  execFileSync('/usr/bin/import', ['-window', 'root', '-resize', '75%', path.join(shotsDir, `app-${name}.png`)]);
}
async function messageWith(text) {
  const all = await app.$$('[data-testid="message"]');
  for (const m of all) {
    if ((await m.getText()).includes(text)) return m;
  }
  return null;
}
/** The text of every element with this test id (in the page: WebDriver's getText skips some). */
async function textOf(id) {
  return app.execute((sel) => [...document.querySelectorAll(sel)].map((e) => e.textContent).join('\n'), `[data-testid="${id}"]`);
}
async function conversationWith(text) {
  const all = await app.$$('[data-testid="conversation"]');
  for (const c of all) {
    if ((await app.execute((e) => e.textContent, c)).includes(text)) return c;
  }
  return null;
}
async function clickButton(text) {
  const button = await until(`a "${text}" button`, async () => {
    for (const b of await app.$$('button')) {
      if ((await b.getText()).trim() === text) return b;
    }
    return null;
  });
  await button.click();
}
async function setValue(id, value) {
  const el = await $id(id);
  await el.waitForDisplayed({ timeout: 15_000 });
  await el.clearValue();
  await el.setValue(value);
}

try {
  if (takeShots) mkdirSync(shotsDir, { recursive: true });
  await until('the gateway', async () => (await fetch(`${gwUrl}/healthz`)).ok, 20_000);
  await until('tauri-driver', async () => {
    try {
      return (await fetch('http://127.0.0.1:4444/status')).status < 500;
    } catch {
      return false;
    }
  }, 20_000);
  await api('POST', '/v1/accounts', { username: `obs_${suffix}`, password, email: null });
  observer = (await api('POST', '/v1/sessions', { username: `obs_${suffix}`, password, device_name: 'observer', has_cellular: false })).token;

  app = await openApp();

  await step('onboarding: the gateway from AIRTEXT_GATEWAY is pre-filled and accepted', async () => {
    // The suggested gateway counts as chosen: onboarding opens at the account step, and
    // "Change gateway" shows it filled in.
    await (await $id('username')).waitForDisplayed({ timeout: 20_000 });
    await shot('1-onboarding');
    await clickButton('Change gateway');
    const gateway = await $id('gateway');
    await gateway.waitForDisplayed({ timeout: 10_000 });
    await until('pre-filled gateway', async () => (await gateway.getValue()).replace(/\/$/, '') === gwUrl);
    await clickButton('Continue');
    await (await $id('username')).waitForDisplayed({ timeout: 15_000 });
  });

  await step('sign up, then pick a number', async () => {
    await setValue('username', alice);
    await setValue('password', password);
    await (await $id('account-submit')).click();
    const numbers = await $id('numbers');
    await numbers.waitForDisplayed({ timeout: 20_000 });
    const first = await numbers.$('button');
    await first.waitForDisplayed();
    await shot('2-pick-number');
    await first.click();
    await (await $id('claimed-number')).waitForDisplayed({ timeout: 15_000 });
    const me = await until('the number at the gateway', async () => {
      const token = (await api('POST', '/v1/sessions', { username: alice, password, device_name: 'probe', has_cellular: false })).token;
      const m = await api('GET', '/v1/me', null, token);
      return m.number ? m : null;
    });
    aliceNumber = me.number;
    await (await $id('finish')).click();
    await (await $id('conversation-list')).waitForDisplayed({ timeout: 15_000 });
    await until('online', async () => (await (await $id('connection')).getAttribute('data-state')) === 'online');
  });

  const firstText = 'Hello from the Airtext app';
  await step('send to a simulated outside phone: it reaches the simulator outbox', async () => {
    await (await $id('new-conversation')).click();
    await setValue('new-to', outsidePhone);
    await (await $id('new-start')).click();
    await until('thread title', async () => (await textOf('thread-title')).includes('555-0123'));
    await setValue('composer', firstText);
    await app.keys(['Enter']);
    await until('bubble', () => messageWith(firstText));
    // The outbox shows each account only its own texts: read it as alice.
    const own = (await api('POST', '/v1/sessions', { username: alice, password, device_name: 'outbox', has_cellular: false })).token;
    const out = await until('the outside phone receiving it', async () => {
      const r = await api('GET', `/v1/simulator/outbox?to=${encodeURIComponent(outsidePhone)}`, null, own);
      return r.messages.find((m) => m.body === firstText);
    });
    assert(out.from === aliceNumber, `sent from alice's number (${out.from} vs ${aliceNumber})`);
    await until('sent or delivered tick', async () => ['sent', 'delivered'].includes(await (await messageWith(firstText)).getAttribute('data-status')), 20_000);
    await shot('3-sent');
  });

  const reply = 'Got it, thanks! See you at 6';
  await step('a reply while the window is unfocused raises a desktop notification (D-Bus Notify); clicking it opens the thread', async () => {
    // Leave the thread, so that opening it from the notification shows.
    await (await $id('new-conversation')).click();
    await until('the thread closed', async () => !(await textOf('thread-title')).includes('555-0123'));
    // Take the focus away from the app: minimise it (Focused(false) reaches the shell).
    try {
      await app.minimizeWindow();
    } catch {
      // WebKitWebDriver may not minimise without a window manager: the window was never
      // focused then (Xvfb has no WM), which is the same condition.
    }
    const before = monitor.log.length;
    await api('POST', '/v1/simulator/inbound', { from: outsidePhone, to: aliceNumber, body: reply }, observer);
    const call = await until('a Notify call on the session bus', async () => {
      const seen = monitor.log.slice(before);
      return seen.includes('member=Notify') && seen.includes(reply) ? seen : null;
    }, 20_000);
    assert(call.includes('"Airtext"'), 'the app name is Airtext');
    assert(call.includes(outsidePhone), 'the sender is the title');
    await sleep(700);
    screenShot('4-notification');
    // Click it (dunst's default action): the shell brings the window back and emits
    // airtext://open-thread, and the UI opens that thread.
    execFileSync('dunstctl', ['action', '0']);
    await until('the thread opened from the notification', async () => (await textOf('thread-title')).includes('555-0123'));
    await until('the reply in the thread', () => messageWith(reply));
  });

  const whileClosed = 'Are you still there? (sent while the window was closed)';
  await step('closing the window keeps the app running (said once); a text arriving while closed raises a notification that opens the thread', async () => {
    await (await $id('new-conversation')).click();
    await until('the thread closed', async () => !(await textOf('thread-title')).includes('555-0123'));
    const before = monitor.log.length;
    // The close button as a window manager sends it (Xvfb has none): WM_DELETE_WINDOW.
    execFileSync('python3', [wmClose, 'Airtext']);
    await until('the window hidden', () => execFileSync('python3', [wmClose, '--count-viewable', 'Airtext'], { encoding: 'utf8' }).trim() === '0');
    await until('the "still running" notice', () => monitor.log.slice(before).includes('Airtext is still running'));
    assert((await app.execute(() => 1 + 1)) === 2, 'the app still runs');
    execFileSync('dunstctl', ['close-all']);
    const sent = monitor.log.length;
    await api('POST', '/v1/simulator/inbound', { from: outsidePhone, to: aliceNumber, body: whileClosed }, observer);
    await until('a Notify call for the text', () => monitor.log.slice(sent).includes(whileClosed), 20_000);
    await sleep(700);
    screenShot('4b-closed-notification');
    execFileSync('dunstctl', ['action', '0']);
    await until('the window shown again', () => execFileSync('python3', [wmClose, '--count-viewable', 'Airtext'], { encoding: 'utf8' }).trim() === '1');
    await until('the thread opened from the notification', async () => (await textOf('thread-title')).includes('555-0123'));
    await until('the text in the thread', () => messageWith(whileClosed));
  });

  await step("switch the contact's path to cloud (a synced contact setting)", async () => {
    const sw = await $id('path-switch');
    await sw.waitForDisplayed();
    const labels = await sw.$$('label');
    let clicked = false;
    for (const l of labels) {
      if ((await l.getText()).trim() === 'Cloud') {
        await l.click();
        clicked = true;
        break;
      }
    }
    assert(clicked, 'a Cloud option in the path switch');
    await until('contact saved at the gateway', async () => {
      const token = (await api('POST', '/v1/sessions', { username: alice, password, device_name: 'probe', has_cellular: false })).token;
      const r = await api('GET', '/v1/contacts', null, token);
      return r.contacts.find((c) => c.address === outsidePhone && c.path === 'cloud');
    });
    await until('switch shows cloud', async () => (await sw.$('input[value=cloud]')).isSelected());
    await shot('5-path-cloud');
  });

  const fromCli = 'Sent from my other device (the CLI)';
  await step('a text sent from a second device (the airtext CLI) appears live', async () => {
    cli('login', alice, '--device-name', 'Laptop CLI');
    cli('send', outsidePhone, fromCli);
    await until('the CLI text in the thread', () => messageWith(fromCli), 20_000);
    await shot('6-second-device');
  });

  await step('restart the app: still signed in (token in the OS keyring), thread intact', async () => {
    await app.deleteSession();
    app = null;
    await sleep(1000);
    app = await openApp();
    await (await $id('conversation-list')).waitForDisplayed({ timeout: 20_000 });
    const onboarding = await $id('gateway');
    assert(!(await onboarding.isExisting()), 'no onboarding after a restart');
    await until('the conversation', async () => (await textOf('conversation')).includes('555-0123'));
    const conv = await until('the conversation element', () => conversationWith('555-0123'));
    await conv.click();
    await until('the old messages', async () => (await messageWith(firstText)) && (await messageWith(reply)));
    await shot('7-restarted');
  });
} catch (e) {
  failed++;
  console.log(`FAIL setup\n     ${String(e?.stack ?? e).split('\n').slice(0, 8).join('\n     ')}`);
} finally {
  if (failed) {
    console.log(`--- gateway log (tail) ---\n${gw.log.slice(-3000)}`);
    console.log(`--- tauri-driver / app log (tail) ---\n${driver.log.slice(-5000)}`);
  }
  try {
    if (app) await app.deleteSession();
  } catch {
    // already gone
  }
  await cleanup();
}
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
