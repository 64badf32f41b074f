// The conversation list's order, shared by the app state and the web backend (which pages its
// in-memory cache in the same order the Tauri shell pages the SQLite cache).

import type { ChatConversation } from './backend/types';

/**
 * The list's order: most recently updated first; at equal times the cache's id (Tauri), then
 * the peer — the order the backends page in.
 */
export function compareConversations(a: ChatConversation, b: ChatConversation): number {
  if (a.updated_at !== b.updated_at) {
    // RFC 3339 with a varying number of fraction digits ("…:05Z", "…:05.120Z") does not sort
    // as text.
    const d = Date.parse(b.updated_at) - Date.parse(a.updated_at);
    if (d !== 0 && !Number.isNaN(d)) return d;
    if (Number.isNaN(d)) return a.updated_at < b.updated_at ? 1 : -1;
  }
  if (a.local_id !== undefined && b.local_id !== undefined && a.local_id !== b.local_id) return b.local_id - a.local_id;
  return a.peer < b.peer ? 1 : a.peer > b.peer ? -1 : 0;
}

export function sortConversations(list: ChatConversation[]): ChatConversation[] {
  return list.slice().sort(compareConversations);
}

/** `list` (sorted) with `c` inserted where it sorts; `list` is not changed. */
export function insertSorted(list: readonly ChatConversation[], c: ChatConversation): ChatConversation[] {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compareConversations(list[mid], c) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return [...list.slice(0, lo), c, ...list.slice(lo)];
}
