-- Write-ahead audit: an event is written `pending` before the first provider
-- call and updated with the outcome; a process that dies leaves it pending
-- until a live one marks it `interrupted`.
ALTER TABLE audit_events DROP CONSTRAINT audit_events_status_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_status_check
    CHECK (status IN ('pending', 'success', 'failure', 'interrupted'));
-- JSON array of {provider, outcome, latency_ms}, in call order.
ALTER TABLE audit_events ADD COLUMN attempts TEXT NOT NULL DEFAULT '[]';
-- The process that wrote the event; NULL for events written before this
-- migration.
ALTER TABLE audit_events ADD COLUMN instance_id UUID;
-- What the sweep for interrupted events reads.
CREATE INDEX audit_events_pending ON audit_events (instance_id) WHERE status = 'pending';

-- One row per live gateway process, refreshed every 10 s; one silent for
-- 60 s is dead, and its pending events are marked interrupted.
CREATE TABLE audit_instances (
    instance_id  UUID PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);
