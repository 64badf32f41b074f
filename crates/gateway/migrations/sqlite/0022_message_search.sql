-- Full-text search over each account's messages (`GET /v1/search`): an FTS5 index keyed by
-- the message's rowid negated (FTS5 walks a doclist forwards lazily but must read all of it
-- to walk it backwards, so newest-first is ascending order here and a search stops after a
-- page), holding the owner (hex of the account id, one token, so a query
-- intersects the account's postings with the words' instead of filtering every account's
-- matches) and the body. Contentless: the text stays in `messages` only; deleting a message
-- deletes its entry. Bodies never change after insert, so there is no update trigger.
-- Messages' rowids are stable because the gateway never runs VACUUM (which could renumber a
-- table without an INTEGER PRIMARY KEY). The last word of a search is a prefix (type-ahead):
-- prefix indexes of 1 to 4 characters answer it from one doclist instead of merging every
-- word that starts with it.
CREATE VIRTUAL TABLE message_search USING fts5(
    owner, body,
    content = '', contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '1 2 3 4'
);

INSERT INTO message_search (rowid, owner, body)
    SELECT -rowid, hex(account_id), body FROM messages;

CREATE TRIGGER messages_search_insert AFTER INSERT ON messages
BEGIN
    INSERT INTO message_search (rowid, owner, body) VALUES (-new.rowid, hex(new.account_id), new.body);
END;

CREATE TRIGGER messages_search_delete AFTER DELETE ON messages
BEGIN
    DELETE FROM message_search WHERE rowid = -old.rowid;
END;
