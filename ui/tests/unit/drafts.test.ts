import { describe, expect, it } from 'vitest';
import { Drafts } from '../../src/lib/drafts';

function memory(): Pick<Storage, 'getItem' | 'setItem'> & { data: Map<string, string> } {
  const data = new Map<string, string>();
  return { data, getItem: (k) => data.get(k) ?? null, setItem: (k, v) => void data.set(k, v) };
}

describe('drafts per thread', () => {
  it('keeps one draft per peer and survives a reload', () => {
    const store = memory();
    const a = new Drafts(store);
    a.set('+1', 'hello');
    a.set('@bob', 'yo\nthere');
    expect(a.get('+1')).toBe('hello');
    const b = new Drafts(store);
    expect(b.get('@bob')).toBe('yo\nthere');
    expect(b.get('nobody')).toBe('');
  });

  it('forgets a draft cleared to whitespace', () => {
    const store = memory();
    const d = new Drafts(store);
    d.set('+1', 'x');
    d.set('+1', '   ');
    expect(d.has('+1')).toBe(false);
    expect(new Drafts(store).get('+1')).toBe('');
  });

  it('ignores corrupt storage', () => {
    const store = memory();
    store.data.set('airtext.drafts', '{nope');
    expect(new Drafts(store).get('+1')).toBe('');
  });
});
