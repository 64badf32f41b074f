// Emergency numbers, which no text is sent to: airtext-sms's rule (`is_emergency_number`), its
// list generated into bindings/EmergencyNumbers.json by crates/api/tests/ui_rule_fixtures.rs,
// and this matcher checked against the Rust one's answers in the same file. The UI refuses such
// a text before sending it; the gateway refuses it too (`emergency_number`), and its answer
// is the one that counts.

import { numbers } from './bindings/EmergencyNumbers.json';

const NUMBERS: ReadonlySet<string> = new Set(numbers);

/** Punctuation people put in a number, as the address parser skips it. */
const PUNCTUATION = new Set([' ', '-', '.', '(', ')', '/', '\u00a0']);

/** Whether `input`, as typed, is an emergency number: its digits, punctuation aside, are listed. */
export function isEmergencyNumber(input: string): boolean {
  const trimmed = input.trim();
  if (!trimmed || new TextEncoder().encode(trimmed).length > 32) return false;
  let digits = '';
  for (const c of trimmed) {
    if (c >= '0' && c <= '9') digits += c;
    else if (!PUNCTUATION.has(c)) return false;
  }
  return NUMBERS.has(digits);
}

/** What the user is told, in the gateway's words. */
export function emergencyMessage(input: string): string {
  return `${input.trim()} is an emergency number, and Airtext cannot reach emergency services: call or text them from a phone`;
}
