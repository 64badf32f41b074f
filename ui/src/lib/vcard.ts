// A small vCard 2.1 / 3.0 / 4.0 reader: enough to import names, phone numbers and e-mail
// addresses (RFC 6350 line unfolding, property groups and parameters, backslash escapes,
// quoted-printable from 2.1, `tel:` URIs from 4.0). Everything else is ignored.

import type { ContactInput } from './backend/types';

export interface VCard {
  name: string | null;
  phones: string[];
  emails: string[];
}

/** RFC 6350 §3.2: a line starting with a space or tab continues the previous one. */
function unfold(text: string): string[] {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  const out: string[] = [];
  for (const line of lines) {
    if ((line.startsWith(' ') || line.startsWith('\t')) && out.length > 0) {
      out[out.length - 1] += line.slice(1);
    } else if (out.length > 0 && /=$/.test(out[out.length - 1]) && /QUOTED-PRINTABLE/i.test(out[out.length - 1])) {
      // vCard 2.1 quoted-printable soft line break
      out[out.length - 1] = out[out.length - 1].slice(0, -1) + line;
    } else {
      out.push(line);
    }
  }
  return out;
}

function unescape(value: string): string {
  return value.replace(/\\([\\,;nN])/g, (_, c: string) => (c === 'n' || c === 'N' ? '\n' : c));
}

function decodeQuotedPrintable(value: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '=' && /^[0-9A-Fa-f]{2}$/.test(value.slice(i + 1, i + 3))) {
      bytes.push(parseInt(value.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(...new TextEncoder().encode(c));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** Splits on `sep` outside backslash escapes. */
function splitEscaped(value: string, sep: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '\\' && i + 1 < value.length) {
      cur += value[i] + value[i + 1];
      i++;
    } else if (value[i] === sep) {
      parts.push(cur);
      cur = '';
    } else {
      cur += value[i];
    }
  }
  parts.push(cur);
  return parts;
}

export function parseVCards(text: string): VCard[] {
  const cards: VCard[] = [];
  let card: (VCard & { n: string | null }) | null = null;
  for (const line of unfold(text)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const head = line.slice(0, colon);
    let value = line.slice(colon + 1);
    const [nameWithGroup, ...params] = splitEscaped(head, ';');
    const prop = nameWithGroup.split('.').pop()!.toUpperCase();
    const upperParams = params.map((p) => p.toUpperCase());
    if (prop === 'BEGIN' && value.trim().toUpperCase() === 'VCARD') {
      card = { name: null, n: null, phones: [], emails: [] };
      continue;
    }
    if (!card) continue;
    if (prop === 'END' && value.trim().toUpperCase() === 'VCARD') {
      const name = card.name ?? card.n;
      cards.push({ name: name && name.trim() ? name.trim() : null, phones: card.phones, emails: card.emails });
      card = null;
      continue;
    }
    if (upperParams.some((p) => p === 'ENCODING=QUOTED-PRINTABLE' || p === 'QUOTED-PRINTABLE')) {
      value = decodeQuotedPrintable(value);
    }
    switch (prop) {
      case 'FN':
        card.name = unescape(value);
        break;
      case 'N': {
        const [family = '', given = '', additional = '', prefix = '', suffix = ''] = splitEscaped(value, ';').map(unescape);
        const full = [prefix, given, additional, family, suffix].map((s) => s.trim()).filter(Boolean).join(' ');
        card.n = full || null;
        break;
      }
      case 'TEL': {
        const tel = unescape(value).replace(/^tel:/i, '').split(';')[0].trim();
        if (tel && !card.phones.includes(tel)) card.phones.push(tel);
        break;
      }
      case 'EMAIL': {
        const email = unescape(value).replace(/^mailto:/i, '').trim();
        if (email && !card.emails.includes(email)) card.emails.push(email);
        break;
      }
    }
  }
  return cards;
}

/** The cards as contacts to import: each card's numbers and e-mail addresses under its name. */
export function vcardsToContacts(cards: VCard[]): ContactInput[] {
  return cards
    .map((c) => ({ name: c.name, addresses: [...c.phones, ...c.emails] }))
    .filter((c) => c.addresses.length > 0);
}
