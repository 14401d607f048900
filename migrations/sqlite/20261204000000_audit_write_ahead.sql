-- Write-ahead audit: an event is written `pending` before the first provider
-- call and updated with the outcome; a process that dies leaves it pending
-- until a live one marks it `interrupted`. SQLite cannot change a CHECK
-- constraint in place, so the table is rebuilt (in the migration's
-- transaction).
CREATE TABLE audit_events_new (
    -- UUID in its hyphenated text form.
    request_id       TEXT PRIMARY KEY NOT NULL,
    decision         TEXT NOT NULL,
    provider         TEXT NOT NULL,
    rule             TEXT,
    -- JSON array of strings.
    reason_codes     TEXT NOT NULL,
    policy_version   TEXT NOT NULL,
    status           TEXT NOT NULL
        CHECK (status IN ('pending', 'success', 'failure', 'interrupted')),
    latency_ms       REAL NOT NULL,
    failure_category TEXT,
    prompt_hash      TEXT NOT NULL,
    prompt_length    INTEGER NOT NULL CHECK (prompt_length >= 0),
    model            TEXT NOT NULL,
    -- RFC 3339 UTC with milliseconds, so text order is time order.
    created_at       TEXT NOT NULL,
    sensitive        BOOLEAN NOT NULL DEFAULT FALSE,
    -- JSON array of detector names, sorted.
    detections       TEXT NOT NULL DEFAULT '[]',
    -- JSON array of {provider, outcome, latency_ms}, in call order.
    attempts         TEXT NOT NULL DEFAULT '[]',
    -- The process that wrote the event (UUID text); NULL for events written
    -- before this migration.
    instance_id      TEXT
);

INSERT INTO audit_events_new (request_id, decision, provider, rule, reason_codes,
    policy_version, status, latency_ms, failure_category, prompt_hash, prompt_length,
    model, created_at, sensitive, detections)
SELECT request_id, decision, provider, rule, reason_codes, policy_version, status,
    latency_ms, failure_category, prompt_hash, prompt_length, model, created_at,
    sensitive, detections
FROM audit_events;

DROP TABLE audit_events;
ALTER TABLE audit_events_new RENAME TO audit_events;
CREATE INDEX audit_events_created_at ON audit_events (created_at);
-- What the sweep for interrupted events reads.
CREATE INDEX audit_events_pending ON audit_events (instance_id) WHERE status = 'pending';

-- One row per live gateway process, refreshed every 10 s; one silent for
-- 60 s is dead, and its pending events are marked interrupted.
CREATE TABLE audit_instances (
    instance_id  TEXT PRIMARY KEY NOT NULL,
    -- RFC 3339 UTC with milliseconds, as created_at.
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);
