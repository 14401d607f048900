-- One row per accepted chat request. Never the prompt, the reply or a key.
CREATE TABLE audit_events (
    request_id       UUID PRIMARY KEY,
    decision         TEXT NOT NULL,
    provider         TEXT NOT NULL,
    rule             TEXT,
    -- JSON array of strings, the same encoding as on SQLite.
    reason_codes     TEXT NOT NULL,
    policy_version   TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('success', 'failure')),
    latency_ms       DOUBLE PRECISION NOT NULL,
    failure_category TEXT,
    prompt_hash      TEXT NOT NULL,
    prompt_length    BIGINT NOT NULL CHECK (prompt_length >= 0),
    model            TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL
);

CREATE INDEX audit_events_created_at ON audit_events (created_at);
