import { flushSync, mount, unmount } from 'svelte';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AppState, CONVERSATION_PAGE } from '../../src/lib/app.svelte';
import type { Backend, ChatConversation } from '../../src/lib/backend/types';
import ConversationList from '../../src/lib/components/ConversationList.svelte';
import { compareConversations, insertSorted, sortConversations } from '../../src/lib/conversations';
import { Drafts } from '../../src/lib/drafts';
import { msg } from './helpers';

/** `n` conversations as the shell's cache pages them: newest first, `local_id` descending. */
function cache(n: number): ChatConversation[] {
  const base = Date.parse('2025-03-03T10:00:00Z');
  return Array.from({ length: n }, (_, i) => {
    const at = new Date(base - Math.floor(i / 2) * 60_000).toISOString();
    const peer = `+1206555${String(i).padStart(4, '0')}`;
    return {
      id: null,
      local_id: n - i,
      peer,
      name: null,
      conversation_name: null,
      archived: false,
      muted_until: null,
      last_message: msg({ key: `m${i}`, peer, body: `text ${i}`, created_at: at, updated_at: at }),
      unread: i % 7 === 0 ? 1 : 0,
      updated_at: at,
    };
  });
}

/** A backend serving `list` in keyset pages, recording each call's cursor. */
function fakeBackend(list: ChatConversation[]) {
  const calls: (string | null)[] = [];
  const backend = {
    capabilities: { proxy: false, modem: false, notifications: false, kind: 'web' },
    subscribe: () => () => {},
    contacts: async () => [],
    search: async () => [],
    conversations: vi.fn(async (before: ChatConversation | null, limit: number) => {
      calls.push(before?.peer ?? null);
      const from = before ? list.findIndex((c) => compareConversations(c, before) > 0) : 0;
      return from < 0 ? [] : list.slice(from, from + limit).map((c) => ({ ...c }));
    }),
  } as unknown as Backend;
  return { backend, calls };
}

function memoryDrafts(): Drafts {
  const data = new Map<string, string>();
  return new Drafts({ getItem: (k) => data.get(k) ?? null, setItem: (k, v) => void data.set(k, v) });
}

describe('the list order', () => {
  it('sorts newest first, then by the cache id, and reads times with any fraction digits', () => {
    const a = { ...cache(1)[0], peer: 'a', local_id: 1, updated_at: '2025-03-03T10:00:05Z' };
    const b = { ...a, peer: 'b', local_id: 2, updated_at: '2025-03-03T10:00:05.120Z' };
    const c = { ...a, peer: 'c', local_id: 3, updated_at: '2025-03-03T10:00:05Z' };
    expect(sortConversations([a, b, c]).map((x) => x.peer)).toEqual(['b', 'c', 'a']);
    expect(insertSorted([b, a], c).map((x) => x.peer)).toEqual(['b', 'c', 'a']);
  });
});

describe('AppState pages the conversation list', () => {
  it('loads one page, then the next after the last shown, until a short page', async () => {
    const list = cache(CONVERSATION_PAGE * 2 + 5);
    const { backend, calls } = fakeBackend(list);
    const app = new AppState(backend, memoryDrafts());
    await app.refreshConversations();
    expect(app.conversations).toHaveLength(CONVERSATION_PAGE);
    expect(app.conversationsComplete).toBe(false);
    await app.loadMoreConversations();
    await app.loadMoreConversations();
    await app.loadMoreConversations(); // complete: no call
    expect(app.conversations.map((c) => c.peer)).toEqual(list.map((c) => c.peer));
    expect(app.conversationsComplete).toBe(true);
    expect(calls).toEqual([null, list[CONVERSATION_PAGE - 1].peer, list[CONVERSATION_PAGE * 2 - 1].peer]);
  });

  it('moves a changed conversation up, and leaves one beyond the loaded pages to paging', async () => {
    const list = cache(CONVERSATION_PAGE * 2);
    const { backend } = fakeBackend(list);
    const app = new AppState(backend, memoryDrafts());
    await app.refreshConversations();
    // An old conversation gets a new message: it joins the top.
    const old = { ...list[CONVERSATION_PAGE + 3], updated_at: '2025-03-04T00:00:00Z' };
    app.onEvent({ type: 'conversation_changed', conversation: old });
    expect(app.conversations[0].peer).toBe(old.peer);
    expect(app.conversations).toHaveLength(CONVERSATION_PAGE + 1);
    // A name change on one not loaded yet: not inserted out of order (the cursor stays right).
    const beyond = { ...list[CONVERSATION_PAGE + 10], name: 'Zed' };
    app.onEvent({ type: 'conversation_changed', conversation: beyond });
    expect(app.conversation(beyond.peer)).toBeUndefined();
    await app.loadMoreConversations();
    const peers = app.conversations.map((c) => c.peer);
    expect(new Set(peers).size).toBe(peers.length);
    expect(peers).toHaveLength(list.length);
  });

  it('keeps a thread opened from search that lies beyond the loaded pages', async () => {
    const list = cache(CONVERSATION_PAGE * 3);
    const { backend } = fakeBackend(list);
    Object.assign(backend, { messages: async () => [], markRead: async () => {} });
    const app = new AppState(backend, memoryDrafts());
    await app.refreshConversations();
    const far = list[list.length - 1];
    await app.open(far.peer, far);
    expect(app.conversation(far.peer)?.peer).toBe(far.peer);
    expect(app.conversations.some((c) => c.peer === far.peer)).toBe(false);
  });
});

