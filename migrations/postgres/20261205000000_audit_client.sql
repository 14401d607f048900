-- The calling client's id (from the clients file, or `anonymous`); NULL for
-- events recorded before the gateway kept it.
ALTER TABLE audit_events ADD COLUMN client TEXT;
