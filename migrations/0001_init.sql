-- The first schema of the state database: lifecycle events, process runs and node facts.
-- Times are UTC nanoseconds since the Unix epoch (INTEGER), exact and sortable.
-- The state names below must match `events::StateName::as_str` (a unit test checks it).

CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    process     TEXT    NOT NULL CHECK (length(process) > 0),
    from_state  TEXT    NOT NULL CHECK (from_state IN
                    ('stopped', 'starting', 'running', 'stopping', 'backoff', 'exited', 'fatal')),
    to_state    TEXT    NOT NULL CHECK (to_state IN
                    ('stopped', 'starting', 'running', 'stopping', 'backoff', 'exited', 'fatal')),
    pid         INTEGER CHECK (pid IS NULL OR pid > 0),
    exit_code   INTEGER,
    exit_signal INTEGER CHECK (exit_signal IS NULL OR exit_signal > 0),
    reason      TEXT,
    CHECK (exit_code IS NULL OR exit_signal IS NULL)
);

CREATE INDEX events_by_process ON events (process, id);

-- One row per start of a process. A run is open while ended_at is NULL. The pid alone cannot tell
-- a recycled pid apart, so the start time from /proc/<pid>/stat (clock ticks since boot) and the
-- kernel boot id are kept with it.
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    process     TEXT    NOT NULL CHECK (length(process) > 0),
    pid         INTEGER NOT NULL CHECK (pid > 0),
    proc_start  INTEGER CHECK (proc_start IS NULL OR proc_start >= 0),
    boot_id     TEXT,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER CHECK (ended_at IS NULL OR ended_at >= started_at),
    exit_code   INTEGER,
    exit_signal INTEGER CHECK (exit_signal IS NULL OR exit_signal > 0),
    CHECK (exit_code IS NULL OR exit_signal IS NULL),
    CHECK (ended_at IS NOT NULL OR (exit_code IS NULL AND exit_signal IS NULL))
);

CREATE INDEX runs_open ON runs (process) WHERE ended_at IS NULL;

-- Small facts about this node and its data: where the database is replicated, and the like.
CREATE TABLE facts (
    key         TEXT    PRIMARY KEY CHECK (length(key) > 0),
    value       TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
