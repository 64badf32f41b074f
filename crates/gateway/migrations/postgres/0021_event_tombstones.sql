-- Deleting a message deletes it from the log too: each event carries the id of the message
-- whose body or status it holds (`message.created`, `message.status`), and deleting the
-- message turns those events into tombstones (`message.deleted`, same seq), so no later sync
-- page hands its body to a new device.
ALTER TABLE events ADD COLUMN message_id uuid;

UPDATE events
   SET message_id = (payload::jsonb #>> '{message,id}')::uuid
 WHERE type = 'message.created';
UPDATE events
   SET message_id = (payload::jsonb ->> 'message_id')::uuid
 WHERE type = 'message.status';

-- Messages deleted before this migration: their events become tombstones now.
UPDATE events
   SET type = 'message.deleted',
       payload = jsonb_build_object(
           'type', 'message.deleted',
           'message_id', coalesce(payload::jsonb #>> '{message,id}',
                                  payload::jsonb ->> 'message_id'),
           'conversation_id', coalesce(payload::jsonb #>> '{message,conversation_id}',
                                       payload::jsonb ->> 'conversation_id'))::text
 WHERE message_id IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = events.message_id);

CREATE INDEX events_message ON events (account_id, message_id) WHERE message_id IS NOT NULL;
