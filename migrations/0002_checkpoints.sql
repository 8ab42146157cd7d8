-- The checkpoint catalog: what each checkpoint of env_dir holds, as reported when it was taken.
-- Storage (checkpoints/<id>/manifest.json) is the truth; this table is reconciled with it when
-- a node becomes owner, and is replicated with the rest of the database.
CREATE TABLE checkpoints (
    id             TEXT PRIMARY KEY,
    label          TEXT,
    created_at     INTEGER NOT NULL, -- nanoseconds since the Unix epoch, UTC
    files          INTEGER NOT NULL CHECK (files >= 0),
    bytes          INTEGER NOT NULL CHECK (bytes >= 0),
    uploaded_bytes INTEGER NOT NULL CHECK (uploaded_bytes >= 0),
    chunks_new     INTEGER NOT NULL CHECK (chunks_new >= 0),
    freeze_ms      INTEGER NOT NULL CHECK (freeze_ms >= 0),
    duration_ms    INTEGER NOT NULL CHECK (duration_ms >= 0),
    epoch          INTEGER
) STRICT;

CREATE INDEX checkpoints_by_time ON checkpoints (created_at DESC, id DESC);
