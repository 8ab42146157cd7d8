-- Events of the node itself beside those of its processes: a change of storage health (failing,
-- failing another way, working again). `kind` tells them apart; a process event keeps its
-- process and states, a storage event has none and carries the storage state and failure.
-- The words below must match `events::FeedKind::as_str`, `objstore::StorageState::as_str`
-- and `objstore::FailureKind::as_str` (a unit test checks it).
-- SQLite cannot relax NOT NULL or change a CHECK in place: the table is rebuilt, rows and ids
-- kept, inside the migration's transaction.

CREATE TABLE events_0004 (
    id              INTEGER PRIMARY KEY,
    at              INTEGER NOT NULL,
    kind            TEXT    NOT NULL DEFAULT 'process' CHECK (kind IN ('process', 'storage')),
    process         TEXT    CHECK (process IS NULL OR length(process) > 0),
    from_state      TEXT    CHECK (from_state IS NULL OR from_state IN
                        ('stopped', 'starting', 'running', 'stopping', 'backoff', 'exited', 'fatal')),
    to_state        TEXT    CHECK (to_state IS NULL OR to_state IN
                        ('stopped', 'starting', 'running', 'stopping', 'backoff', 'exited', 'fatal')),
    pid             INTEGER CHECK (pid IS NULL OR pid > 0),
    exit_code       INTEGER,
    exit_signal     INTEGER CHECK (exit_signal IS NULL OR exit_signal > 0),
    reason          TEXT,
    change_action   TEXT    CHECK (change_action IS NULL OR change_action IN
                        ('add', 'remove', 'replace', 'scale', 'start', 'stop')),
    change_by       TEXT,
    change_revision INTEGER CHECK (change_revision IS NULL OR change_revision >= 1),
    storage_state   TEXT    CHECK (storage_state IS NULL OR storage_state IN ('ok', 'failing')),
    failure_kind    TEXT    CHECK (failure_kind IS NULL OR failure_kind IN
                        ('credentials', 'access_denied', 'no_such_bucket', 'invalid_bucket_name',
                         'wrong_region', 'unreachable', 'clock_skew', 'throttled', 'config',
                         'other')),
    failure_message TEXT,
    failure_fix     TEXT,
    CHECK (exit_code IS NULL OR exit_signal IS NULL),
    CHECK (kind <> 'process' OR (process IS NOT NULL AND from_state IS NOT NULL
                                 AND to_state IS NOT NULL AND storage_state IS NULL
                                 AND failure_kind IS NULL)),
    CHECK (kind <> 'storage' OR (process IS NULL AND from_state IS NULL AND to_state IS NULL
                                 AND storage_state IS NOT NULL
                                 AND (storage_state = 'failing') = (failure_kind IS NOT NULL))),
    CHECK ((failure_kind IS NULL) = (failure_message IS NULL)
           AND (failure_kind IS NULL) = (failure_fix IS NULL))
);

INSERT INTO events_0004 (id, at, kind, process, from_state, to_state, pid, exit_code, exit_signal,
                         reason, change_action, change_by, change_revision)
    SELECT id, at, 'process', process, from_state, to_state, pid, exit_code, exit_signal,
           reason, change_action, change_by, change_revision
    FROM events;

DROP TABLE events;
ALTER TABLE events_0004 RENAME TO events;
CREATE INDEX events_by_process ON events (process, id);
