-- 0002: what a run's summary needs across restarts, the signed audit head, and no
-- tables that nothing writes.
--
-- tasks, results and nodes were never written by the deployment (the coordinator keeps
-- tasks in memory; the verified result claims are not stored): dropped rather than kept
-- half-built.
DROP TABLE results;
DROP TABLE tasks;
DROP TABLE nodes;

-- What each closed round moved and lost (fit cohort), so a summary covers every round of
-- a run, not only those of the last server process.
ALTER TABLE rounds ADD COLUMN bytes_up INTEGER NOT NULL DEFAULT 0 CHECK (bytes_up >= 0);
ALTER TABLE rounds ADD COLUMN bytes_down INTEGER NOT NULL DEFAULT 0 CHECK (bytes_down >= 0);
ALTER TABLE rounds ADD COLUMN clients_failed INTEGER NOT NULL DEFAULT 0
    CHECK (clients_failed >= 0);

-- One row each time a server process opens the run (the first start included).
CREATE TABLE server_starts (
    run_id     TEXT NOT NULL REFERENCES runs (run_id),
    started_at REAL NOT NULL
);

-- The audit head as the server's key signed it, in the transaction that appended it:
-- see fedhive.server.store.anchor for the signed bytes.
CREATE TABLE audit_heads (
    seq       INTEGER PRIMARY KEY REFERENCES audit (seq),
    hash      TEXT NOT NULL,
    signature BLOB NOT NULL
);

CREATE TRIGGER audit_heads_no_update BEFORE UPDATE ON audit_heads
BEGIN
    SELECT RAISE(ABORT, 'audit heads are append-only');
END;

CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads
BEGIN
    SELECT RAISE(ABORT, 'audit heads are append-only');
END;
