// WebBackend: the UI straight against a gateway's API v1 (fetch + the `/v1/stream` WebSocket),
// for the web portal and the browser tests. An in-memory cache stands in for airtext-client's
// SQLite cache: it is filled from REST pages and kept current by the sync log
// (`/v1/sync` pulled whenever `/v1/stream` hints that the log moved).
//
// Decisions (web only; the Tauri shell does these in airtext-client):
// - the device token, the gateway address and settings live in localStorage: one device per
//   browser, not one per tab, and a reload stays signed in; signing out in one tab signs out
//   every tab (the \`storage\` event);
// - an inbound text that arrives while the tab is hidden shows a browser notification (when
//   the setting is on and the browser allows it); clicking it opens the thread;
// - a new web session does not replay the whole log: it takes the stream's first hint as its
//   cursor and loads the conversation list over REST; events after that are applied on top
//   (applying an event twice changes nothing);
// - a message is shown at once as `queued` and posted with its `client_id`; network errors and
//   5xx/429 leave it queued and it is re-posted when the gateway answers again (same
//   `client_id`, so never twice); a 4xx marks it failed with the gateway's message;
// - the web has no modem: every text goes through the cloud.

import type { ChangePassword } from '../bindings/ChangePassword';
import type { ClaimedNumber } from '../bindings/ClaimedNumber';
import type { ConfirmPasswordReset } from '../bindings/ConfirmPasswordReset';
import type { DeleteAccount } from '../bindings/DeleteAccount';
import type { RequestPasswordReset } from '../bindings/RequestPasswordReset';
import type { SearchPage } from '../bindings/SearchPage';
import type { Contact } from '../bindings/Contact';
import type { ConversationPage } from '../bindings/ConversationPage';
import type { Conversation } from '../bindings/Conversation';
import type { DeviceId } from '../bindings/DeviceId';
import type { IdentityKind } from '../bindings/IdentityKind';
import type { IdentityPending } from '../bindings/IdentityPending';
import type { IdentityVerified } from '../bindings/IdentityVerified';
import type { Lookup } from '../bindings/Lookup';
import type { Me } from '../bindings/Me';
import type { Message } from '../bindings/Message';
import type { MessagePage } from '../bindings/MessagePage';
import type { PathChoice } from '../bindings/PathChoice';
import type { Session } from '../bindings/Session';
import type { SyncEvent } from '../bindings/SyncEvent';
import type { SyncPage } from '../bindings/SyncPage';
import type { TextPlan } from '../bindings/TextPlan';
import type { AvailableNumbers } from '../bindings/AvailableNumbers';
import { compareConversations } from '../conversations';
import { reduce } from '../status';
import { uuid } from '../uuid';
import {
  BackendError,
  isTransient,
  isErrorBody,
  type Backend,
  type BackendEvent,
  type Capabilities,
  type ChatConversation,
  type ChatMessage,
  type ConnectionState,
  type ContactInput,
  type ImportResult,
  type PathDecision,
  type SearchHit,
  type Settings,
  type SignInInput,
  type SignUpInput,
  type TokenStorage,
} from './types';

const TOKEN_KEY = 'airtext.token';
const GATEWAY_KEY = 'airtext.gateway';
const SETTINGS_KEY = 'airtext.settings';
const LOOKUP_TTL_MS = 6 * 60 * 60 * 1000;
const SYNC_PAGE = 200;

export const DEFAULT_SETTINGS: Settings = {
  proxy_url: '',
  modem_port: '',
  notifications: true,
  hide_text: false,
  token_in_file: false,
  close_to_tray: true,
  autostart: false,
};

function storage(kind: 'local' | 'session'): Storage | null {
  try {
    return kind === 'local' ? globalThis.localStorage : globalThis.sessionStorage;
  } catch {
    return null;
  }
}

