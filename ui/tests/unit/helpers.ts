import type { ChatMessage } from '../../src/lib/backend/types';

/** A message with defaults, for tests. */
export function msg(over: Partial<ChatMessage> & { key: string }): ChatMessage {
  return {
    id: null,
    conversation_id: null,
    peer: '+14155550100',
    direction: 'outbound',
    from: '+12065550100',
    to: '+14155550100',
    body: 'hi',
    status: 'queued',
    route: null,
    path: 'cloud',
    client_id: null,
    encoding: 'gsm7',
    segments: 1,
    failure_reason: null,
    created_at: '2025-03-03T10:00:00Z',
    updated_at: '2025-03-03T10:00:00Z',
    ...over,
  };
}
