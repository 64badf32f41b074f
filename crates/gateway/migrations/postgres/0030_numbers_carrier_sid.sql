-- A number bought from a carrier (Twilio's `PN…` sid) keeps the carrier's id for it, so it
-- can be given back when its quarantine ends. Numbers from the configuration have none.
ALTER TABLE numbers ADD COLUMN carrier_sid text;
