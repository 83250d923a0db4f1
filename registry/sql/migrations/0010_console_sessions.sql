-- The web console's state, shared by every worker process and every node on this
-- registry (docs/console.md): a browser's next connection may reach any of them.

-- Login sessions. The cookie's value is never stored: only its SHA-256 digest, so a dump
-- or a backup of this table holds no credential a browser could present. Times are the
-- node's wall clock, passed in; `expires_at` is the earlier of `used_at` + the idle
-- timeout and `created_at` + the lifetime, kept current when `used_at` moves.
CREATE TABLE console_sessions (
    digest         bytea PRIMARY KEY CHECK (length(digest) = 32),
    identity       text NOT NULL,                 -- the admin's handle, registered spelling
    identity_index integer NOT NULL,              -- its HS_SECKEY index
    scheme         text NOT NULL,                 -- how it proved itself ("basic")
    csrf           text NOT NULL,                 -- the synchronizer token of its forms
    lang           text CHECK (lang IN ('zh', 'en')),  -- NULL: the browser's Accept-Language
    created_at     timestamptz NOT NULL,
    used_at        timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
CREATE INDEX console_sessions_identity ON console_sessions (identity, identity_index, used_at);
CREATE INDEX console_sessions_used ON console_sessions (used_at);

-- A console import's job page is read from the registry by whichever worker the browser
-- reaches: what the page shows beyond the importer's own progress. NULL for imports
-- started elsewhere (idnode import, POST /api/imports).
ALTER TABLE imports
    ADD COLUMN total_rows bigint,                 -- data rows in the uploaded file
    ADD COLUMN template   text,                   -- the template its columns follow
    ADD COLUMN failure    text;                   -- why it stopped, if it failed
