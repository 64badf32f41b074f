// The one interface the whole UI talks to. Two implementations:
// - `TauriBackend` (tauri.ts): IPC into the Rust shell, which delegates to airtext-client
//   (local SQLite cache, outbox, path policy, cellular modem, keyring, notifications);
// - `WebBackend` (web.ts): fetch + WebSocket straight to a gateway (API v1), with an in-memory
//   cache, for the web portal and the browser tests.
//
// Every failure is thrown as a `BackendError` carrying the shared `{code, message}` vocabulary
// (the same `ErrorCode`s the gateway returns), so the UI handles both backends alike.

import type { Contact } from '../bindings/Contact';
import type { ErrorBody } from '../bindings/ErrorBody';
import type { ErrorCode } from '../bindings/ErrorCode';
import type { IdentityKind } from '../bindings/IdentityKind';
import type { IdentityPending } from '../bindings/IdentityPending';
import type { IdentityVerified } from '../bindings/IdentityVerified';
import type { Lookup } from '../bindings/Lookup';
import type { Me } from '../bindings/Me';
import type { MessageId } from '../bindings/MessageId';
import type { PathChoice } from '../bindings/PathChoice';
import type { Route } from '../bindings/Route';
import type { SendStatus } from '../bindings/SendStatus';
import type { TextPlan } from '../bindings/TextPlan';
import type { DeviceId } from '../bindings/DeviceId';
import type { CachedConversation } from '../bindings/app/CachedConversation';
import type { CachedMessage } from '../bindings/app/CachedMessage';
import type { Capabilities as ShellCapabilities } from '../bindings/app/Capabilities';
import type { ContactInput } from '../bindings/app/ContactInput';
import type { LocalConversationId } from '../bindings/app/LocalConversationId';
import type { PathDecision } from '../bindings/app/PathDecision';
import type { SendPath } from '../bindings/app/SendPath';
import type { Settings } from '../bindings/app/Settings';
import type { TokenStorage } from '../bindings/app/TokenStorage';

// Types generated from Rust (ts-rs; drift tests keep them current): airtext-api's in
// `bindings/`, airtext-client's and the shell's in `bindings/app/`. The UI's own types below
// are those types with the few differences both backends need spelled out.
export type { Contact, Me, TextPlan, Lookup, PathChoice, SendStatus, Route, ErrorCode };
export type { ContactInput, PathDecision, SendPath, Settings, TokenStorage };

/**
 * A message as the UI shows it: the cache's copy (airtext-client's `CachedMessage`), which may
 * exist only on this device so far (`id` null while queued). `key` stands in for the cache's
 * `local_id`: stable for the message's whole life on this device (the web backend makes one).
 */
export type ChatMessage = Omit<CachedMessage, 'local_id'> & { key: string };

/**
 * A thread (airtext-client's `CachedConversation`); the UI keys threads by `peer`. `local_id`
 * (the cache's id, the Tauri shell's list cursor with `updated_at`) is absent on the web.
 */
export type ChatConversation = Omit<CachedConversation, 'local_id' | 'last_message'> & {
  local_id?: LocalConversationId;
  last_message: ChatMessage | null;
};

export interface SearchHit {
  conversation: ChatConversation;
  /** The matching message, or null when the peer or name matched. */
  message: ChatMessage | null;
}

/** What this backend can do (the web portal has no modem, proxy or desktop notifications). */
export type Capabilities = ShellCapabilities & { kind: 'tauri' | 'web' };

export type ConnectionState = 'online' | 'connecting' | 'offline';

export type BackendEvent =
  | { type: 'message_added'; message: ChatMessage }
  | { type: 'message_updated'; message: ChatMessage }
  | { type: 'message_deleted'; key: string | null; id: MessageId | null; peer: string | null }
  | { type: 'conversation_changed'; conversation: ChatConversation }
  | { type: 'contact_changed'; contact: Contact }
  | { type: 'sync_progress'; applied: number; remaining: number | null; cursor: number }
  | { type: 'connection_changed'; state: ConnectionState; error?: string | null }
  | { type: 'signed_out' }
  /** The user clicked a desktop notification: show that thread. */
  | { type: 'open_thread'; peer: string }
  /** The gateway refused a queued send for good in a way the user must act on (`emergency_number`). */
  | { type: 'send_refused'; peer: string; error: BackendError };

export interface SignUpInput {
  username: string;
  password: string;
  email: string | null;
}

export interface SignInInput {
  username: string;
  password: string;
  device_name: string;
}

export interface ImportResult {
  imported: Contact[];
  /** Addresses the gateway refused, with why. */
  skipped: { address: string; error: BackendError }[];
}

export interface Backend {
  readonly capabilities: Capabilities;

