// Pure list operations on a thread's messages (oldest first), used by the store. Status only
// moves forward (`reduce`), whichever order the updates arrive in; an explicit retry is the one
// way back from `failed` to `queued`, and it goes through `replaceIn`.

import type { ChatMessage } from './backend/types';
import { reduce } from './status';

export function mergeMessage(old: ChatMessage, next: ChatMessage): ChatMessage {
  return {
    ...old,
    ...next,
    key: old.key,
    status: reduce(old.status, next.status),
    failure_reason: next.failure_reason ?? old.failure_reason ?? null,
    created_at: old.created_at,
  };
}

function indexOfKey(list: readonly ChatMessage[], key: string): number {
  for (let i = list.length - 1; i >= 0; i--) if (list[i].key === key) return i;
  return -1;
}

function indexOfId(list: readonly ChatMessage[], id: string): number {
  for (let i = list.length - 1; i >= 0; i--) if (list[i].id === id) return i;
  return -1;
}

/** Adds or merges `m`, keeping the list in time order. Returns the same list when nothing changed. */
export function upsertInto(list: readonly ChatMessage[], m: ChatMessage): ChatMessage[] {
  let i = indexOfKey(list, m.key);
  if (i < 0 && m.id) i = indexOfId(list, m.id);
  if (i >= 0) {
    const merged = mergeMessage(list[i], m);
    const out = list.slice();
    out[i] = merged;
    return out;
  }
  let at = list.length;
  while (at > 0 && list[at - 1].created_at > m.created_at) at--;
  const out = list.slice();
  out.splice(at, 0, m);
  return out;
}

/** Replaces a message wholesale (a retry resets `failed` to `queued`). */
export function replaceIn(list: readonly ChatMessage[], m: ChatMessage): ChatMessage[] {
  const i = indexOfKey(list, m.key);
  if (i < 0) return upsertInto(list, m);
  const out = list.slice();
  out[i] = m;
  return out;
}

export function removeFrom(list: readonly ChatMessage[], key: string | null, id: string | null): ChatMessage[] {
  let i = key ? indexOfKey(list, key) : -1;
  if (i < 0 && id) i = indexOfId(list, id);
  if (i < 0) return list as ChatMessage[];
  const out = list.slice();
  out.splice(i, 1);
  return out;
}

/** Puts an older page (newest first, as backends return it) in front of the list. */
export function prependPage(list: readonly ChatMessage[], pageNewestFirst: readonly ChatMessage[]): ChatMessage[] {
  const have = new Set(list.map((m) => m.key));
  const older = pageNewestFirst.filter((m) => !have.has(m.key)).reverse();
  return [...older, ...list];
}
