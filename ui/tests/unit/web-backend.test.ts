import { beforeEach, describe, expect, it } from 'vitest';
import type { Message } from '../../src/lib/bindings/Message';
import type { BackendEvent } from '../../src/lib/backend/types';
import { WebBackend, normaliseGatewayUrl } from '../../src/lib/backend/web';
import { AppState } from '../../src/lib/app.svelte';

type Handler = (method: string, path: string, body: unknown) => { status: number; body?: unknown } | Promise<{ status: number; body?: unknown }>;

function fakeFetch(handler: Handler): { fetch: typeof fetch; calls: { method: string; path: string; body: unknown }[] } {
  const calls: { method: string; path: string; body: unknown }[] = [];
  const f = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = new URL(String(input));
    const method = init?.method ?? 'GET';
    const body = init?.body ? JSON.parse(String(init.body)) : undefined;
    calls.push({ method, path: url.pathname + url.search, body });
    const r = await handler(method, url.pathname + url.search, body);
    return new Response(r.body === undefined ? null : JSON.stringify(r.body), { status: r.status });
  }) as typeof fetch;
  return { fetch: f, calls };
}

function serverMessage(over: Partial<Message>): Message {
  return {
    id: 'm1',
    conversation_id: 'c1',
    direction: 'outbound',
    from: '+14155550100',
    to: '+12065550123',
    body: 'hello',
    status: 'queued',
    route: 'carrier',
    client_id: null,
    encoding: 'gsm7',
    segments: 1,
    failure_reason: null,
    created_at: '2025-01-01T00:00:00Z',
    updated_at: '2025-01-01T00:00:00Z',
    ...over,
  };
}

