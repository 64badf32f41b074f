import { describe, expect, it } from 'vitest';
import type { SendStatus } from '../../src/lib/bindings/SendStatus';
import { advance, isFinal, reduce } from '../../src/lib/status';

const ALL: SendStatus[] = ['queued', 'sending', 'sent', 'delivered', 'failed'];

describe('SendStatus reducer (airtext-api semantics)', () => {
  it('moves forward along queued → sending → sent → delivered', () => {
    expect(advance('queued', 'sending')).toBe('sending');
    expect(advance('queued', 'delivered')).toBe('delivered');
    expect(advance('sending', 'sent')).toBe('sent');
    expect(advance('sent', 'delivered')).toBe('delivered');
  });

  it('never moves backwards, and ignores repeats', () => {
    for (const a of ALL) expect(advance(a, a)).toBeNull();
    expect(advance('sent', 'queued')).toBeNull();
    expect(advance('delivered', 'sent')).toBeNull();
    expect(advance('sending', 'queued')).toBeNull();
  });

  it('lets failed follow anything short of delivered, and nothing follow failed', () => {
    expect(advance('queued', 'failed')).toBe('failed');
    expect(advance('sending', 'failed')).toBe('failed');
    expect(advance('sent', 'failed')).toBe('failed');
    expect(advance('delivered', 'failed')).toBeNull();
    for (const s of ALL) expect(advance('failed', s)).toBeNull();
  });

  it('reaches the same end whatever order reports arrive in', () => {
    const reports: SendStatus[] = ['sent', 'queued', 'delivered', 'sending', 'sent'];
    expect(reports.reduce(reduce, 'queued' as SendStatus)).toBe('delivered');
    expect([...reports].reverse().reduce(reduce, 'queued' as SendStatus)).toBe('delivered');
  });

  it('knows the final statuses', () => {
    expect(ALL.filter(isFinal)).toEqual(['delivered', 'failed']);
  });
});
