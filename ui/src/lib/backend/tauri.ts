// TauriBackend: the UI inside the Tauri shell (src-tauri, airtext-app). Every call is one IPC
// command that delegates to airtext-client; nothing here decides anything.
//
// ════════════════════════════ THE CONTRACT WITH src-tauri ════════════════════════════
//
// Commands (`#[tauri::command]`, snake_case names; arguments arrive camelCase from JS and
// Tauri maps them to the snake_case Rust parameters). Every command returns
// `Result<T, ErrorBody>` where `ErrorBody = {code, message}` (airtext-api's, codes from
// `ErrorCode`) — never `Result<_, String>`. Types: `bindings/*.ts` (airtext-api) and
// `bindings/app/*.ts` (airtext-client's cache types and the shell's own: `CachedMessage`,
// `CachedConversation`, `ConversationCursor`, `ClientEvent`, `Settings`, …), generated from
// the Rust types (drift tests in crates/api and src-tauri).
//
// | command              | args                                          | returns                      |
// |----------------------|-----------------------------------------------|------------------------------|
// | gateway_url          | —                                             | string \| null               |
// | set_gateway_url      | { url }                 (checks /healthz)      | null                         |
// | restore              | — (token from the keyring; missing = null)   | Me \| null                   |
// | sign_up              | { username, password, email }                 | null                         |
// | sign_in              | { username, password, deviceName }            | Me  (stores token in keyring)|
// | sign_out             | —                       (deletes keyring entry)| null                         |
// | me                   | —                                             | Me                           |
// | revoke_device        | { id }                                        | null                         |
// | available_numbers    | { areaCode }            (country US)          | string[]                     |
// | claim_number         | { number }                                    | string (the number)          |
// | add_identity         | { kind, value }                               | IdentityPending              |
// | verify_identity      | { id, code }                                  | IdentityVerified             |
// | conversations        | { before, limit }  (before = {updated_at, local_id} of the last shown, or null; limit ≤ 500) | CachedConversation[] (newest first) |
// | unread_total         | —                       (every conversation)  | number                       |
// | search               | { query }               (the cache's FTS5)     | {conversation, message}[]    |
// | lookup               | { address }                                   | Lookup                       |
// | messages             | { peer, before, limit } (before = local_id or null) | CachedMessage[] newest first |
// | send                 | { to, body }            (outbox; returns at once) | CachedMessage (queued)   |
// | retry                | { localId }                                   | CachedMessage                |
// | mark_read            | { peer, upTo }          (upTo = local_id)      | null                         |
// | delete_message       | { localId }                                   | null                         |
// | contacts             | —                                             | Contact[]                    |
// | set_contact          | { address, path, fallback, name }             | Contact                      |
// | import_contacts      | { contacts: {name, addresses[]}[] }           | { imported: Contact[], skipped: {address, error: ErrorBody}[] } |
// | decide_path          | { peer }                (path::decide)         | { path, fallback, reason, in_network, choice } |
// | plan                 | { text }                (airtext_sms::plan)    | TextPlan                     |
// | settings             | —                                             | Settings                     |
// | save_settings        | { settings }            (applies the proxy and modem at once) | null   |
// | serial_ports         | —                                             | string[]                     |
// | capabilities         | —                                             | { proxy, modem, notifications, background } |
// | token_storage        | —                                             | TokenStorage (keyring, file or memory) |
//
// Events (`app.emit(name, payload)`):
// - `airtext://event`         payload: airtext-client's `ClientEvent` as serialised today
//   (`{type: "message_added"|"message_updated", message: CachedMessage}`,
//   `{type: "message_deleted", id}`, `{type: "conversation_changed", conversation}`,
//   `{type: "contact_changed", contact}`, `{type: "sync_progress", applied, remaining, cursor}`,
//   `{type: "connection_changed", online, error?}`);
// - `airtext://signed-out`    payload: null (the token was revoked elsewhere);
// - `airtext://open-thread`   payload: OpenThread { peer } (a notification was clicked).
// ═════════════════════════════════════════════════════════════════════════════════════

