// The UI's copies of Rust rules, run over fixtures the Rust tests write from the rules
// themselves (crates/api/tests/ui_rule_fixtures.rs, crates/client/tests/ui_rule_fixtures.rs):
// any difference between the two homes of a rule fails here.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ErrorCode } from '../../src/lib/bindings/ErrorCode';
import type { SendStatus } from '../../src/lib/bindings/SendStatus';
import { isTransient } from '../../src/lib/backend/types';
import { isEmergencyNumber } from '../../src/lib/emergency';
import { advance, isFinal } from '../../src/lib/status';

function fixture<T>(name: string): { cases: T[] } {
  return JSON.parse(readFileSync(resolve(process.cwd(), 'tests/fixtures', name), 'utf8')) as { cases: T[] };
}

describe('rules shared with the Rust crates', () => {
  it('advance and isFinal answer every (current, incoming) pair as SendStatus::advance does', () => {
    const { cases } = fixture<{ current: SendStatus; incoming: SendStatus; advance: SendStatus | null; is_final: boolean }>(
      'send_status.json',
    );
    expect(cases).toHaveLength(25);
    for (const c of cases) {
      expect({ pair: [c.current, c.incoming], advance: advance(c.current, c.incoming) }).toEqual({
        pair: [c.current, c.incoming],
        advance: c.advance,
      });
      expect(isFinal(c.current)).toBe(c.is_final);
    }
  });

  it('isTransient answers every error code and HTTP status as the client core does', () => {
    const { cases } = fixture<{ status: number | null; code: ErrorCode; transient: boolean }>('transient_errors.json');
    expect(cases.length).toBeGreaterThan(400);
    const wrong = cases.filter((c) => isTransient(c) !== c.transient);
    expect(wrong).toEqual([]);
  });
});

describe('emergency numbers (airtext-sms)', () => {
  it('isEmergencyNumber answers every input as is_emergency_number does', () => {
    const { cases } = fixture<{ input: string; emergency: boolean }>('emergency_numbers.json');
    expect(cases.length).toBeGreaterThan(500);
    const wrong = cases.filter((c) => isEmergencyNumber(c.input) !== c.emergency);
    expect(wrong).toEqual([]);
  });
});