  // — session —
  gatewayUrl(): Promise<string | null>;
  /** Checks the gateway answers (`/healthz`) and remembers it. */
  setGatewayUrl(url: string): Promise<void>;
  /** The signed-in account, or null when signed out (a missing token is not an error). */
  restore(): Promise<Me | null>;
  signUp(input: SignUpInput): Promise<void>;
  signIn(input: SignInInput): Promise<Me>;
  signOut(): Promise<void>;
  me(): Promise<Me>;
  revokeDevice(id: DeviceId): Promise<void>;
  /**
   * Changes the password (the current one is required). This device stays signed in; every
   * other device is signed out.
   */
  changePassword(current: string, next: string): Promise<void>;
  /**
   * Asks for a password-reset code, sent to the account's verified e-mail and phone. Resolves
   * alike whether or not the account exists (the gateway never says).
   */
  requestPasswordReset(username: string): Promise<void>;
  /** Sets a new password with the code; every device of the account is signed out. */
  confirmPasswordReset(username: string, code: string, password: string): Promise<void>;
  /** Deletes the account and everything in it (the password is required); signs out here. */
  deleteAccount(password: string): Promise<void>;

  // — numbers and identities —
  availableNumbers(areaCode: string): Promise<string[]>;
  claimNumber(number: string): Promise<string>;
  addIdentity(kind: IdentityKind, value: string): Promise<IdentityPending>;
  verifyIdentity(id: string, code: string): Promise<IdentityVerified>;

  // — conversations and messages —
  /**
   * A page of the conversation list, most recently updated first (`updated_at`, then the
   * cache's id), after `before` (the last conversation already shown) when given.
   */
  conversations(before: ChatConversation | null, limit: number): Promise<ChatConversation[]>;
  /** Unread texts in every conversation, not only the pages loaded so far. */
  unreadTotal(): Promise<number>;
  /**
   * Searches peers and contact names in the local cache, and message bodies (the web: the
   * gateway's full-text search over the whole account; the app: its local cache).
   */
  search(query: string): Promise<SearchHit[]>;
  /** Normalises an address and says whether it is on Airtext. */
  lookup(address: string): Promise<Lookup>;
  /** A page of a thread, newest first, older than `before` (the oldest message shown). */
  messages(peer: string, before: ChatMessage | null, limit: number): Promise<ChatMessage[]>;
  /** Writes the message locally and returns it at once (status `queued`); sending follows. */
  send(to: string, body: string): Promise<ChatMessage>;
  retry(message: ChatMessage): Promise<ChatMessage>;
  markRead(peer: string, upTo: ChatMessage): Promise<void>;
  deleteMessage(message: ChatMessage): Promise<void>;

  // — contacts and path —
  contacts(): Promise<Contact[]>;
  setContact(address: string, path: PathChoice, fallback: boolean, name: string | null): Promise<Contact>;
  importContacts(contacts: ContactInput[]): Promise<ImportResult>;
  decidePath(peer: string): Promise<PathDecision>;
  /** Encoding, segments and characters left, decided by airtext-sms; null when unavailable. */
  plan(text: string): Promise<TextPlan | null>;

  // — settings —
  settings(): Promise<Settings>;
  saveSettings(settings: Settings): Promise<void>;
  /**
   * Where this device keeps its sign-in (OS keyring, a private file, or memory for the
   * session) and why not the keyring; null where the backend has no such choice (web).
   */
  tokenStorage(): Promise<TokenStorage | null>;
  /** Serial ports that may be a modem (empty where there are none or it can't be known). */
  serialPorts(): Promise<string[]>;

  /** Live changes; returns the unsubscribe function. */
  subscribe(listener: (event: BackendEvent) => void): () => void;
}

/** Every error the UI sees: the shared `{code, message}` vocabulary. */
export class BackendError extends Error implements ErrorBody {
  readonly code: ErrorCode;
  /** The HTTP status, when the error came from the gateway over HTTP. */
  readonly status: number | null;

  constructor(code: ErrorCode, message: string, status: number | null = null) {
    super(message);
    this.name = 'BackendError';
    this.code = code;
    this.status = status;
  }

  static from(error: unknown): BackendError {
    if (error instanceof BackendError) return error;
    if (isErrorBody(error)) return new BackendError(error.code, error.message);
    if (error instanceof Error) return new BackendError('unavailable', error.message);
    return new BackendError('unknown', String(error));
  }

  toJSON(): ErrorBody {
    return { code: this.code, message: this.message };
  }
}

/**
 * Whether trying again later may succeed (no answer from the gateway, a busy or failing
 * gateway), as opposed to a request it refused for good: the client core's
 * `Error::is_transient`, checked against tests/fixtures/transient_errors.json.
 */
export function isTransient(error: { status: number | null; code: ErrorCode }): boolean {
  const { status, code } = error;
  // No HTTP status: the gateway was not reached (`unavailable`) or the input was refused here.
  if (status === null) return code === 'unavailable';
  return status >= 500 || status === 429 || status === 408 || code === 'unavailable' || code === 'rate_limited';
}

export function isErrorBody(value: unknown): value is ErrorBody {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { code?: unknown }).code === 'string' &&
    typeof (value as { message?: unknown }).message === 'string'
  );
}
