-- 0001: the initial schema of a fedhive server's durable state.
--
-- Timestamps are Unix seconds (REAL) except audit.at, an ISO-8601 UTC string that is
-- part of the hashed entry. JSON columns hold compact JSON objects or arrays.
-- Blob digests are hex SHA-256 of files in the content-addressed blob store.

CREATE TABLE runs (
    run_id     TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    config     TEXT NOT NULL,
    seed       INTEGER NOT NULL
);

-- One row per model version; version is the SHA-256 of the canonical weights bytes (and
-- the blob's digest). A version that reappears keeps the row of its first commit, so
-- every parent link points at an older row and lineage has no cycles.
CREATE TABLE model_versions (
    version        TEXT PRIMARY KEY CHECK (length(version) = 64),
    parent_version TEXT REFERENCES model_versions (version),
    run_id         TEXT NOT NULL REFERENCES runs (run_id),
    round          INTEGER NOT NULL CHECK (round >= 0),
    strategy       TEXT NOT NULL,
    contributors   TEXT NOT NULL,
    metrics        TEXT NOT NULL,
    created_at     REAL NOT NULL
);

CREATE TABLE rounds (
    run_id        TEXT NOT NULL REFERENCES runs (run_id),
    round         INTEGER NOT NULL CHECK (round >= 0),
    state         TEXT NOT NULL CHECK (state IN ('open', 'committed', 'aborted')),
    started_at    REAL NOT NULL,
    closed_at     REAL,
    model_version TEXT REFERENCES model_versions (version),
    metrics       TEXT,
    PRIMARY KEY (run_id, round),
    CHECK ((state = 'committed') = (model_version IS NOT NULL)),
    CHECK ((state = 'open') = (closed_at IS NULL))
);

CREATE TABLE strategy_state (
    run_id       TEXT NOT NULL,
    round        INTEGER NOT NULL,
    state_digest TEXT NOT NULL CHECK (length(state_digest) = 64),
    PRIMARY KEY (run_id, round),
    FOREIGN KEY (run_id, round) REFERENCES rounds (run_id, round)
);

CREATE TABLE tasks (
    task_id       TEXT PRIMARY KEY,
    run_id        TEXT NOT NULL,
    round         INTEGER NOT NULL,
    client_id     TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('fit', 'evaluate')),
    model_version TEXT NOT NULL,
    issued_at     REAL NOT NULL,
    deadline      REAL NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('issued', 'succeeded', 'failed', 'late')),
    error         TEXT,
    FOREIGN KEY (run_id, round) REFERENCES rounds (run_id, round)
);

CREATE INDEX tasks_by_round ON tasks (run_id, round);

CREATE TABLE results (
    task_id        TEXT PRIMARY KEY REFERENCES tasks (task_id),
    payload_sha256 TEXT NOT NULL CHECK (length(payload_sha256) = 64),
    num_examples   INTEGER NOT NULL CHECK (num_examples >= 0),
    received_at    REAL NOT NULL,
    accepted       INTEGER NOT NULL CHECK (accepted IN (0, 1)),
    reason         TEXT
);

CREATE TABLE nodes (
    client_id      TEXT PRIMARY KEY,
    cert_serial    TEXT,
    first_seen     REAL NOT NULL,
    last_heartbeat REAL NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('online', 'offline', 'revoked'))
);

-- Append-only and hash-chained: see fedhive.server.store.audit for the exact hash.
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    kind      TEXT NOT NULL,
    payload   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL UNIQUE
);

-- The application never edits or deletes an entry; someone who drops these triggers to do
-- so is caught by the hash chain instead.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;
