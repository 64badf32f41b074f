// The app's state (Svelte 5 runes): session, conversation list, open threads, contacts,
// connection and sync, drafts. Components read it and call its methods; it talks only to the
// `Backend`. Large lists are `$state.raw` and replaced, never deeply proxied (50,000 messages).

import {
  BackendError,
  type Backend,
  type BackendEvent,
  type ChatConversation,
  type ChatMessage,
  type ConnectionState,
  type Contact,
  type Me,
  type PathChoice,
  type TokenStorage,
} from './backend/types';
import { compareConversations, insertSorted, sortConversations } from './conversations';
import { Drafts } from './drafts';
import { emergencyMessage, isEmergencyNumber } from './emergency';
import { prependPage, removeFrom, replaceIn, upsertInto } from './thread';

export const PAGE = 100;
/** Conversations per page of the list (a few screenfuls; more load as it scrolls). */
export const CONVERSATION_PAGE = 50;

export class ThreadState {
  messages: ChatMessage[] = $state.raw([]);
  loading = $state(false);
  /** No older messages remain. */
  complete = $state(false);
  error: BackendError | null = $state(null);
  constructor(readonly peer: string) {}
}

export type Screen = 'chats' | 'settings' | 'contacts' | 'new';

export class AppState {
  phase: 'loading' | 'onboarding' | 'app' = $state('loading');
  me: Me | null = $state(null);
  /**
   * The list as far as it has been paged in, most recently updated first. The cache may hold
   * many more (10,000+): `loadMoreConversations` pages on as the list scrolls.
   */
  conversations: ChatConversation[] = $state.raw([]);
  /** Every conversation is in `conversations` (the last page came back short). */
  conversationsComplete = $state(false);
  loadingConversations = $state(false);
  /**
   * Unread texts in every conversation, loaded or not (the backend counts them); null until
   * known, or when the backend could not say (then the loaded pages' sum stands in).
   */
  unreadTotal: number | null = $state(null);
  private unreadAsked = 0;
  private unreadTimer: ReturnType<typeof setTimeout> | null = null;
  /** Where the list was scrolled (restored when it is shown again; not reactive). */
  listScrollTop = 0;
  /** Conversations opened from search that lie beyond the pages loaded so far. */
  private outside: Map<string, ChatConversation> = $state.raw(new Map());
  private byPeer = $derived(new Map(this.conversations.map((c) => [c.peer, c])));
  contacts: Map<string, Contact> = $state.raw(new Map());
  selected: string | null = $state(null);
  screen: Screen = $state('chats');
  connection: ConnectionState = $state('offline');
  connectionError: string | null = $state(null);
  sync = $state({ applied: 0, remaining: 0 as number | null, cursor: 0 });
  /** A short message for a live region ("Message from …", "Contact saved"). */
  announcement = $state('');
  error: BackendError | null = $state(null);
  /**
   * A send refused in a way the user must act on (a text to an emergency number): shown as an
   * alert by the thread's composer until dismissed or another thread is opened.
   */
  refusal: { peer: string; message: string } | null = $state(null);
  /** Set after a sign-in whose token could not go into the OS keyring (shown once). */
  tokenNotice: TokenStorage | null = $state(null);
  readonly drafts: Drafts;
  private threads = new Map<string, ThreadState>();
  private unsubscribe: (() => void) | null = null;

  constructor(
    readonly backend: Backend,
    drafts?: Drafts,
  ) {
    this.drafts = drafts ?? new Drafts();
  }

  async start(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = this.backend.subscribe((e) => this.onEvent(e));
    try {
      const me = await this.backend.restore();
      if (me) await this.enter(me);
      else this.phase = 'onboarding';
    } catch (e) {
      this.error = BackendError.from(e);
      this.phase = 'onboarding';
    }
  }

  /** After sign-in (or restore): load the list and show the app. */
  async enter(me: Me): Promise<void> {
    this.me = me;
    this.phase = 'app';
    await Promise.all([this.refreshConversations(), this.refreshContacts()]);
  }

  /** After a sign-in: tells the user once when the sign-in is not in the OS keyring. */
  async noticeTokenStorage(): Promise<void> {
    try {
      const storage = await this.backend.tokenStorage();
      this.tokenNotice = storage && storage.place !== 'keyring' ? storage : null;
    } catch {
      // nothing to tell
    }
  }

  /** (Re)loads the first page of the list. */
  async refreshConversations(): Promise<void> {
    this.loadingConversations = true;
    try {
      const page = await this.backend.conversations(null, CONVERSATION_PAGE);
      // Conversations that changed live while the page loaded merge in, where the page covers.
      let list = sortConversations(page);
      const complete = page.length < CONVERSATION_PAGE;
      const inPage = new Set(list.map((c) => c.peer));
      for (const c of this.conversations) {
        const last = list.at(-1);
        if (!inPage.has(c.peer) && (complete || (last && compareConversations(c, last) <= 0))) list = insertSorted(list, c);
      }
      this.conversations = list;
      this.conversationsComplete = complete;
      void this.refreshUnreadTotal();
    } catch (e) {
      this.error = BackendError.from(e);
    } finally {
      this.loadingConversations = false;
    }
  }

