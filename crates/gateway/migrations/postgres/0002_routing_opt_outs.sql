-- Least-cost routing records what a send cost (cost per segment × segments, in the unit of
-- the carriers' rate tables); NULL for texts sent before this column existed.
ALTER TABLE messages ADD COLUMN cost double precision;

-- Outside numbers that texted STOP to one of our DIDs: texts from `did` to `remote` are
-- refused until `remote` texts START. Keyed by the DID, not the account: the person opted
-- out of a number, and a released number keeps its opt-outs for the next owner.
CREATE TABLE opt_outs (
    did    text        NOT NULL,
    remote text        NOT NULL,
    at     timestamptz NOT NULL,
    PRIMARY KEY (did, remote)
);