describe('ConversationList', () => {
  let mounted: ReturnType<typeof mount> | null = null;
  afterEach(() => {
    if (mounted) unmount(mounted);
    mounted = null;
    document.body.innerHTML = '';
  });

  it('puts only the rows in view in the DOM, labelled for screen readers', async () => {
    const list = cache(CONVERSATION_PAGE * 4);
    const { backend } = fakeBackend(list);
    const app = new AppState(backend, memoryDrafts());
    await app.refreshConversations();
    await app.loadMoreConversations();
    await app.loadMoreConversations();
    const target = document.createElement('div');
    document.body.appendChild(target);
    mounted = mount(ConversationList, { target, props: { app } });
    flushSync();
    const rows = target.querySelectorAll('[data-testid="conversation"]');
    expect(app.conversations.length).toBe(CONVERSATION_PAGE * 3);
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.length).toBeLessThan(30);
    const ul = target.querySelector('ul.rows')!;
    expect(ul.getAttribute('aria-label')).toMatch(/^Conversations, \d+ unread$/);
    const li = rows[0].closest('li')!;
    expect(li.getAttribute('aria-posinset')).toBe('1');
    expect(li.getAttribute('aria-setsize')).toBe('-1');
    expect(rows[0].querySelector('.count')?.textContent).toBe('1 unread');
  });

  it('announces the unread total of every conversation, not only the loaded pages', async () => {
    const list = cache(CONVERSATION_PAGE * 3);
    const { backend } = fakeBackend(list);
    // The cache counts them all; the first page alone holds far fewer.
    (backend as unknown as { unreadTotal: () => Promise<number> }).unreadTotal = async () => 1234;
    const app = new AppState(backend, memoryDrafts());
    await app.refreshConversations();
    await vi.waitFor(() => expect(app.unreadTotal).toBe(1234));
    const target = document.createElement('div');
    document.body.appendChild(target);
    mounted = mount(ConversationList, { target, props: { app } });
    flushSync();
    expect(target.querySelector('ul.rows')!.getAttribute('aria-label')).toBe('Conversations, 1234 unread');
  });

  it('moves focus with the arrow keys and Home/End', async () => {
    const list = cache(10);
    const { backend } = fakeBackend(list);
    const app = new AppState(backend, memoryDrafts());
    await app.refreshConversations();
    const target = document.createElement('div');
    document.body.appendChild(target);
    mounted = mount(ConversationList, { target, props: { app } });
    flushSync();
    const button = (i: number) => target.querySelector<HTMLButtonElement>(`button[data-index="${i}"]`)!;
    const key = async (k: string) => {
      document.activeElement!.dispatchEvent(new KeyboardEvent('keydown', { key: k, bubbles: true }));
      await new Promise((r) => setTimeout(r, 0));
      flushSync();
    };
    button(0).focus();
    await key('ArrowDown');
    expect(document.activeElement).toBe(button(1));
    await key('End');
    expect(document.activeElement).toBe(button(9));
    await key('ArrowUp');
    expect(document.activeElement).toBe(button(8));
    await key('Home');
    expect(document.activeElement).toBe(button(0));
  });
});