  /** The next page of the list (after the last one shown); nothing when all are loaded. */
  async loadMoreConversations(): Promise<void> {
    if (this.loadingConversations || this.conversationsComplete) return;
    const last = this.conversations.at(-1);
    if (!last) return this.refreshConversations();
    this.loadingConversations = true;
    try {
      const page = await this.backend.conversations(last, CONVERSATION_PAGE);
      const known = this.byPeer;
      // A conversation already listed moved up by a live change: the listed copy is newer.
      const fresh = page.filter((c) => !known.has(c.peer));
      if (fresh.length > 0) this.conversations = [...this.conversations, ...fresh];
      if (page.length < CONVERSATION_PAGE) this.conversationsComplete = true;
      if (fresh.length > 0 && this.outside.size > 0) {
        const next = new Map(this.outside);
        for (const c of fresh) next.delete(c.peer);
        this.outside = next;
      }
    } catch (e) {
      this.error = BackendError.from(e);
    } finally {
      this.loadingConversations = false;
    }
  }

  /** Asks the backend for the unread total; a slower earlier answer never overwrites a later one. */
  async refreshUnreadTotal(): Promise<void> {
    const asked = ++this.unreadAsked;
    try {
      const total = await this.backend.unreadTotal();
      if (asked === this.unreadAsked) this.unreadTotal = total;
    } catch {
      // the loaded pages' sum stands in
      if (asked === this.unreadAsked) this.unreadTotal = null;
    }
  }

  /** One refresh of the unread total for a burst of changes (a sync applies thousands). */
  private unreadTotalSoon(): void {
    if (this.unreadTimer !== null) return;
    this.unreadTimer = setTimeout(() => {
      this.unreadTimer = null;
      void this.refreshUnreadTotal();
    }, 300);
  }

  async refreshContacts(): Promise<void> {
    try {
      this.contacts = new Map((await this.backend.contacts()).map((c) => [c.address, c]));
    } catch {
      // the list still works without names
    }
  }

  async refreshMe(): Promise<void> {
    this.me = await this.backend.me();
  }

  async signOut(): Promise<void> {
    await this.backend.signOut();
    this.reset();
  }

  private reset(): void {
    this.me = null;
    this.conversations = [];
    this.conversationsComplete = false;
    this.unreadTotal = null;
    this.unreadAsked++;
    if (this.unreadTimer !== null) clearTimeout(this.unreadTimer);
    this.unreadTimer = null;
    this.listScrollTop = 0;
    this.outside = new Map();
    this.threads.clear();
    this.selected = null;
    this.screen = 'chats';
    this.phase = 'onboarding';
  }

  conversation(peer: string): ChatConversation | undefined {
    return this.byPeer.get(peer) ?? this.outside.get(peer);
  }

  thread(peer: string): ThreadState {
    let t = this.threads.get(peer);
    if (!t) {
      t = new ThreadState(peer);
      this.threads.set(peer, t);
    }
    return t;
  }

  /**
   * Opens a thread (loading its newest page the first time). `known` is the conversation as a
   * search hit had it, for a thread beyond the pages of the list loaded so far.
   */
  async open(peer: string, known?: ChatConversation): Promise<void> {
    if (known && known.peer === peer && !this.conversation(peer)) {
      this.outside = new Map(this.outside).set(peer, known);
    }
    this.selected = peer;
    this.screen = 'chats';
    // Told before typing: no text goes to an emergency number.
    if (isEmergencyNumber(peer)) this.refusal = { peer, message: emergencyMessage(peer) };
    else if (this.refusal?.peer !== peer) this.refusal = null;
    const t = this.thread(peer);
    if (t.messages.length === 0 && !t.complete) await this.loadOlder(peer);
    await this.markRead(peer);
  }

  close(): void {
    this.selected = null;
  }

  async loadOlder(peer: string): Promise<void> {
    const t = this.thread(peer);
    if (t.loading || t.complete) return;
    t.loading = true;
    t.error = null;
    try {
      const before = t.messages[0] ?? null;
      const page = await this.backend.messages(peer, before, PAGE);
      if (before) {
        t.messages = prependPage(t.messages, page);
      } else {
        // Messages that arrived live while the page loaded merge in.
        let list = [...page].reverse();
        for (const m of t.messages) list = upsertInto(list, m);
        t.messages = list;
      }
      if (page.length < PAGE) t.complete = true;
    } catch (e) {
      t.error = BackendError.from(e);
    } finally {
      t.loading = false;
    }
  }

  async markRead(peer: string): Promise<void> {
    const conv = this.conversation(peer);
    const t = this.threads.get(peer);
    if (!conv || conv.unread === 0 || !t) return;
    const lastInbound = [...t.messages].reverse().find((m) => m.direction === 'inbound' && m.id);
    if (!lastInbound) return;
    this.patchConversation({ ...conv, unread: 0 });
    if (this.unreadTotal !== null) this.unreadTotal = Math.max(0, this.unreadTotal - conv.unread);
    try {
      await this.backend.markRead(peer, lastInbound);
    } catch {
      // the next open marks it again
    }
    void this.refreshUnreadTotal();
  }

