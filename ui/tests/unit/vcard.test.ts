import { describe, expect, it } from 'vitest';
import { parseVCards, vcardsToContacts } from '../../src/lib/vcard';

describe('vCard import', () => {
  it('reads 3.0 cards with groups, parameters, escapes and folded lines', () => {
    const text = [
      'BEGIN:VCARD',
      'VERSION:3.0',
      'N:Phone;Dana;;;',
      'FN:Dana Phone\\, Jr.',
      'item1.TEL;TYPE=CELL,VOICE:(206) 555-0123',
      'TEL;TYPE=HOME:+1 206 555 01',
      ' 99',
      'EMAIL;TYPE=INTERNET:dana@example.com',
      'END:VCARD',
    ].join('\r\n');
    expect(parseVCards(text)).toEqual([
      { name: 'Dana Phone, Jr.', phones: ['(206) 555-0123', '+1 206 555 0199'], emails: ['dana@example.com'] },
    ]);
  });

  it('reads 4.0 tel: URIs and falls back to N when FN is missing', () => {
    const text = 'BEGIN:VCARD\nVERSION:4.0\nN:Example;Erin;;Dr.;\nTEL;VALUE=uri;TYPE="voice,cell":tel:+1-312-555-0144;ext=5\nEND:VCARD\n';
    expect(parseVCards(text)).toEqual([{ name: 'Dr. Erin Example', phones: ['+1-312-555-0144'], emails: [] }]);
  });

  it('decodes vCard 2.1 quoted-printable names', () => {
    const text = 'BEGIN:VCARD\nVERSION:2.1\nFN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:Ren=C3=A9e M=\n=C3=BCller\nTEL;CELL:5551234567\nEND:VCARD';
    expect(parseVCards(text)[0].name).toBe('Renée Müller');
  });

  it('reads several cards, skips those with nothing to text, ignores junk', () => {
    const text = [
      'garbage line',
      'BEGIN:VCARD', 'FN:A', 'TEL:1', 'END:VCARD',
      'BEGIN:VCARD', 'FN:No number', 'NOTE:hi', 'END:VCARD',
      'BEGIN:VCARD', 'FN:B', 'EMAIL:b@example.com', 'TEL:2', 'TEL:2', 'END:VCARD',
    ].join('\n');
    const contacts = vcardsToContacts(parseVCards(text));
    expect(contacts).toEqual([
      { name: 'A', addresses: ['1'] },
      { name: 'B', addresses: ['2', 'b@example.com'] },
    ]);
  });

  it('survives an unterminated card and empty input', () => {
    expect(parseVCards('')).toEqual([]);
    expect(parseVCards('BEGIN:VCARD\nFN:X\nTEL:1')).toEqual([]);
  });
});
