-- Least-cost routing records what a send cost (cost per segment × segments, in the unit of
-- the carriers' rate tables); NULL for texts sent before this column existed.
ALTER TABLE messages ADD COLUMN cost REAL;

-- Outside numbers that texted STOP to one of our DIDs: texts from `did` to `remote` are
-- refused until `remote` texts START. Keyed by the DID, not the account, because the
-- recipient opted out of a number, and a released number keeps its opt-outs for the next
-- owner (as carriers keep them).
CREATE TABLE opt_outs (
    did    TEXT    NOT NULL,
    remote TEXT    NOT NULL,
    at     INTEGER NOT NULL,
    PRIMARY KEY (did, remote)
) WITHOUT ROWID;