import { invoke } from '@tauri-apps/api/core';
import { listen, type UnlistenFn } from '@tauri-apps/api/event';
import type { Contact } from '../bindings/Contact';
import type { DeviceId } from '../bindings/DeviceId';
import type { IdentityKind } from '../bindings/IdentityKind';
import type { IdentityPending } from '../bindings/IdentityPending';
import type { IdentityVerified } from '../bindings/IdentityVerified';
import type { Lookup } from '../bindings/Lookup';
import type { Me } from '../bindings/Me';
import type { PathChoice } from '../bindings/PathChoice';
import type { TextPlan } from '../bindings/TextPlan';
import type { CachedConversation } from '../bindings/app/CachedConversation';
import type { CachedMessage } from '../bindings/app/CachedMessage';
import type { Capabilities as ShellCapabilities } from '../bindings/app/Capabilities';
import type { ClientEvent } from '../bindings/app/ClientEvent';
import type { ConversationCursor } from '../bindings/app/ConversationCursor';
import type { ImportResult as ShellImportResult } from '../bindings/app/ImportResult';
import type { OpenThread } from '../bindings/app/OpenThread';
import type { SearchHit as ShellSearchHit } from '../bindings/app/SearchHit';
import {
  BackendError,
  type Backend,
  type BackendEvent,
  type Capabilities,
  type ChatConversation,
  type ChatMessage,
  type ContactInput,
  type ImportResult,
  type PathDecision,
  type SearchHit,
  type Settings,
  type SignInInput,
  type SignUpInput,
  type TokenStorage,
} from './types';

export function fromTauriMessage(m: CachedMessage): ChatMessage {
  const { local_id, ...rest } = m;
  return { ...rest, key: String(local_id) };
}

export function fromTauriConversation(c: CachedConversation): ChatConversation {
  const { last_message, ...rest } = c;
  return { ...rest, last_message: last_message ? fromTauriMessage(last_message) : null };
}

/** Where the page after `c` starts (the list's order: `updated_at`, then the cache's id). */
export function cursorOf(c: ChatConversation): ConversationCursor | null {
  return c.local_id === undefined ? null : { updated_at: c.updated_at, local_id: c.local_id };
}

/** Maps one `ClientEvent` to the UI's event. */
export function fromClientEvent(e: ClientEvent): BackendEvent {
  switch (e.type) {
    case 'message_added':
    case 'message_updated':
      return { type: e.type, message: fromTauriMessage(e.message) };
    case 'message_deleted':
      return { type: 'message_deleted', key: null, id: e.id, peer: null };
    case 'conversation_changed':
      return { type: 'conversation_changed', conversation: fromTauriConversation(e.conversation) };
    case 'contact_changed':
      return e;
    case 'sync_progress':
      return e;
    case 'connection_changed':
      return {
        type: 'connection_changed',
        state: e.online ? 'online' : 'offline',
        error: e.error ?? null,
      };
  }
}

function localId(m: ChatMessage): number {
  return Number(m.key);
}

async function call<T>(command: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(command, args);
  } catch (e) {
    throw BackendError.from(e);
  }
}

export class TauriBackend implements Backend {
  capabilities: Capabilities = { proxy: true, modem: true, notifications: true, background: true, kind: 'tauri' };
  private listeners = new Set<(e: BackendEvent) => void>();
  private unlisten: Promise<UnlistenFn[]> | null = null;

  /** Asks the shell what this platform can do (tablets may lack a modem or a proxy). */
  async init(): Promise<void> {
    try {
      const caps = await call<ShellCapabilities>('capabilities');
      this.capabilities = { ...caps, kind: 'tauri' };
    } catch {
      // an older shell: assume the desktop set
    }
  }

  private ensureListening(): void {
    if (this.unlisten) return;
    this.unlisten = Promise.all([
      listen<ClientEvent>('airtext://event', (e) => this.emit(fromClientEvent(e.payload))),
      listen('airtext://signed-out', () => this.emit({ type: 'signed_out' })),
      listen<OpenThread>('airtext://open-thread', (e) =>
        this.emit({ type: 'open_thread', peer: e.payload.peer }),
      ),
    ]);
  }

  private emit(event: BackendEvent): void {
    for (const l of this.listeners) l(event);
  }

