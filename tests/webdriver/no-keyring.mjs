// End-to-end test of the REAL Airtext app on a desktop with no OS keyring: no D-Bus session at
// all (DBUS_SESSION_BUS_ADDRESS unset, no dbus-run-session), so no Secret Service. The app must
// start, sign up and in, say once that the sign-in is not in the keyring, keep it in memory (a
// restart signs out), and, when Settings says so, keep it in a private 0600 file that survives
// a restart.
//
// Run it under a display only (scripts/test.sh does):
//   env -u DBUS_SESSION_BUS_ADDRESS xvfb-run -a -s "-screen 0 1280x800x24" node tests/webdriver/no-keyring.mjs
// Binaries as in run.mjs (AIRTEXT_APP_BIN, AIRTEXT_GATEWAY_BIN, TAURI_DRIVER). tauri-driver
// listens on free ports, so this can run beside another suite. Screenshots of the Settings
// notice at 1280 and 360 px go to docs/screenshots/app-no-keyring-*.png when
// AIRTEXT_SCREENSHOTS=1. Prints "N passed, N failed" and exits non-zero on any failure.

import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
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
const shotsDir = path.join(repoRoot, 'docs/screenshots');
const takeShots = process.env.AIRTEXT_SCREENSHOTS === '1';

function which(name) {
  for (const dir of (process.env.PATH ?? '').split(':').concat(path.join(os.homedir(), '.cargo/bin'), '/root/.cargo/bin')) {
    const p = path.join(dir, name);
    if (dir && existsSync(p)) return p;
  }
  return null;
}
const tauriDriver = process.env.TAURI_DRIVER ?? which('tauri-driver');

const missing = [];
if (!process.env.DISPLAY) missing.push('an X display (run under xvfb-run -a)');
if (process.env.DBUS_SESSION_BUS_ADDRESS) missing.push('NO session bus: run with DBUS_SESSION_BUS_ADDRESS unset (env -u DBUS_SESSION_BUS_ADDRESS)');
for (const [what, p] of [['app', appBin], ['gateway', gatewayBin]]) {
  if (!existsSync(p)) missing.push(`the ${what} binary at ${p}`);
}
if (!tauriDriver) missing.push('tauri-driver (cargo install tauri-driver --locked --version ^2)');
if (!which('WebKitWebDriver')) missing.push('WebKitWebDriver (apt-get install webkit2gtk-driver)');
if (missing.length) {
  console.error(`cannot run the no-keyring end-to-end test; missing:\n  - ${missing.join('\n  - ')}`);
  process.exit(2);
}

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
      const file = path.join(os.tmpdir(), `airtext-no-keyring-failed-${passed + failed}.png`);
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

const tmp = mkdtempSync(path.join(os.tmpdir(), 'airtext-no-keyring-e2e-'));
cleanups.push(() => rmSync(tmp, { recursive: true, force: true }));
const appData = path.join(tmp, 'app');
const tokenFile = path.join(appData, 'token');

const gwPort = await freePort();
const gwUrl = `http://127.0.0.1:${gwPort}`;
const gw = start(gatewayBin, ['--listen', `127.0.0.1:${gwPort}`, '--database-url', `sqlite://${tmp}/gateway.db`, '--simulator', 'true'], {
  env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn', NO_COLOR: '1' },
});

const driverPort = await freePort();
const nativePort = await freePort();
const appEnv = { ...process.env, AIRTEXT_DATA_DIR: appData, AIRTEXT_GATEWAY: gwUrl, AIRTEXT_LOG: 'info', HOME: path.join(tmp, 'home') };
delete appEnv.DBUS_SESSION_BUS_ADDRESS;
mkdirSync(appEnv.HOME, { recursive: true });
const driver = start(tauriDriver, ['--port', String(driverPort), '--native-port', String(nativePort)], {
  env: appEnv,
  detached: true, // its own process group: stopping it also stops the WebKitWebDriver it starts
});
cleanups.push(() => {
  try {
    process.kill(-driver.pid, 'SIGTERM');
  } catch {
    // already gone
  }
});

