-- Delivery receipts that arrived before the send outcome recording their carrier id was
-- committed (an SMSC's receipt can overtake its own submit_sm_resp; Twilio's "failed at once"
-- always does). The carrier was told they are stored, so they wait here, not in memory; the
-- finish of the send that records the id applies them in its transaction. One row per
-- (carrier, id, status): a repeated receipt adds nothing. A periodic sweep expires those whose
-- send is never recorded (`received_at`, micros).
CREATE TABLE early_receipts (
    carrier            TEXT    NOT NULL,
    carrier_message_id TEXT    NOT NULL,
    status             TEXT    NOT NULL,
    reason             TEXT,
    received_at        INTEGER NOT NULL,
    PRIMARY KEY (carrier, carrier_message_id, status)
) WITHOUT ROWID;
CREATE INDEX early_receipts_received_at ON early_receipts (received_at);
