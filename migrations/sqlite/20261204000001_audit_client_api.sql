-- The API a request came in by: chat, openai or anthropic. NULL for events
-- written before it was recorded.
ALTER TABLE audit_events ADD COLUMN client_api TEXT;