  subscribe(listener: (event: BackendEvent) => void): () => void {
    this.ensureListening();
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  gatewayUrl(): Promise<string | null> {
    return call('gateway_url');
  }
  async setGatewayUrl(url: string): Promise<void> {
    await call('set_gateway_url', { url });
  }
  restore(): Promise<Me | null> {
    return call('restore');
  }
  async signUp(input: SignUpInput): Promise<void> {
    await call('sign_up', { ...input });
  }
  signIn(input: SignInInput): Promise<Me> {
    return call('sign_in', {
      username: input.username,
      password: input.password,
      deviceName: input.device_name,
    });
  }
  async signOut(): Promise<void> {
    await call('sign_out');
  }
  me(): Promise<Me> {
    return call('me');
  }
  async revokeDevice(id: DeviceId): Promise<void> {
    await call('revoke_device', { id });
  }
  // The desktop shell has no commands for these yet: the web portal (the gateway's own
  // address) does them.
  changePassword(): Promise<void> {
    return inPortal('change the password');
  }
  requestPasswordReset(): Promise<void> {
    return inPortal('reset a password');
  }
  confirmPasswordReset(): Promise<void> {
    return inPortal('reset a password');
  }
  deleteAccount(): Promise<void> {
    return inPortal('delete the account');
  }
  availableNumbers(areaCode: string): Promise<string[]> {
    return call('available_numbers', { areaCode });
  }
  claimNumber(number: string): Promise<string> {
    return call('claim_number', { number });
  }
  addIdentity(kind: IdentityKind, value: string): Promise<IdentityPending> {
    return call('add_identity', { kind, value });
  }
  verifyIdentity(id: string, code: string): Promise<IdentityVerified> {
    return call('verify_identity', { id, code });
  }
  async conversations(before: ChatConversation | null, limit: number): Promise<ChatConversation[]> {
    const cursor = before ? cursorOf(before) : null;
    // A conversation without the cache's id cannot continue the list (none comes from here).
    if (before && !cursor) return [];
    const page = await call<CachedConversation[]>('conversations', { before: cursor, limit });
    return page.map(fromTauriConversation);
  }
  unreadTotal(): Promise<number> {
    return call('unread_total');
  }
  async search(query: string): Promise<SearchHit[]> {
    const hits = await call<ShellSearchHit[]>('search', { query });
    return hits.map((h) => ({
      conversation: fromTauriConversation(h.conversation),
      message: h.message ? fromTauriMessage(h.message) : null,
    }));
  }
  lookup(address: string): Promise<Lookup> {
    return call('lookup', { address });
  }
  async messages(peer: string, before: ChatMessage | null, limit: number): Promise<ChatMessage[]> {
    const page = await call<CachedMessage[]>('messages', {
      peer,
      before: before ? localId(before) : null,
      limit,
    });
    return page.map(fromTauriMessage);
  }
  async send(to: string, body: string): Promise<ChatMessage> {
    return fromTauriMessage(await call<CachedMessage>('send', { to, body }));
  }
  async retry(message: ChatMessage): Promise<ChatMessage> {
    return fromTauriMessage(await call<CachedMessage>('retry', { localId: localId(message) }));
  }
  async markRead(peer: string, upTo: ChatMessage): Promise<void> {
    await call('mark_read', { peer, upTo: localId(upTo) });
  }
  async deleteMessage(message: ChatMessage): Promise<void> {
    await call('delete_message', { localId: localId(message) });
  }
  contacts(): Promise<Contact[]> {
    return call('contacts');
  }
  setContact(address: string, path: PathChoice, fallback: boolean, name: string | null): Promise<Contact> {
    return call('set_contact', { address, path, fallback, name });
  }
  async importContacts(contacts: ContactInput[]): Promise<ImportResult> {
    const r = await call<ShellImportResult>('import_contacts', { contacts });
    return {
      imported: r.imported,
      skipped: r.skipped.map((s) => ({ address: s.address, error: BackendError.from(s.error) })),
    };
  }
  decidePath(peer: string): Promise<PathDecision> {
    return call('decide_path', { peer });
  }
  async plan(text: string): Promise<TextPlan | null> {
    try {
      return await call<TextPlan>('plan', { text });
    } catch {
      return null;
    }
  }
  settings(): Promise<Settings> {
    return call('settings');
  }
  tokenStorage(): Promise<TokenStorage | null> {
    return call('token_storage');
  }
  async saveSettings(settings: Settings): Promise<void> {
    await call('save_settings', { settings });
  }
  serialPorts(): Promise<string[]> {
    return call('serial_ports');
  }
}

async function inPortal(what: string): Promise<never> {
  throw new BackendError(
    'unavailable',
    `To ${what}, open the web portal: your gateway's address in a browser.`,
  );
}
