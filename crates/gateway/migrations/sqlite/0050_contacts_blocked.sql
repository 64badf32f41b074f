-- A blocked contact: texts from its address reach no device of the account (see `deliver`).
ALTER TABLE contacts ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0;
