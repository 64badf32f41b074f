import { describe, expect, it } from 'vitest';
import {
  addressKind,
  buildRows,
  dayLabel,
  formatAddress,
  initials,
  pathInfo,
  planLabel,
  planSpoken,
  ucs2Hint,
} from '../../src/lib/format';
import { msg } from './helpers';


describe('composer counter', () => {
  it('reads "GSM-7 · 2 SMS · 87 left"', () => {
    const plan = { encoding: 'gsm7', segments: 2, chars_left: 87, parts: ['a', 'b'], ucs2_characters: [] } as const;
    expect(planLabel({ ...plan, parts: [...plan.parts], ucs2_characters: [] })).toBe('GSM-7 · 2 SMS · 87 left');
    expect(planSpoken({ ...plan, parts: [], ucs2_characters: [] })).toBe('GSM-7 encoding, 2 text messages, 87 characters left');
  });

  it('names the characters that force UCS-2, with their code points', () => {
    const hint = ucs2Hint({ encoding: 'ucs2', segments: 1, chars_left: 65, parts: [], ucs2_characters: ['😀'] });
    expect(hint).toContain('“😀” (U+1F600)');
    expect(hint).toContain('makes this a UCS-2 text');
    expect(ucs2Hint({ encoding: 'gsm7', segments: 1, chars_left: 150, parts: [], ucs2_characters: [] })).toBeNull();
    const many = ucs2Hint({ encoding: 'ucs2', segments: 1, chars_left: 1, parts: [], ucs2_characters: ['a', 'b', 'c', 'd', 'e'] });
    expect(many).toContain('and 2 more make');
  });
});

describe('day grouping', () => {
  it('puts a separator before each day and groups runs from the same side', () => {
    const rows = buildRows(
      [
        msg({ key: 'a', created_at: '2025-03-03T09:00:00', direction: 'inbound' }),
        msg({ key: 'b', created_at: '2025-03-03T09:01:00', direction: 'inbound' }),
        msg({ key: 'c', created_at: '2025-03-03T09:02:00' }),
        msg({ key: 'd', created_at: '2025-03-04T09:00:00' }),
      ],
      new Date('2025-03-04T12:00:00'),
    );
    expect(rows.map((r) => r.key)).toEqual(['day:2025-03-03', 'a', 'b', 'c', 'day:2025-03-04', 'd']);
    expect(rows.map((r) => (r.kind === 'day' ? r.label : `${r.first ? 'F' : '-'}${r.last ? 'L' : '-'}`))).toEqual([
      'Yesterday',
      'F-',
      '-L',
      'FL',
      'Today',
      'FL',
    ]);
  });

  it('labels older days by date', () => {
    expect(dayLabel('2024-01-01T12:00:00', new Date('2025-03-04T12:00:00'))).toMatch(/2024/);
  });
});

describe('path badge text', () => {
  it('says which path a message took', () => {
    expect(pathInfo('in_network', 'cloud')?.label).toBe('In-network');
    expect(pathInfo('carrier', 'cloud')?.label).toBe('Cloud · carrier');
    expect(pathInfo('cellular', 'cellular')?.label).toBe('Cellular');
    expect(pathInfo(null, 'cellular')?.kind).toBe('cellular');
    expect(pathInfo(null, 'cloud')).toBeNull();
  });
});

describe('addresses', () => {
  it('formats US numbers and leaves others alone', () => {
    expect(formatAddress('+14155550100')).toBe('(415) 555-0100');
    expect(formatAddress('+442079460000')).toBe('+442079460000');
    expect(formatAddress('@alice')).toBe('@alice');
  });

  it('classifies what was typed for a new conversation', () => {
    expect(addressKind('(415) 555-0100')).toBe('phone');
    expect(addressKind('+44 20 7946 0000')).toBe('phone');
    expect(addressKind('@alice')).toBe('username');
    expect(addressKind('alice@example.com')).toBe('email');
    expect(addressKind('hello')).toBeNull();
    expect(addressKind('')).toBeNull();
  });

  it('makes initials', () => {
    expect(initials({ name: 'Dana Q Phone', peer: 'x' })).toBe('DP');
    expect(initials({ name: null, peer: '@bob' })).toBe('BO');
    expect(initials({ name: null, peer: '+14155550100' })).toBe('#');
  });
});
