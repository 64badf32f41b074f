// Display helpers: addresses, times, day separators, path and plan labels. No state.

import type { Route } from './bindings/Route';
import type { TextPlan } from './bindings/TextPlan';
import type { ChatConversation, ChatMessage, SendPath } from './backend/types';

/** `+14155550100` → `(415) 555-0100`; other addresses unchanged. */
export function formatAddress(address: string): string {
  const us = /^\+1(\d{3})(\d{3})(\d{4})$/.exec(address);
  if (us) return `(${us[1]}) ${us[2]}-${us[3]}`;
  return address;
}

export function displayName(c: Pick<ChatConversation, 'name' | 'peer'>): string {
  return c.name?.trim() || formatAddress(c.peer);
}

/** Initials for the avatar: two letters of a name, `#` for a number, `@` for a username. */
export function initials(c: Pick<ChatConversation, 'name' | 'peer'>): string {
  const name = c.name?.trim();
  if (name) {
    const words = name.split(/\s+/).filter(Boolean);
    return ((words[0]?.[0] ?? '') + (words.length > 1 ? words[words.length - 1][0] : '')).toUpperCase();
  }
  if (c.peer.startsWith('@')) return c.peer.slice(1, 3).toUpperCase();
  if (c.peer.includes('@')) return c.peer[0].toUpperCase();
  return '#';
}

const dayKeyCache = new Map<string, string>();

/** The local calendar day of an RFC 3339 time, `YYYY-MM-DD`. */
export function dayKey(iso: string): string {
  let key = dayKeyCache.get(iso);
  if (key === undefined) {
    const d = new Date(iso);
    key = `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
    if (dayKeyCache.size > 200_000) dayKeyCache.clear();
    dayKeyCache.set(iso, key);
  }
  return key;
}

function startOfDay(d: Date): number {
  return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
}

export function dayLabel(iso: string, now: Date = new Date()): string {
  const d = new Date(iso);
  const days = Math.round((startOfDay(now) - startOfDay(d)) / 86_400_000);
  if (days === 0) return 'Today';
  if (days === 1) return 'Yesterday';
  if (days > 1 && days < 7) return d.toLocaleDateString(undefined, { weekday: 'long' });
  return d.toLocaleDateString(undefined, {
    weekday: 'short',
    day: 'numeric',
    month: 'short',
    year: d.getFullYear() === now.getFullYear() ? undefined : 'numeric',
  });
}

export function timeOfDay(iso: string): string {
  return new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/** The conversation list's short time: a time today, a weekday this week, else a date. */
export function shortTime(iso: string, now: Date = new Date()): string {
  const d = new Date(iso);
  const days = Math.round((startOfDay(now) - startOfDay(d)) / 86_400_000);
  if (days === 0) return timeOfDay(iso);
  if (days > 0 && days < 7) return d.toLocaleDateString(undefined, { weekday: 'short' });
  return d.toLocaleDateString(undefined, { day: 'numeric', month: 'short' });
}

export type Row =
  | { kind: 'day'; key: string; label: string }
  | { kind: 'message'; key: string; message: ChatMessage; first: boolean; last: boolean };

/**
 * The thread's rows, oldest first: a day separator before each day's first message, and each
 * message marked first/last of a run from the same side (bubbles group visually).
 */
export function buildRows(messages: readonly ChatMessage[], now: Date = new Date()): Row[] {
  const rows: Row[] = [];
  let lastDay: string | null = null;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i];
    const day = dayKey(m.created_at);
    if (day !== lastDay) {
      rows.push({ kind: 'day', key: `day:${day}`, label: dayLabel(m.created_at, now) });
      lastDay = day;
    }
    const prev = messages[i - 1];
    const next = messages[i + 1];
    const first = !prev || prev.direction !== m.direction || dayKey(prev.created_at) !== day;
    const last = !next || next.direction !== m.direction || dayKey(next.created_at) !== day;
    rows.push({ kind: 'message', key: m.key, message: m, first, last });
  }
  return rows;
}

export interface PathInfo {
  label: string;
  short: string;
  kind: 'in_network' | 'carrier' | 'cellular';
  description: string;
}

/** What the path badge says for a message's route (or its path while the route is unknown). */
export function pathInfo(route: Route | null, path: SendPath | null): PathInfo | null {
  const kind = route ?? (path === 'cellular' ? 'cellular' : null);
  switch (kind) {
    case 'in_network':
      return { kind, label: 'In-network', short: 'Airtext', description: 'Sent within Airtext' };
    case 'carrier':
      return { kind, label: 'Cloud · carrier', short: 'Cloud', description: 'Sent through the cloud to a mobile carrier' };
    case 'cellular':
      return { kind, label: 'Cellular', short: 'Cellular', description: "Sent through this device's own cellular modem" };
    default:
      return null;
  }
}

export const ENCODING_LABEL = { gsm7: 'GSM-7', ucs2: 'UCS-2' } as const;

/** "GSM-7 · 2 SMS · 87 left" (the composer's counter). */
export function planLabel(plan: TextPlan): string {
  return `${ENCODING_LABEL[plan.encoding]} · ${plan.segments} SMS · ${plan.chars_left} left`;
}

/** The same, for screen readers. */
export function planSpoken(plan: TextPlan): string {
  const parts = plan.segments === 1 ? 'one text message' : `${plan.segments} text messages`;
  return `${ENCODING_LABEL[plan.encoding]} encoding, ${parts}, ${plan.chars_left} characters left`;
}

function codePoint(ch: string): string {
  return `U+${(ch.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
}

/** Names what forces UCS-2, or null for GSM-7 text. */
export function ucs2Hint(plan: TextPlan): string | null {
  if (plan.encoding !== 'ucs2' || plan.ucs2_characters.length === 0) return null;
  const shown = plan.ucs2_characters.slice(0, 3).map((c) => `“${c}” (${codePoint(c)})`);
  const more = plan.ucs2_characters.length > 3 ? ` and ${plan.ucs2_characters.length - 3} more` : '';
  const verb = plan.ucs2_characters.length === 1 ? 'makes' : 'make';
  return `${shown.join(', ')}${more} ${verb} this a UCS-2 text: 70 characters per SMS instead of 160.`;
}

/** Classifies what was typed in "new conversation". */
export function addressKind(input: string): 'phone' | 'username' | 'email' | null {
  const s = input.trim();
  if (!s) return null;
  if (/^@[A-Za-z0-9_.]{3,32}$/.test(s)) return 'username';
  if (/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(s)) return 'email';
  if (/^\+?[\d\s().-]{3,20}$/.test(s) && /\d{3,}/.test(s.replace(/\D/g, ''))) return 'phone';
  return null;
}
