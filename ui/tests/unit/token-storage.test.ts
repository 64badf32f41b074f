import { flushSync, mount, tick, unmount, type Component } from 'svelte';
import { afterEach, describe, expect, it } from 'vitest';
import { AppState } from '../../src/lib/app.svelte';
import type { Backend, Settings, TokenStorage as Storage } from '../../src/lib/backend/types';
import { DEFAULT_SETTINGS } from '../../src/lib/backend/web';
import TokenNotice from '../../src/lib/components/settings/TokenNotice.svelte';
import TokenStorage from '../../src/lib/components/settings/TokenStorage.svelte';
import { Drafts } from '../../src/lib/drafts';

let mounted: ReturnType<typeof mount>[] = [];
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function render(component: Component<any, any, any>, props: Record<string, unknown>): HTMLElement {
  const target = document.createElement('div');
  document.body.appendChild(target);
  mounted.push(mount(component, { target, props }));
  flushSync();
  return target;
}
afterEach(() => {
  for (const m of mounted) unmount(m);
  mounted = [];
  document.body.innerHTML = '';
});

/** A shell that reports `storage` as where the sign-in is kept. */
function appWith(storage: Storage | null): AppState {
  const backend = {
    capabilities: { proxy: true, modem: true, notifications: true, background: true, kind: 'tauri' },
    subscribe: () => () => {},
    tokenStorage: async () => storage,
  } as unknown as Backend;
  const data = new Map<string, string>();
  return new AppState(backend, new Drafts({ getItem: (k) => data.get(k) ?? null, setItem: (k, v) => void data.set(k, v) }));
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await tick();
  flushSync();
}

const memory: Storage = { place: 'memory', keyring_problem: 'no D-Bus session', file: '/data/token' };

describe('the sign-in storage in Settings', () => {
  it('says the keyring is unavailable, why, and offers the private file', async () => {
    const settings: Settings = { ...DEFAULT_SETTINGS };
    const el = render(TokenStorage, { app: appWith(memory), settings });
    await settle();
    const notice = el.querySelector('[data-testid="keyring-notice"]')!;
    expect(notice.textContent).toContain('keyring is not available');
    expect(notice.textContent).toContain('sign in again after Airtext quits');
    expect(notice.textContent).toContain('no D-Bus session');
    expect(el.querySelector('[data-testid="token-in-file"]')).not.toBeNull();
  });

  it('names the file when the sign-in is kept there', async () => {
    const el = render(TokenStorage, { app: appWith({ ...memory, place: 'file' }), settings: { ...DEFAULT_SETTINGS, token_in_file: true } });
    await settle();
    expect(el.querySelector('[data-testid="keyring-notice"]')!.textContent).toContain('/data/token');
  });

  it('shows no notice while the keyring holds it, and nothing where there is no choice (web)', async () => {
    const keyring = render(TokenStorage, { app: appWith({ place: 'keyring', keyring_problem: null, file: '/data/token' }), settings: { ...DEFAULT_SETTINGS } });
    const web = render(TokenStorage, { app: appWith(null), settings: { ...DEFAULT_SETTINGS } });
    await settle();
    expect(keyring.querySelector('[data-testid="keyring-notice"]')).toBeNull();
    expect(keyring.textContent).toContain('kept in the system keyring');
    expect(web.querySelector('[data-testid="token-storage"]')).toBeNull();
  });
});

describe('the notice after sign-in', () => {
  it('appears once when the sign-in is not in the keyring, and goes with OK', async () => {
    const app = appWith(memory);
    const el = render(TokenNotice, { app });
    expect(el.querySelector('[data-testid="token-notice"]')).toBeNull();
    await app.noticeTokenStorage();
    flushSync();
    expect(el.querySelector('[data-testid="token-notice"]')!.textContent).toContain('not kept in the system keyring');
    (el.querySelector('[data-testid="token-notice-ok"]') as HTMLButtonElement).click();
    flushSync();
    expect(el.querySelector('[data-testid="token-notice"]')).toBeNull();
  });

  it('does not appear when the keyring holds the sign-in', async () => {
    const app = appWith({ place: 'keyring', keyring_problem: null, file: '/data/token' });
    const el = render(TokenNotice, { app });
    await app.noticeTokenStorage();
    flushSync();
    expect(el.querySelector('[data-testid="token-notice"]')).toBeNull();
  });
});
