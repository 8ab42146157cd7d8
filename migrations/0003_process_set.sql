-- The environment's process set and the operator's intent, kept here so that they are
-- replicated with the rest of the database and restored on takeover.
-- The origin and intent words below must match `store::Origin::as_str` and
-- `store::Intent::as_str` (a unit test checks it).

-- One row, present once the set was seeded (from the config file): its revision is incremented
-- by every change of the set or of an intent, in the same transaction as the change.
CREATE TABLE process_set (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    revision    INTEGER NOT NULL CHECK (revision >= 1),
    updated_at  INTEGER NOT NULL -- nanoseconds since the Unix epoch, UTC
) STRICT;

-- The stacks of the set, in order. `spec` is the stack as the config file writes it (a
-- directory name as a JSON string, or a process object). A `file` stack follows each owner's
-- config file (its row records that it came from one); an `api` stack was added, replaced or
-- scaled through the API and is kept as stored. `removed` marks a file stack removed through
-- the API, so that the file does not bring it back.
CREATE TABLE stacks (
    name        TEXT    PRIMARY KEY CHECK (length(name) > 0),
    position    INTEGER NOT NULL UNIQUE CHECK (position >= 0),
    origin      TEXT    NOT NULL CHECK (origin IN ('file', 'api')),
    spec        TEXT    NOT NULL CHECK (json_valid(spec)),
    removed     INTEGER NOT NULL DEFAULT 0 CHECK (removed IN (0, 1)),
    revision    INTEGER NOT NULL CHECK (revision >= 1),
    updated_at  INTEGER NOT NULL
) STRICT;

-- What the operator last asked of a process (`web-2`, not its stack): stopped on purpose, or
-- started (which overrides `autostart: false`). No row: the spec's `autostart` decides.
CREATE TABLE intents (
    process     TEXT    PRIMARY KEY CHECK (length(process) > 0),
    intent      TEXT    NOT NULL CHECK (intent IN ('stopped', 'started')),
    revision    INTEGER NOT NULL CHECK (revision >= 1),
    updated_at  INTEGER NOT NULL
) STRICT;

-- A change of the set or of an intent is an event too: what, by whom (the token's `sub`) and
-- the revision it made. NULL for a state transition.
ALTER TABLE events ADD COLUMN change_action TEXT CHECK (change_action IS NULL OR change_action IN
    ('add', 'remove', 'replace', 'scale', 'start', 'stop'));
ALTER TABLE events ADD COLUMN change_by TEXT;
ALTER TABLE events ADD COLUMN change_revision INTEGER CHECK (change_revision IS NULL OR change_revision >= 1);