let app = null;
async function openApp() {
  app = await remote({
    hostname: '127.0.0.1',
    port: driverPort,
    logLevel: 'error',
    connectionRetryCount: 0,
    connectionRetryTimeout: 30_000,
    capabilities: { 'tauri:options': { application: appBin }, 'wdio:enforceWebDriverClassic': true },
  });
}
async function restartApp() {
  await app.deleteSession();
  app = null;
  await sleep(1000);
  await openApp();
}
const $id = (id) => app.$(`[data-testid="${id}"]`);
async function setValue(id, value) {
  const el = await $id(id);
  await el.waitForDisplayed({ timeout: 15_000 });
  await el.clearValue();
  await el.setValue(value);
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
/** Onboarding's number and phone steps, skipped (each button waits for the step's work). */
async function skipToTheApp() {
  await until('skip the number', async () => {
    const skip = await $id('skip-number');
    if (!(await skip.isExisting()) || !(await skip.isEnabled())) return false;
    await skip.click();
    return true;
  });
  await until('the app after onboarding', async () => {
    if (await (await $id('conversation-list')).isDisplayed()) return true;
    const finish = await $id('finish');
    if ((await finish.isExisting()) && (await finish.isEnabled())) await finish.click();
    return false;
  }, 20_000);
}
async function openSettings() {
  await (await $id('open-settings')).click();
  const storage = await $id('token-storage');
  await storage.waitForDisplayed({ timeout: 15_000 });
  return storage;
}
/** The whole X screen with the window resized to `width` (WebDriver screenshots skip the frame). */
async function settingsShot(width) {
  if (!takeShots) return;
  await app.setWindowSize(width, 760);
  await sleep(800);
  await app.saveScreenshot(path.join(shotsDir, `app-no-keyring-settings-${width}.png`));
}

const suffix = Date.now().toString(36).slice(-5);
const user = `nokey_${suffix}`;
const password = 'correct horse battery';

try {
  if (takeShots) mkdirSync(shotsDir, { recursive: true });
  await until('the gateway', async () => (await fetch(`${gwUrl}/healthz`)).ok, 20_000);
  await until('tauri-driver', async () => {
    try {
      return (await fetch(`http://127.0.0.1:${driverPort}/status`)).status < 500;
    } catch {
      return false;
    }
  }, 20_000);

  await step('with no D-Bus session the app starts (onboarding shows)', async () => {
    await openApp();
    await (await $id('username')).waitForDisplayed({ timeout: 20_000 });
  });

  await step('sign up and in: a notice says once that the sign-in is not in the keyring', async () => {
    await setValue('username', user);
    await setValue('password', password);
    await (await $id('account-submit')).click();
    const notice = await $id('token-notice');
    await notice.waitForDisplayed({ timeout: 20_000 });
    assert((await notice.getAttribute('data-place')) === 'memory', 'kept in memory by default');
    assert((await notice.getText()).includes('not kept in the system keyring'), 'the notice says why');
    await (await $id('token-notice-ok')).click();
    await notice.waitForDisplayed({ reverse: true, timeout: 5_000 });
    await skipToTheApp();
    await until('online', async () => (await (await $id('connection')).getAttribute('data-state')) === 'online');
    assert(!existsSync(tokenFile), 'no token file unless chosen');
  });

  await step('Settings say the keyring is not available and that the sign-in lives in memory', async () => {
    const storage = await openSettings();
    assert((await storage.getAttribute('data-place')) === 'memory', 'place memory');
    const text = await (await $id('keyring-notice')).getText();
    assert(text.includes('keyring is not available'), `notice text: ${text}`);
    assert(text.includes('sign in again after Airtext quits'), `memory wording: ${text}`);
    await settingsShot(1280);
    await settingsShot(360);
    await app.setWindowSize(1024, 720);
  });

  await step('in memory only: a restart signs out', async () => {
    await restartApp();
    await (await $id('username')).waitForDisplayed({ timeout: 20_000 });
  });

  await step('sign in again, choose the private file: it is 0600 and survives a restart', async () => {
    await (await $id('mode-signin')).click();
    await setValue('username', user);
    await setValue('password', password);
    await (await $id('account-submit')).click();
    await (await $id('token-notice')).waitForDisplayed({ timeout: 20_000 });
    await (await $id('token-notice-ok')).click();
    // No number on this account: onboarding offers one again.
    await skipToTheApp();
    await openSettings();
    const box = await $id('token-in-file');
    if (!(await box.isSelected())) await box.click();
    await clickButton('Save settings');
    await until('the token file', () => existsSync(tokenFile));
    const mode = statSync(tokenFile).mode & 0o777;
    assert(mode === 0o600, `token file mode ${mode.toString(8)}`);
    await until('Settings show the file', async () => (await (await $id('token-storage')).getAttribute('data-place')) === 'file');
    await restartApp();
    await (await $id('conversation-list')).waitForDisplayed({ timeout: 20_000 });
    assert(!(await (await $id('username')).isExisting()), 'no onboarding after a restart');
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
  for (const c of cleanups.reverse()) {
    try {
      await c();
    } catch {
      // best effort
    }
  }
}
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
