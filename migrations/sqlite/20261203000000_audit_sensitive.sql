-- Whether a sensitive rule decided: then the request stayed local.
ALTER TABLE audit_events ADD COLUMN sensitive BOOLEAN NOT NULL DEFAULT FALSE;
