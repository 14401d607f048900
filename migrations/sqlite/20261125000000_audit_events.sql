-- One row per accepted chat request. Never the prompt, the reply or a key.
CREATE TABLE audit_events (
    -- UUID in its hyphenated text form.
    request_id       TEXT PRIMARY KEY NOT NULL,
    decision         TEXT NOT NULL,
    provider         TEXT NOT NULL,
    rule             TEXT,
    -- JSON array of strings.
    reason_codes     TEXT NOT NULL,
    policy_version   TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('success', 'failure')),
    latency_ms       REAL NOT NULL,
    failure_category TEXT,
    prompt_hash      TEXT NOT NULL,
    prompt_length    INTEGER NOT NULL CHECK (prompt_length >= 0),
    model            TEXT NOT NULL,
    -- RFC 3339 UTC with milliseconds, so text order is time order.
    created_at       TEXT NOT NULL
);

CREATE INDEX audit_events_created_at ON audit_events (created_at);
