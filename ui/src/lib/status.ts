// The SendStatus reducer, the same rule as airtext-api's `SendStatus::advance` (its tests are
// mirrored in tests/unit/status.test.ts): status only moves forward along
// `queued → sending → sent → delivered`; `failed` may follow anything short of `delivered`;
// a late, repeated or backward report changes nothing.

import type { SendStatus } from './bindings/SendStatus';

const RANK: Record<SendStatus, number | null> = {
  queued: 0,
  sending: 1,
  sent: 2,
  delivered: 3,
  failed: null,
};

/** The status after `incoming` is reported for a message now in `current`, or null to ignore it. */
export function advance(current: SendStatus, incoming: SendStatus): SendStatus | null {
  const c = RANK[current];
  const n = RANK[incoming];
  if (c !== null && n !== null && n > c) return incoming;
  if (c !== null && n === null && c < 3) return 'failed';
  return null;
}

/** `advance`, keeping the current status when the report is ignored. */
export function reduce(current: SendStatus, incoming: SendStatus): SendStatus {
  return advance(current, incoming) ?? current;
}

export function isFinal(status: SendStatus): boolean {
  return status === 'delivered' || status === 'failed';
}

export const STATUS_LABEL: Record<SendStatus, string> = {
  queued: 'Queued',
  sending: 'Sending',
  sent: 'Sent',
  delivered: 'Delivered',
  failed: 'Not sent',
};
