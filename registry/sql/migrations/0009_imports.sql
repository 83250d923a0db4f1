-- Bulk imports (docs/import.md): one row per import job, updated in the transaction that
-- commits each chunk of rows, so an interrupted import (a crash, kill -9, a dropped
-- connection) resumes after `through_line` with nothing loaded twice and nothing lost.
--
-- A job is named by the importer: a digest of the file's identity, the template and the
-- actor (`idnode import`), or an id the client chose (POST /api/imports?job=...).

CREATE TABLE imports (
    job          text COLLATE "C" PRIMARY KEY CHECK (length(job) BETWEEN 1 AND 200),
    actor        text NOT NULL,                   -- who runs it; only they may resume it
    source       text NOT NULL DEFAULT '',        -- the file or endpoint, for people
    through_line bigint NOT NULL DEFAULT 0,       -- every input line up to here is done
    loaded       bigint NOT NULL DEFAULT 0,       -- handles created
    existing     bigint NOT NULL DEFAULT 0,       -- already there with the same content
    rejected     bigint NOT NULL DEFAULT 0,       -- refused rows (import_rejects)
    state        text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done')),
    started_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

-- The refused rows of a job, committed with their chunk: the reject file a resumed
-- import writes is rebuilt from here, so each refused row is reported exactly once.
CREATE TABLE import_rejects (
    job      text COLLATE "C" NOT NULL REFERENCES imports (job) ON DELETE CASCADE,
    line     bigint NOT NULL,
    handle   text NOT NULL,
    reason   text NOT NULL,
    problems jsonb,                               -- [{field, index, value, rule}] if any
    PRIMARY KEY (job, line)
);
