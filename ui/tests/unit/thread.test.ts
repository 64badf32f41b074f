import { describe, expect, it } from 'vitest';
import { prependPage, removeFrom, replaceIn, upsertInto } from '../../src/lib/thread';
import { msg } from './helpers';

describe('thread list operations', () => {
  it('merges updates by key and never moves status backwards', () => {
    let list = upsertInto([], msg({ key: 'a', status: 'queued' }));
    list = upsertInto(list, msg({ key: 'a', id: 'srv-a', status: 'delivered' }));
    list = upsertInto(list, msg({ key: 'a', id: 'srv-a', status: 'sent' }));
    expect(list).toHaveLength(1);
    expect(list[0].status).toBe('delivered');
    expect(list[0].id).toBe('srv-a');
  });

  it('finds a message by server id when the key differs', () => {
    const list = upsertInto([msg({ key: '7', id: 'srv', status: 'sent' })], msg({ key: 'other', id: 'srv', status: 'delivered' }));
    expect(list.map((m) => [m.key, m.status])).toEqual([['7', 'delivered']]);
  });

  it('inserts in time order', () => {
    let list = upsertInto([], msg({ key: 'b', created_at: '2025-01-02T00:00:00Z' }));
    list = upsertInto(list, msg({ key: 'c', created_at: '2025-01-03T00:00:00Z' }));
    list = upsertInto(list, msg({ key: 'a', created_at: '2025-01-01T00:00:00Z' }));
    expect(list.map((m) => m.key)).toEqual(['a', 'b', 'c']);
  });

  it('a retry replaces a failed message wholesale (back to queued)', () => {
    const list = [msg({ key: 'a', status: 'failed', failure_reason: 'no route' })];
    const next = replaceIn(list, msg({ key: 'a', status: 'queued' }));
    expect(next[0].status).toBe('queued');
    expect(upsertInto(list, msg({ key: 'a', status: 'queued' }))[0].status).toBe('failed');
  });

  it('prepends an older page (newest first) without duplicates, and removes by key or id', () => {
    const list = [msg({ key: 'c' }), msg({ key: 'd' })];
    const next = prependPage(list, [msg({ key: 'c' }), msg({ key: 'b' }), msg({ key: 'a' })]);
    expect(next.map((m) => m.key)).toEqual(['a', 'b', 'c', 'd']);
    expect(removeFrom(next, 'b', null).map((m) => m.key)).toEqual(['a', 'c', 'd']);
    const withId = [msg({ key: 'x', id: 'srv-x' })];
    expect(removeFrom(withId, null, 'srv-x')).toEqual([]);
    expect(removeFrom(withId, 'nope', null)).toBe(withId);
  });
});
