-- Delivery receipts that arrived before the send outcome recording their carrier id was
-- committed (an SMSC's receipt can overtake its own submit_sm_resp; Twilio's "failed at once"
-- always does). The carrier was told they are stored, so they wait here, not in memory; the
-- finish of the send that records the id applies them in its transaction (both take a
-- transaction-level advisory lock on the id first, so neither can miss the other across
-- nodes). One row per (carrier, id, status): a repeated receipt adds nothing. A periodic
-- sweep expires those whose send is never recorded.
CREATE TABLE early_receipts (
    carrier            text        NOT NULL,
    carrier_message_id text        NOT NULL,
    status             text        NOT NULL,
    reason             text,
    received_at        timestamptz NOT NULL,
    PRIMARY KEY (carrier, carrier_message_id, status)
);
CREATE INDEX early_receipts_received_at ON early_receipts (received_at);