/** `http://host:port` without a trailing slash; adds `http://` when no scheme was typed. */
export function normaliseGatewayUrl(input: string): string {
  let url = input.trim();
  if (!/^https?:\/\//i.test(url)) url = `http://${url}`;
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.host}${parsed.pathname.replace(/\/+$/, '')}`;
}

export function peerOf(m: Pick<Message, 'direction' | 'from' | 'to'>): string {
  return m.direction === 'outbound' ? m.to : m.from;
}

export interface WebBackendOptions {
  fetch?: typeof fetch;
  WebSocket?: typeof WebSocket;
  /** Used when no address was saved (the web portal's own origin). */
  defaultGateway?: string | null;
}

export class WebBackend implements Backend {
  readonly capabilities: Capabilities = {
    proxy: false,
    modem: false,
    notifications: typeof Notification !== 'undefined',
    background: false,
    kind: 'web',
  };

  private readonly fetchFn: typeof fetch;
  private readonly WS: typeof WebSocket | undefined;
  private base: string | null;
  private token: string | null;
  private meCache: Me | null = null;
  private listeners = new Set<(e: BackendEvent) => void>();

  private convs = new Map<string, ChatConversation>();
  private convIdToPeer = new Map<string, string>();
  private byKey = new Map<string, ChatMessage>();
  private idToKey = new Map<string, string>();
  private clientToKey = new Map<string, string>();
  private contactMap = new Map<string, Contact>();
  private contactsLoaded = false;
  private lookups = new Map<string, { at: number; value: Lookup }>();
  private outbox: string[] = [];
  private flushing = false;
  private planUnavailable = false;

  private ws: WebSocket | null = null;
  private wsGeneration = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private backoffMs = 1000;
  private cursor: number | null = null;
  private hinted = 0;
  private pulling = false;
  private applied = 0;
  private state: ConnectionState = 'offline';
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(options: WebBackendOptions = {}) {
    this.fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.WS = options.WebSocket ?? globalThis.WebSocket;
    this.base = storage('local')?.getItem(GATEWAY_KEY) ?? options.defaultGateway ?? null;
    this.token = storage('local')?.getItem(TOKEN_KEY) ?? storage('session')?.getItem(TOKEN_KEY) ?? null;
    if (typeof window !== 'undefined') {
      window.addEventListener('online', () => this.reconnectSoon(0));
      // Another tab signed out (or in as someone else): this tab follows.
      window.addEventListener('storage', (e) => {
        if (e.key === TOKEN_KEY && this.token && e.newValue !== this.token) this.lostSession();
      });
    }
  }

  // ——— plumbing ———

  private emit(event: BackendEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch (e) {
        console.error('airtext: listener failed', e);
      }
    }
  }

  subscribe(listener: (event: BackendEvent) => void): () => void {
    this.listeners.add(listener);
    listener({ type: 'connection_changed', state: this.state });
    return () => this.listeners.delete(listener);
  }

  private setState(state: ConnectionState, error: string | null = null): void {
    if (state === this.state && !error) return;
    this.state = state;
    this.emit({ type: 'connection_changed', state, error });
  }

  private async api<T>(method: string, path: string, body?: unknown, auth = true): Promise<T> {
    if (!this.base) throw new BackendError('invalid_field', 'Enter the gateway address first.');
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (auth && this.token) headers.Authorization = `Bearer ${this.token}`;
    let response: Response;
    try {
      response = await this.fetchFn(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      if (this.token) this.setState('offline');
      throw new BackendError('unavailable', `Can't reach the gateway at ${this.base}. Check the address and your network.`);
    }
    if (response.status === 204) return undefined as T;
    let parsed: unknown = null;
    const text = await response.text();
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = null;
      }
    }
    if (!response.ok) {
      if (response.status === 401 && auth && this.token) this.lostSession();
      if (isErrorBody(parsed)) throw new BackendError(parsed.code, parsed.message, response.status);
      throw new BackendError(
        response.status >= 500 ? 'unavailable' : 'unknown',
        `The gateway answered ${response.status}${text && !parsed ? `: ${text.slice(0, 200)}` : ''}.`,
        response.status,
      );
    }
    return parsed as T;
  }

  private lostSession(): void {
    this.clearSession();
    this.emit({ type: 'signed_out' });
  }

  private clearSession(): void {
    this.token = null;
    this.meCache = null;
    storage('local')?.removeItem(TOKEN_KEY);
    storage('session')?.removeItem(TOKEN_KEY);
    this.closeStream();
    this.convs.clear();
    this.convIdToPeer.clear();
    this.byKey.clear();
    this.idToKey.clear();
    this.clientToKey.clear();
    this.contactMap.clear();
    this.contactsLoaded = false;
    this.outbox = [];
    this.cursor = null;
    this.hinted = 0;
    this.applied = 0;
    this.setState('offline');
  }

  // ——— session ———

  async gatewayUrl(): Promise<string | null> {
    return this.base;
  }

  async setGatewayUrl(url: string): Promise<void> {
    let base: string;
    try {
      base = normaliseGatewayUrl(url);
    } catch {
      throw new BackendError('invalid_field', 'That is not a web address. Try http://127.0.0.1:8080.');
    }
    let ok = false;
    try {
      const r = await this.fetchFn(`${base}/healthz`);
      ok = r.ok;
    } catch {
      ok = false;
    }
    if (!ok) throw new BackendError('unavailable', `No Airtext gateway answers at ${base}.`);
    this.base = base;
    storage('local')?.setItem(GATEWAY_KEY, base);
  }

  async restore(): Promise<Me | null> {
    if (!this.token || !this.base) return null;
    try {
      const me = await this.me();
      this.startStream();
      return me;
    } catch (e) {
      const err = BackendError.from(e);
      if (err.code === 'unauthorized') return null;
      throw err;
    }
  }

  async signUp(input: SignUpInput): Promise<void> {
    await this.api('POST', '/v1/accounts', input, false);
  }

  async signIn(input: SignInInput): Promise<Me> {
    const session = await this.api<Session>(
      'POST',
      '/v1/sessions',
      { ...input, has_cellular: false },
      false,
    );
    this.clearSession();
    this.token = session.token;
    storage('local')?.setItem(TOKEN_KEY, session.token);
    const me = await this.me();
    this.startStream();
    return me;
  }

  async signOut(): Promise<void> {
    try {
      if (this.token) await this.api('DELETE', '/v1/sessions/current');
    } catch {
      // signed out locally anyway; the token is forgotten
    }
    this.clearSession();
  }

  async changePassword(current: string, next: string): Promise<void> {
    const request: ChangePassword = {
      current_password: current,
      new_password: next,
      sign_out_other_devices: true,
    };
    await this.api('POST', '/v1/accounts/me/password', request);
    if (this.meCache) await this.me();
  }

  async requestPasswordReset(username: string): Promise<void> {
    const request: RequestPasswordReset = { username: username.trim().replace(/^@/, '') };
    await this.api('POST', '/v1/password-resets', request, false);
  }

  async confirmPasswordReset(username: string, code: string, password: string): Promise<void> {
    const request: ConfirmPasswordReset = {
      username: username.trim().replace(/^@/, ''),
      code: code.trim(),
      new_password: password,
    };
    await this.api('POST', '/v1/password-resets/confirm', request, false);
  }

  async deleteAccount(password: string): Promise<void> {
    const request: DeleteAccount = { password };
    await this.api('DELETE', '/v1/accounts/me', request);
    this.clearSession();
  }

  async me(): Promise<Me> {
    this.meCache = await this.api<Me>('GET', '/v1/me');
    return this.meCache;
  }

  async revokeDevice(id: DeviceId): Promise<void> {
    await this.api('DELETE', `/v1/devices/${encodeURIComponent(id)}`);
  }

  // ——— numbers and identities ———

  async availableNumbers(areaCode: string): Promise<string[]> {
    const q = new URLSearchParams({ country: 'US', area_code: areaCode.trim(), limit: '12' });
    const r = await this.api<AvailableNumbers>('GET', `/v1/numbers/available?${q}`);
    return r.numbers;
  }

  async claimNumber(number: string): Promise<string> {
    const r = await this.api<ClaimedNumber>('POST', '/v1/numbers', { number });
    if (this.meCache) this.meCache = { ...this.meCache, number: r.number };
    return r.number;
  }

  async addIdentity(kind: IdentityKind, value: string): Promise<IdentityPending> {
    return this.api<IdentityPending>('POST', '/v1/identities', { kind, value });
  }

  async verifyIdentity(id: string, code: string): Promise<IdentityVerified> {
    return this.api<IdentityVerified>('POST', `/v1/identities/${encodeURIComponent(id)}/verify`, {
      code: code.trim(),
    });
  }

  // ——— cache helpers ———

  private contactName(peer: string): string | null {
    return this.contactMap.get(peer)?.name ?? null;
  }

  /** Merges a server copy into the cache (by id, or by client_id for our own sends). */
  private upsert(m: Message): { message: ChatMessage; added: boolean } {
    const peer = this.convIdToPeer.get(m.conversation_id) ?? peerOf(m);
    let key = this.idToKey.get(m.id);
    if (!key && m.client_id) key = this.clientToKey.get(m.client_id);
    const existing = key ? this.byKey.get(key) : undefined;
    const finalKey = key ?? m.client_id ?? m.id;
    const message: ChatMessage = {
      key: finalKey,
      id: m.id,
      conversation_id: m.conversation_id,
      peer: existing?.peer ?? peer,
      direction: m.direction,
      from: m.from,
      to: m.to,
      body: m.body,
      status: existing ? reduce(existing.status, m.status) : m.status,
      route: m.route,
      path: m.route === 'cellular' ? 'cellular' : 'cloud',
      client_id: m.client_id,
      encoding: m.encoding,
      segments: m.segments,
      failure_reason: m.failure_reason ?? existing?.failure_reason ?? null,
      created_at: existing?.created_at ?? m.created_at,
      updated_at: m.updated_at,
    };
    this.byKey.set(finalKey, message);
    this.idToKey.set(m.id, finalKey);
    if (m.client_id) this.clientToKey.set(m.client_id, finalKey);
    if (!this.convIdToPeer.has(m.conversation_id)) this.convIdToPeer.set(m.conversation_id, message.peer);
    const conv = this.convs.get(message.peer);
    if (conv && !conv.id) conv.id = m.conversation_id;
    return { message, added: !existing };
  }

  private fromConversation(c: Conversation): ChatConversation {
    this.convIdToPeer.set(c.id, c.peer);
    const last = c.last_message ? this.upsert(c.last_message).message : null;
    return {
      id: c.id,
      peer: c.peer,
      name: this.contactName(c.peer),
      conversation_name: c.name ?? null,
      archived: c.archived ?? false,
      muted_until: c.muted_until ?? null,
      last_message: last,
      unread: c.unread,
      updated_at: c.updated_at,
    };
  }

  /** Puts `message` into its thread's summary (creating the thread if new); emits the change. */
  private touchConversation(message: ChatMessage, newInbound: boolean): void {
    let conv = this.convs.get(message.peer);
    if (!conv) {
      conv = emptyConversation(message.conversation_id, message.peer, this.contactName(message.peer), message.created_at);
      this.convs.set(message.peer, conv);
    }
    if (!conv.id && message.conversation_id) conv.id = message.conversation_id;
    const last = conv.last_message;
    if (!last || last.key === message.key || last.created_at <= message.created_at) {
      conv.last_message = message;
      if (message.created_at > conv.updated_at) conv.updated_at = message.created_at;
    }
    if (newInbound) conv.unread += 1;
    this.emit({ type: 'conversation_changed', conversation: { ...conv } });
  }

  private async ensureContacts(): Promise<void> {
    if (this.contactsLoaded) return;
    try {
      const r = await this.api<{ contacts: Contact[] }>('GET', '/v1/contacts');
      for (const c of r.contacts) this.contactMap.set(c.address, c);
      this.contactsLoaded = true;
    } catch {
      // names are a nicety; threads still load
    }
  }

  // ——— conversations and messages ———

  /**
   * A page of the list from the in-memory cache. The first page (no `before`) reloads the
   * cache from the gateway's pages first; later pages continue from the cache, ordered by
   * `updated_at` then `peer` (the web has no local ids), so they never skip or repeat one.
   */
  async conversations(before: ChatConversation | null, limit: number): Promise<ChatConversation[]> {
    if (!before) await this.loadConversations();
    const all = this.sortedConversations();
    const from = before ? all.findIndex((c) => compareConversations(c, before) > 0) : 0;
    if (from < 0) return [];
    return all.slice(from, from + Math.max(1, limit)).map((c) => ({ ...c }));
  }

  async unreadTotal(): Promise<number> {
    // The web portal holds the gateway's conversations it loaded (up to 2,000) in memory.
    let total = 0;
    for (const c of this.convs.values()) total += c.unread;
    return total;
  }

  /** Fills the cache with the gateway's conversation pages (newest first, at most 2,000). */
  private async loadConversations(): Promise<void> {
    await this.ensureContacts();
    let before: string | null = null;
    for (let page = 0; page < 10; page++) {
      const q = new URLSearchParams({ limit: '200' });
      if (before) q.set('before', before);
      const r: ConversationPage = await this.api<ConversationPage>('GET', `/v1/conversations?${q}`);
      for (const c of r.conversations) this.convs.set(c.peer, this.fromConversation(c));
      if (r.conversations.length < 200) break;
      before = r.conversations[r.conversations.length - 1].updated_at;
    }
  }

  private sortedConversations(): ChatConversation[] {
    return [...this.convs.values()].sort(compareConversations);
  }

  async search(query: string): Promise<SearchHit[]> {
    const q = query.trim().toLowerCase();
    if (!q) return [];
    const hits: SearchHit[] = [];
    for (const c of this.convs.values()) {
      if (c.peer.toLowerCase().includes(q) || (c.name ?? '').toLowerCase().includes(q)) {
        hits.push({ conversation: { ...c }, message: null });
      }
    }
    await this.ensureContacts();
    for (const c of this.contactMap.values()) {
      if (this.convs.has(c.address)) continue;
      if (c.address.toLowerCase().includes(q) || (c.name ?? '').toLowerCase().includes(q)) {
        hits.push({
          conversation: emptyConversation(null, c.address, c.name, c.updated_at),
          message: null,
        });
      }
    }
    for (const m of await this.searchMessages(query)) {
      // A conversation beyond the pages loaded so far.
      const c =
        this.convs.get(m.peer) ??
        emptyConversation(m.conversation_id, m.peer, this.contactMap.get(m.peer)?.name ?? null, m.created_at);
      hits.push({ conversation: { ...c }, message: m });
    }
    return hits;
  }

  /**
   * Messages matching `query`: the gateway's full-text search over every message of the
   * account (`GET /v1/search`); the messages in this tab's cache when the gateway can't be
   * asked (offline) or the query has no word it can search for.
   */
  private async searchMessages(query: string): Promise<ChatMessage[]> {
    try {
      const q = new URLSearchParams({ q: query.trim(), limit: '50' });
      const page = await this.api<SearchPage>('GET', `/v1/search?${q}`);
      return page.messages.map((m) => this.upsert(m).message);
    } catch {
      const q = query.trim().toLowerCase();
      return [...this.byKey.values()]
        .filter((m) => m.body.toLowerCase().includes(q))
        .sort((a, b) => (a.created_at < b.created_at ? 1 : -1))
        .slice(0, 50);
    }
  }

  async lookup(address: string): Promise<Lookup> {
    const cached = this.lookups.get(address);
    if (cached && Date.now() - cached.at < LOOKUP_TTL_MS) return cached.value;
    const value = await this.api<Lookup>('GET', `/v1/lookup?${new URLSearchParams({ address })}`);
    this.lookups.set(address, { at: Date.now(), value });
    this.lookups.set(value.address, { at: Date.now(), value });
    return value;
  }

  async messages(peer: string, before: ChatMessage | null, limit: number): Promise<ChatMessage[]> {
    const conv = this.convs.get(peer);
    const local = this.outbox
      .map((k) => this.byKey.get(k))
      .filter((m): m is ChatMessage => !!m && m.peer === peer && !m.id);
    if (!conv?.id) return before ? [] : local.reverse();
    const q = new URLSearchParams({ limit: String(Math.min(200, Math.max(1, limit))) });
    if (before?.id) q.set('before', before.id);
    const r = await this.api<MessagePage>(
      'GET',
      `/v1/conversations/${encodeURIComponent(conv.id)}/messages?${q}`,
    );
    const page = r.messages.map((m) => this.upsert(m).message);
    if (!before) {
      // Local sends still on their way belong at the newest end of the first page.
      const onPage = new Set(page.map((m) => m.key));
      const extra = local.filter((m) => !onPage.has(m.key)).reverse();
      return [...extra, ...page];
    }
    return page;
  }

  async send(to: string, body: string): Promise<ChatMessage> {
    const client_id = uuid();
    const now = new Date().toISOString();
    const conv = this.convs.get(to);
    const me = this.meCache;
    const message: ChatMessage = {
      key: client_id,
      id: null,
      conversation_id: conv?.id ?? null,
      peer: to,
      direction: 'outbound',
      from: me?.number ?? (me ? `@${me.username}` : ''),
      to,
      body,
      status: 'queued',
      route: null,
      path: 'cloud',
      client_id,
      encoding: 'gsm7',
      segments: 1,
      failure_reason: null,
      created_at: now,
      updated_at: now,
    };
    this.byKey.set(client_id, message);
    this.clientToKey.set(client_id, client_id);
    this.outbox.push(client_id);
    this.emit({ type: 'message_added', message });
    this.touchConversation(message, false);
    void this.flush();
    return message;
  }

  /** Posts every queued local message, oldest first; stops at the first network failure. */
  private async flush(): Promise<void> {
    if (this.flushing || !this.token) return;
    this.flushing = true;
    try {
      while (this.outbox.length > 0) {
        const key = this.outbox[0];
        const local = this.byKey.get(key);
        if (!local || local.id || local.status === 'failed') {
          this.outbox.shift();
          continue;
        }
        try {
          const m = await this.api<Message>('POST', '/v1/messages', {
            to: local.to,
            body: local.body,
            client_id: local.client_id,
          });
          this.outbox.shift();
          const { message } = this.upsert(m);
          this.emit({ type: 'message_updated', message });
          this.touchConversation(message, false);
        } catch (e) {
          const err = BackendError.from(e);
          if (isTransient(err)) {
            this.reconnectSoon(this.backoffMs);
            return;
          }
          this.outbox.shift();
          const failed: ChatMessage = {
            ...local,
            status: 'failed',
            failure_reason: err.message,
            updated_at: new Date().toISOString(),
          };
          this.byKey.set(key, failed);
          this.emit({ type: 'message_updated', message: failed });
          if (err.code === 'emergency_number') this.emit({ type: 'send_refused', peer: local.peer, error: err });
          this.touchConversation(failed, false);
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  async retry(message: ChatMessage): Promise<ChatMessage> {
    if (!message.id) {
      // Never reached the gateway: a new attempt with the same client_id (never a duplicate).
      const again: ChatMessage = {
        ...message,
        status: 'queued',
        failure_reason: null,
        updated_at: new Date().toISOString(),
      };
      this.byKey.set(message.key, again);
      this.outbox.push(message.key);
      this.emit({ type: 'message_updated', message: again });
      void this.flush();
      return again;
    }
    // The gateway failed it: the same client_id would return that failure, so send anew and
    // drop the failed copy (on every device).
    await this.deleteMessage(message);
    return this.send(message.peer, message.body);
  }

  async markRead(peer: string, upTo: ChatMessage): Promise<void> {
    const conv = this.convs.get(peer);
    if (!conv?.id || !upTo.id) return;
    if (conv.unread !== 0) {
      conv.unread = 0;
      this.emit({ type: 'conversation_changed', conversation: { ...conv } });
    }
    await this.api('POST', `/v1/conversations/${encodeURIComponent(conv.id)}/read`, { up_to: upTo.id });
  }

  async deleteMessage(message: ChatMessage): Promise<void> {
    if (message.id) await this.api('DELETE', `/v1/messages/${encodeURIComponent(message.id)}`);
    this.forget(message.key);
  }

  private forget(key: string): void {
    const m = this.byKey.get(key);
    if (!m) return;
    this.byKey.delete(key);
    if (m.id) this.idToKey.delete(m.id);
    this.outbox = this.outbox.filter((k) => k !== key);
    this.emit({ type: 'message_deleted', key, id: m.id, peer: m.peer });
    const conv = this.convs.get(m.peer);
    if (conv?.last_message?.key === key) this.refreshConversationsSoon();
  }

  private refreshConversationsSoon(): void {
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(async () => {
      this.refreshTimer = null;
      try {
        await this.loadConversations();
        for (const c of this.sortedConversations()) this.emit({ type: 'conversation_changed', conversation: { ...c } });
      } catch {
        // next event will try again
      }
    }, 300);
  }

  // ——— contacts and path ———

  async contacts(): Promise<Contact[]> {
    this.contactsLoaded = false;
    await this.ensureContacts();
    return [...this.contactMap.values()];
  }

  async setContact(address: string, path: PathChoice, fallback: boolean, name: string | null): Promise<Contact> {
    const contact = await this.api<Contact>('PUT', `/v1/contacts/${encodeURIComponent(address)}`, {
      path,
      fallback,
      name,
    });
    this.applyContact(contact);
    return contact;
  }

  private applyContact(contact: Contact): void {
    this.contactMap.set(contact.address, contact);
    this.emit({ type: 'contact_changed', contact });
    const conv = this.convs.get(contact.address);
    if (conv && conv.name !== contact.name) {
      conv.name = contact.name;
      this.emit({ type: 'conversation_changed', conversation: { ...conv } });
    }
  }

  async importContacts(list: ContactInput[]): Promise<ImportResult> {
    await this.ensureContacts();
    const result: ImportResult = { imported: [], skipped: [] };
    for (const entry of list) {
      for (const address of entry.addresses) {
        try {
          const norm = (await this.lookup(address)).address;
          const existing = this.contactMap.get(norm);
          const contact = await this.setContact(
            norm,
            existing?.path ?? 'auto',
            existing?.fallback ?? false,
            entry.name ?? existing?.name ?? null,
          );
          result.imported.push(contact);
        } catch (e) {
          result.skipped.push({ address, error: BackendError.from(e) });
        }
      }
    }
    return result;
  }

  async decidePath(peer: string): Promise<PathDecision> {
    await this.ensureContacts();
    const contact = this.contactMap.get(peer);
    const choice: PathChoice = contact?.path ?? 'auto';
    let in_network: boolean | null = null;
    try {
      in_network = (await this.lookup(peer)).in_network;
    } catch {
      in_network = null;
    }
    const reason =
      choice === 'cloud'
        ? 'the contact is set to cloud'
        : choice === 'cellular'
          ? 'this device has no cellular modem, so the cloud is used'
          : in_network
            ? 'the peer is on Airtext'
            : 'this device has no cellular service';
    return { path: 'cloud', fallback: null, reason, in_network, choice };
  }

  async plan(text: string): Promise<TextPlan | null> {
    if (this.planUnavailable || !this.token) return null;
    try {
      return await this.api<TextPlan>('POST', '/v1/messages/plan', { text });
    } catch (e) {
      const err = BackendError.from(e);
      if (err.status === 404 || err.status === 405) this.planUnavailable = true;
      return null;
    }
  }

  // ——— settings ———

  async settings(): Promise<Settings> {
    return this.currentSettings();
  }

  /** A browser keeps its sign-in in its own storage: no keyring choice to show. */
  async tokenStorage(): Promise<TokenStorage | null> {
    return null;
  }

  async saveSettings(settings: Settings): Promise<void> {
    storage('local')?.setItem(SETTINGS_KEY, JSON.stringify(settings));
  }

  async serialPorts(): Promise<string[]> {
    return [];
  }

  // ——— live sync ———

  private startStream(): void {
    if (this.ws || !this.token || !this.base || !this.WS) return;
    const generation = ++this.wsGeneration;
    this.setState('connecting');
    const url = `${this.base.replace(/^http/i, 'ws')}/v1/stream?${new URLSearchParams({ token: this.token })}`;
    let ws: WebSocket;
    try {
      ws = new this.WS(url);
    } catch {
      this.reconnectSoon(this.backoffMs);
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (generation !== this.wsGeneration) return;
      this.backoffMs = 1000;
      this.setState('online');
      void this.flush();
    };
    ws.onmessage = (ev) => {
      if (generation !== this.wsGeneration) return;
      let seq: number | null = null;
      try {
        const hint = JSON.parse(String(ev.data)) as { seq?: unknown };
        if (typeof hint.seq === 'number') seq = hint.seq;
      } catch {
        seq = null;
      }
      if (seq === null) return;
      this.hinted = Math.max(this.hinted, seq);
      if (this.cursor === null) {
        // A new web session starts from now; the REST list covers the past.
        this.cursor = seq;
        this.refreshConversationsSoon();
        this.emit({ type: 'sync_progress', applied: 0, remaining: 0, cursor: seq });
        return;
      }
      void this.pull();
    };
    ws.onclose = (ev) => {
      if (generation !== this.wsGeneration) return;
      this.ws = null;
      if (ev.code === 1008) {
        this.lostSession();
        return;
      }
      this.setState(this.token ? 'offline' : 'offline');
      this.reconnectSoon(this.backoffMs);
    };
    ws.onerror = () => {
      // onclose follows
    };
  }

  private closeStream(): void {
    this.wsGeneration++;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    if (this.ws) {
      try {
        this.ws.close(1000);
      } catch {
        // already closed
      }
    }
    this.ws = null;
  }

  private reconnectSoon(delayMs: number): void {
    if (!this.token || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.ws) this.startStream();
      else void this.flush();
    }, delayMs);
    this.backoffMs = Math.min(30_000, this.backoffMs * 2);
  }

  private async pull(): Promise<void> {
    if (this.pulling || this.cursor === null) return;
    this.pulling = true;
    try {
      let cursor: number = this.cursor;
      let more = true;
      while (more || cursor < this.hinted) {
        const q = new URLSearchParams({ after: String(cursor), limit: String(SYNC_PAGE) });
        const page: SyncPage = await this.api<SyncPage>('GET', `/v1/sync?${q}`);
        for (const e of page.events) this.apply(e);
        this.applied += page.events.length;
        cursor = page.next;
        this.cursor = cursor;
        this.hinted = Math.max(this.hinted, cursor);
        more = page.more;
        this.emit({
          type: 'sync_progress',
          applied: this.applied,
          remaining: Math.max(0, this.hinted - cursor),
          cursor,
        });
        if (!more && page.events.length === 0) break;
      }
    } catch {
      // offline or signed out: the next hint or reconnect pulls again from the same cursor
    } finally {
      this.pulling = false;
    }
  }

  /** A browser notification for a text that arrived while this tab is hidden. */
  private notify(message: ChatMessage): void {
    if (typeof Notification === 'undefined' || Notification.permission !== 'granted') return;
    if (typeof document === 'undefined' || !document.hidden) return;
    const settings = this.currentSettings();
    if (!settings.notifications) return;
    const from = this.contactMap.get(message.peer)?.name ?? this.convs.get(message.peer)?.name ?? message.peer;
    try {
      const shown = new Notification(`Airtext: ${from}`, {
        body: settings.hide_text ? 'New message' : message.body,
        tag: `airtext:${message.peer}`,
      });
      shown.onclick = () => {
        window.focus();
        this.emit({ type: 'open_thread', peer: message.peer });
        shown.close();
      };
    } catch {
      // Some browsers allow notifications only from a service worker: nothing to show then.
    }
  }

  private currentSettings(): Settings {
    const raw = storage('local')?.getItem(SETTINGS_KEY);
    if (!raw) return { ...DEFAULT_SETTINGS };
    try {
      return { ...DEFAULT_SETTINGS, ...(JSON.parse(raw) as Partial<Settings>) };
    } catch {
      return { ...DEFAULT_SETTINGS };
    }
  }

  /** Applies one sync event to the cache; applying it twice changes nothing. */
  apply(e: SyncEvent): void {
    switch (e.type) {
      case 'message.created': {
        const known = this.idToKey.has(e.message.id) ||
          (!!e.message.client_id && this.clientToKey.has(e.message.client_id));
        const { message, added } = this.upsert(e.message);
        this.outbox = this.outbox.filter((k) => k !== message.key);
        this.emit({ type: added ? 'message_added' : 'message_updated', message });
        this.touchConversation(message, !known && message.direction === 'inbound');
        if (!known && message.direction === 'inbound') this.notify(message);
        break;
      }
      case 'message.status': {
        const key = this.idToKey.get(e.message_id);
        const m = key ? this.byKey.get(key) : undefined;
        if (!key || !m) break;
        const status = reduce(m.status, e.status);
        if (status === m.status && !(status === 'failed' && e.failure_reason && !m.failure_reason)) break;
        const next: ChatMessage = {
          ...m,
          status,
          failure_reason: e.failure_reason ?? m.failure_reason ?? null,
          updated_at: e.updated_at,
        };
        this.byKey.set(key, next);
        this.emit({ type: 'message_updated', message: next });
        const conv = this.convs.get(next.peer);
        if (conv?.last_message?.key === key) {
          conv.last_message = next;
          this.emit({ type: 'conversation_changed', conversation: { ...conv } });
        }
        break;
      }
      case 'message.deleted': {
        const key = this.idToKey.get(e.message_id);
        if (key) this.forget(key);
        break;
      }
      case 'conversation.read': {
        const peer = this.convIdToPeer.get(e.conversation_id);
        const conv = peer ? this.convs.get(peer) : undefined;
        if (conv && conv.unread !== e.unread) {
          conv.unread = e.unread;
          this.emit({ type: 'conversation_changed', conversation: { ...conv } });
        }
        break;
      }
      case 'contact.updated':
        this.applyContact(e.contact);
        break;
    }
  }
}

/** A thread with no message known yet: not named, archived or muted. */
function emptyConversation(id: string | null, peer: string, name: string | null, updatedAt: string): ChatConversation {
  return {
    id,
    peer,
    name,
    conversation_name: null,
    archived: false,
    muted_until: null,
    last_message: null,
    unread: 0,
    updated_at: updatedAt,
  };
}