async function signedIn(handler: Handler) {
  const me = { account_id: 'a', username: 'alice', email: null, number: '+14155550100', identities: [], devices: [] };
  const fake = fakeFetch((method, path, body) => {
    if (path === '/healthz') return { status: 200, body: { status: 'ok' } };
    if (method === 'POST' && path === '/v1/sessions') return { status: 201, body: { token: 't', device_id: 'd', account_id: 'a' } };
    if (path === '/v1/me') return { status: 200, body: me };
    if (path === '/v1/contacts') return { status: 200, body: { contacts: [] } };
    return handler(method, path, body);
  });
  const backend = new WebBackend({ fetch: fake.fetch, WebSocket: undefined as never });
  await backend.setGatewayUrl('127.0.0.1:9');
  await backend.signIn({ username: 'alice', password: 'pw', device_name: 'test' });
  const events: BackendEvent[] = [];
  backend.subscribe((e) => events.push(e));
  return { backend, events, calls: fake.calls };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

beforeEach(() => {
  sessionStorage.clear();
  localStorage.clear();
});

describe('WebBackend', () => {
  it('normalises the gateway address', () => {
    expect(normaliseGatewayUrl('127.0.0.1:8080/')).toBe('http://127.0.0.1:8080');
    expect(normaliseGatewayUrl(' https://sms.example.org ')).toBe('https://sms.example.org');
  });

  it('keeps the token across reloads (one device per browser) and errors as {code, message}', async () => {
    const { backend } = await signedIn(() => ({ status: 409, body: { code: 'number_taken', message: 'taken' } }));
    expect(localStorage.getItem('airtext.token')).toBe('t');
    await expect(backend.claimNumber('+14155550100')).rejects.toMatchObject({ code: 'number_taken', message: 'taken', status: 409 });
    // A reload: a new backend in the same browser is signed in with the same token.
    const reloaded = fakeFetch((_method, path) =>
      path === '/v1/me'
        ? { status: 200, body: { account_id: 'a', username: 'alice', email: null, number: null, identities: [], devices: [] } }
        : { status: 404, body: { code: 'not_found', message: 'no' } },
    );
    const again = new WebBackend({ fetch: reloaded.fetch, WebSocket: undefined as never });
    expect(await again.restore()).toMatchObject({ username: 'alice' });
    expect(reloaded.calls[0]).toMatchObject({ method: 'GET', path: '/v1/me' });
    await again.signOut();
    expect(localStorage.getItem('airtext.token')).toBeNull();
  });

  it('changes the password, resets it by code, and deletes the account', async () => {
    const { backend, calls } = await signedIn((method, path, body) => {
      if (method === 'POST' && path === '/v1/accounts/me/password') {
        const b = body as { current_password: string };
        return b.current_password === 'pw'
          ? { status: 204 }
          : { status: 401, body: { code: 'bad_credentials', message: 'the password is wrong' } };
      }
      if (method === 'POST' && path.startsWith('/v1/password-resets')) return { status: path.endsWith('confirm') ? 204 : 202, body: path.endsWith('confirm') ? undefined : {} };
      if (method === 'DELETE' && path === '/v1/accounts/me') return { status: 204 };
      return { status: 404, body: { code: 'not_found', message: 'no' } };
    });
    await expect(backend.changePassword('wrong', 'a new passphrase')).rejects.toMatchObject({ code: 'bad_credentials' });
    await backend.changePassword('pw', 'a new passphrase');
    expect(calls.filter((c) => c.path === '/v1/accounts/me/password').at(-1)?.body).toEqual({
      current_password: 'pw',
      new_password: 'a new passphrase',
      sign_out_other_devices: true,
    });
    await backend.requestPasswordReset(' @alice ');
    await backend.confirmPasswordReset('alice', ' 123456 ', 'another passphrase');
    expect(calls.filter((c) => c.path.startsWith('/v1/password-resets')).map((c) => c.body)).toEqual([
      { username: 'alice' },
      { username: 'alice', code: '123456', new_password: 'another passphrase' },
    ]);
    await backend.deleteAccount('pw');
    expect(calls.at(-1)).toMatchObject({ method: 'DELETE', path: '/v1/accounts/me', body: { password: 'pw' } });
    expect(localStorage.getItem('airtext.token')).toBeNull();
    expect(await backend.restore()).toBeNull();
  });

  it('searches message bodies on the gateway, and in the cache when offline', async () => {
    let online = true;
    const { backend, calls } = await signedIn((method, path) => {
      if (method === 'GET' && path.startsWith('/v1/search?')) {
        if (!online) throw new TypeError('network down');
        return {
          status: 200,
          body: {
            messages: [serverMessage({ id: 'old', conversation_id: 'c9', direction: 'inbound', from: '+12065550999', to: '+14155550100', body: 'lunch on Friday?' })],
            more: false,
          },
        };
      }
      return { status: 404, body: { code: 'not_found', message: 'no' } };
    });
    const hits = await backend.search('Lunch fri');
    expect(calls.at(-1)?.path).toBe('/v1/search?q=Lunch+fri&limit=50');
    expect(hits).toHaveLength(1);
    expect(hits[0]).toMatchObject({
      conversation: { id: 'c9', peer: '+12065550999' },
      message: { id: 'old', body: 'lunch on Friday?' },
    });
    // Offline: what this tab has seen.
    online = false;
    expect((await backend.search('friday')).map((h) => h.message?.id)).toEqual(['old']);
  });

  it('shows a browser notification for a new inbound text only while the tab is hidden', async () => {
    const shown: { title: string; body: string }[] = [];
    class FakeNotification {
      static permission = 'granted';
      onclick: (() => void) | null = null;
      constructor(title: string, options: { body: string }) {
        shown.push({ title, body: options.body });
      }
      close(): void {}
    }
    const saved = (globalThis as { Notification?: unknown }).Notification;
    (globalThis as { Notification?: unknown }).Notification = FakeNotification;
    let hidden = false;
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
    try {
      const { backend, events } = await signedIn(() => ({ status: 404, body: { code: 'not_found', message: 'no' } }));
      const inbound = (id: string, body: string) =>
        backend.apply({
          seq: 1,
          at: 'x',
          type: 'message.created',
          message: serverMessage({ id, direction: 'inbound', from: '+12065550123', to: '+14155550100', body, status: 'delivered' }),
        });
      inbound('m1', 'seen in the open tab');
      expect(shown).toEqual([]);
      hidden = true;
      inbound('m2', 'while away');
      inbound('m2', 'while away');
      expect(shown).toEqual([{ title: 'Airtext: +12065550123', body: 'while away' }]);
      await backend.saveSettings({ ...(await backend.settings()), hide_text: true });
      inbound('m3', 'private');
      expect(shown.at(-1)).toEqual({ title: 'Airtext: +12065550123', body: 'New message' });
      await backend.saveSettings({ ...(await backend.settings()), notifications: false });
      inbound('m4', 'quiet');
      expect(shown).toHaveLength(2);
      expect(events.some((e) => e.type === 'message_added')).toBe(true);
    } finally {
      (globalThis as { Notification?: unknown }).Notification = saved;
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => false });
    }
  });

  it('send returns the queued message at once, then merges the server copy by client_id', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { backend, events } = await signedIn(async (method, path, body) => {
      if (method === 'POST' && path === '/v1/messages') {
        await gate;
        const b = body as { client_id: string };
        return { status: 201, body: serverMessage({ client_id: b.client_id, status: 'sent' }) };
      }
      return { status: 404, body: { code: 'not_found', message: 'no' } };
    });
    const m = await backend.send('+12065550123', 'hello');
    expect(m.status).toBe('queued');
    expect(m.id).toBeNull();
    release();
    await tick();
    await tick();
    const updated = events.filter((e) => e.type === 'message_updated').at(-1);
    expect(updated).toMatchObject({ message: { key: m.key, id: 'm1', status: 'sent' } });
    // A late, backward report changes nothing; a forward one does.
    backend.apply({ seq: 1, at: 'x', type: 'message.status', message_id: 'm1', conversation_id: 'c1', status: 'sending', updated_at: 'x' });
    backend.apply({ seq: 2, at: 'x', type: 'message.status', message_id: 'm1', conversation_id: 'c1', status: 'delivered', updated_at: 'x' });
    backend.apply({ seq: 3, at: 'x', type: 'message.status', message_id: 'm1', conversation_id: 'c1', status: 'sent', updated_at: 'x' });
    const statuses = events.filter((e) => e.type === 'message_updated').map((e) => (e.type === 'message_updated' ? e.message.status : null));
    expect(statuses).toEqual(['sent', 'delivered']);
  });

  it('a refused send is failed with the gateway message; a network error leaves it queued', async () => {
    let mode: 'refuse' | 'down' = 'refuse';
    const { backend, events } = await signedIn((method, path) => {
      if (method === 'POST' && path === '/v1/messages') {
        if (mode === 'refuse') return { status: 404, body: { code: 'unknown_recipient', message: 'Nobody is @ghost.' } };
        throw new TypeError('network down');
      }
      return { status: 404, body: { code: 'not_found', message: 'no' } };
    });
    const m = await backend.send('@ghost', 'boo');
    await tick();
    await tick();
    expect(events.filter((e) => e.type === 'message_updated').at(-1)).toMatchObject({
      message: { key: m.key, status: 'failed', failure_reason: 'Nobody is @ghost.' },
    });
    mode = 'down';
    const q = await backend.send('+12065550123', 'later');
    await tick();
    await tick();
    const last = events.filter((e) => (e.type === 'message_updated' || e.type === 'message_added') && e.message.key === q.key);
    expect(last.every((e) => (e.type === 'message_added' || e.type === 'message_updated') && e.message.status === 'queued')).toBe(true);
    expect(events.some((e) => e.type === 'connection_changed' && e.state === 'offline')).toBe(true);
  });

  it("the gateway's emergency_number refusal fails the text and asks for an alert in its words", async () => {
    const refusal = { code: 'emergency_number', message: '911 is an emergency number, and Airtext cannot reach emergency services: call or text them from a phone' };
    const { backend, events } = await signedIn((method, path, body) => {
      if (method === 'POST' && path === '/v1/messages') {
        if ((body as { to: string }).to === '911') return { status: 400, body: refusal };
        return { status: 404, body: { code: 'unknown_recipient', message: 'Nobody is @ghost.' } };
      }
      return { status: 404, body: { code: 'not_found', message: 'no' } };
    });
    const m = await backend.send('911', 'help');
    await tick();
    await tick();
    expect(events.filter((e) => e.type === 'message_updated').at(-1)).toMatchObject({
      message: { key: m.key, status: 'failed', failure_reason: refusal.message },
    });
    const refused = events.find((e) => e.type === 'send_refused');
    expect(refused).toMatchObject({ peer: '911', error: { code: 'emergency_number', message: refusal.message } });
    // Nothing else asks for that alert.
    await backend.send('@ghost', 'boo');
    await tick();
    await tick();
    expect(events.filter((e) => e.type === 'send_refused')).toHaveLength(1);
  });

  it('the app refuses a text to an emergency number before sending, and shows the gateway refusal until dismissed or another thread opens', async () => {
    const { backend, calls } = await signedIn((method, path) => {
      if (method === 'POST' && path === '/v1/messages') return { status: 400, body: { code: 'emergency_number', message: 'from the gateway' } };
      return { status: 404, body: { code: 'not_found', message: 'no' } };
    });
    const app = new AppState(backend);
    backend.subscribe((e) => app.onEvent(e));
    await app.open('9-1-1');
    expect(app.refusal).toEqual({ peer: '9-1-1', message: expect.stringContaining('9-1-1 is an emergency number') });
    app.dismissRefusal();
    expect(app.refusal).toBeNull();
    expect(await app.send('9-1-1', 'help')).toBeNull();
    expect(app.refusal?.peer).toBe('9-1-1');
    expect(calls.some((c) => c.method === 'POST' && c.path === '/v1/messages')).toBe(false);
    // The gateway is the authority: its refusal of a send the UI let through is shown in its words.
    await app.open('+12065550123');
    expect(app.refusal).toBeNull();
    await backend.send('+12065550123', 'hi');
    await tick();
    await tick();
    expect(app.refusal).toEqual({ peer: '+12065550123', message: 'from the gateway' });
    await app.open('+13125550144');
    expect(app.refusal).toBeNull();
  });

  it('applies sync events idempotently and counts unread once', async () => {
    const { backend, events } = await signedIn(() => ({ status: 404, body: { code: 'not_found', message: 'no' } }));
    const inbound = serverMessage({ id: 'in1', direction: 'inbound', from: '+12065550123', to: '+14155550100', status: 'delivered' });
    backend.apply({ seq: 1, at: 'x', type: 'message.created', message: inbound });
    backend.apply({ seq: 1, at: 'x', type: 'message.created', message: inbound });
    const convs = events.filter((e) => e.type === 'conversation_changed');
    expect(convs.at(-1)).toMatchObject({ conversation: { peer: '+12065550123', unread: 1 } });
    expect(events.filter((e) => e.type === 'message_added')).toHaveLength(1);
    backend.apply({ seq: 2, at: 'x', type: 'conversation.read', conversation_id: 'c1', up_to: 'in1', unread: 0 });
    expect(events.filter((e) => e.type === 'conversation_changed').at(-1)).toMatchObject({ conversation: { unread: 0 } });
    backend.apply({ seq: 3, at: 'x', type: 'message.deleted', message_id: 'in1', conversation_id: 'c1' });
    expect(events.at(-1)).toMatchObject({ type: 'message_deleted', id: 'in1' });
  });

  it('plan asks the gateway, and says "unavailable" (null) rather than guess', async () => {
    const plan = { encoding: 'gsm7', segments: 1, chars_left: 158, parts: ['hi'], ucs2_characters: [] };
    const { backend } = await signedIn((method, path) => (method === 'POST' && path === '/v1/messages/plan' ? { status: 200, body: plan } : { status: 404 }));
    expect(await backend.plan('hi')).toEqual(plan);
    const { backend: old } = await signedIn(() => ({ status: 404, body: { code: 'not_found', message: 'no such endpoint' } }));
    expect(await old.plan('hi')).toBeNull();
  });
});