  /** Sends `body` to `peer`; null when nothing was sent (the text stays in the composer). */
  async send(peer: string, body: string): Promise<ChatMessage | null> {
    const text = body.replace(/\s+$/, '');
    if (!text.trim()) return null;
    if (isEmergencyNumber(peer)) {
      this.refusal = { peer, message: emergencyMessage(peer) };
      return null;
    }
    try {
      const m = await this.backend.send(peer, text);
      this.addMessage(m);
      this.drafts.set(peer, '');
      return m;
    } catch (e) {
      const err = BackendError.from(e);
      if (err.code === 'emergency_number') this.refusal = { peer, message: err.message };
      else this.error = err;
      return null;
    }
  }

  dismissRefusal(): void {
    this.refusal = null;
  }

  async retry(m: ChatMessage): Promise<void> {
    try {
      const again = await this.backend.retry(m);
      const t = this.thread(m.peer);
      t.messages = again.key === m.key ? replaceIn(t.messages, again) : upsertInto(removeFrom(t.messages, m.key, m.id), again);
    } catch (e) {
      this.error = BackendError.from(e);
    }
  }

  async deleteMessage(m: ChatMessage): Promise<void> {
    try {
      await this.backend.deleteMessage(m);
      const t = this.thread(m.peer);
      t.messages = removeFrom(t.messages, m.key, m.id);
    } catch (e) {
      this.error = BackendError.from(e);
    }
  }

  async setPath(peer: string, path: PathChoice, fallback?: boolean): Promise<void> {
    const existing = this.contacts.get(peer);
    try {
      const c = await this.backend.setContact(peer, path, fallback ?? existing?.fallback ?? false, existing?.name ?? null);
      this.applyContact(c);
      this.announcement = `Path for ${c.name ?? peer} set to ${path}`;
    } catch (e) {
      this.error = BackendError.from(e);
    }
  }

  private applyContact(c: Contact): void {
    const next = new Map(this.contacts);
    next.set(c.address, c);
    this.contacts = next;
    const conv = this.conversation(c.address);
    if (conv && conv.name !== c.name) this.patchConversation({ ...conv, name: c.name });
  }

  /**
   * Puts a changed conversation where it now sorts. Beyond the last page loaded it is left
   * out (paging reaches it in order), unless it was opened from search.
   */
  private patchConversation(c: ChatConversation): void {
    const others = this.byPeer.has(c.peer) ? this.conversations.filter((x) => x.peer !== c.peer) : this.conversations;
    const last = others.at(-1);
    if (this.conversationsComplete || !last || compareConversations(c, last) <= 0) {
      this.conversations = insertSorted(others, c);
      if (this.outside.has(c.peer)) {
        const next = new Map(this.outside);
        next.delete(c.peer);
        this.outside = next;
      }
    } else {
      if (others !== this.conversations) this.conversations = others;
      if (this.outside.has(c.peer) || this.selected === c.peer) this.outside = new Map(this.outside).set(c.peer, c);
    }
  }

  private addMessage(m: ChatMessage): void {
    const t = this.threads.get(m.peer);
    if (t) t.messages = upsertInto(t.messages, m);
  }

  onEvent(e: BackendEvent): void {
    switch (e.type) {
      case 'message_added':
      case 'message_updated': {
        this.addMessage(e.message);
        if (e.type === 'message_added' && e.message.direction === 'inbound') {
          this.announcement = `New message from ${this.conversation(e.message.peer)?.name ?? e.message.peer}`;
        }
        break;
      }
      case 'send_refused': {
        this.refusal = { peer: e.peer, message: e.error.message };
        break;
      }
      case 'message_deleted': {
        for (const t of this.threads.values()) {
          if (e.peer && t.peer !== e.peer) continue;
          const next = removeFrom(t.messages, e.key, e.id);
          if (next !== t.messages) t.messages = next;
        }
        break;
      }
      case 'conversation_changed': {
        const c = { ...e.conversation };
        this.unreadTotalSoon();
        // A thread on screen is read as it arrives.
        const visible = this.selected === c.peer && this.phase === 'app' && this.screen === 'chats' &&
          (typeof document === 'undefined' || document.visibilityState !== 'hidden');
        if (visible && c.unread > 0) {
          this.patchConversation(c);
          void this.markRead(c.peer);
        } else {
          this.patchConversation(c);
        }
        break;
      }
      case 'contact_changed':
        this.applyContact(e.contact);
        break;
      case 'sync_progress':
        this.sync = { applied: e.applied, remaining: e.remaining, cursor: e.cursor };
        break;
      case 'connection_changed':
        this.connection = e.state;
        this.connectionError = e.error ?? null;
        break;
      case 'signed_out':
        this.reset();
        this.error = new BackendError('unauthorized', 'This device was signed out. Sign in again to keep texting.');
        break;
      case 'open_thread':
        void this.open(e.peer);
        break;
    }
  }
}
