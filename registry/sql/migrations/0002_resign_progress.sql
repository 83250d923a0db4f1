-- Progress of `idnode resign` (node/resign.py): the last handle key re-signed per job
-- (a job is the --prefix given, '*' for all), so an interrupted run resumes there. The
-- row is removed when the run completes.

CREATE TABLE resign_progress (
    job        text COLLATE "C" PRIMARY KEY,
    last_key   text COLLATE "C" NOT NULL,
    done       bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL
);
