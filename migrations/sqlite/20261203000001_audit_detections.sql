-- The detectors of the deciding rule that found something: a JSON array of
-- their names, sorted. Never what they found.
ALTER TABLE audit_events ADD COLUMN detections TEXT NOT NULL DEFAULT '[]';
