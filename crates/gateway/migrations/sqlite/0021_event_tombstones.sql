-- Deleting a message deletes it from the log too: each event carries the id of the message
-- whose body or status it holds (`message.created`, `message.status`), and deleting the
-- message turns those events into tombstones (`message.deleted`, same seq), so no later sync
-- page hands its body to a new device.
ALTER TABLE events ADD COLUMN message_id BLOB;

UPDATE events
   SET message_id = unhex(replace(json_extract(payload, '$.message.id'), '-', ''))
 WHERE type = 'message.created';
UPDATE events
   SET message_id = unhex(replace(json_extract(payload, '$.message_id'), '-', ''))
 WHERE type = 'message.status';

-- Messages deleted before this migration: their events become tombstones now.
UPDATE events
   SET type = 'message.deleted',
       payload = json_object(
           'type', 'message.deleted',
           'message_id', coalesce(json_extract(payload, '$.message.id'),
                                  json_extract(payload, '$.message_id')),
           'conversation_id', coalesce(json_extract(payload, '$.message.conversation_id'),
                                       json_extract(payload, '$.conversation_id')))
 WHERE message_id IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = events.message_id);

CREATE INDEX events_message ON events (account_id, message_id) WHERE message_id IS NOT NULL;
