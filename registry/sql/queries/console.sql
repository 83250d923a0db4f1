-- The web console's sessions and import pages (registry/console.py, migration 0010).

-- name: console_session_lock
-- Logins are serialised (across workers and nodes) while one evicts and inserts, so the
-- bounds hold exactly. Held to the end of the transaction.
SELECT pg_advisory_xact_lock($1);

-- name: console_session_purge
DELETE FROM console_sessions WHERE expires_at <= $1;

-- name: console_session_evict_identity
-- Keep the $3 sessions of one identity used last; end the others.
DELETE FROM console_sessions WHERE digest IN (
    SELECT digest FROM console_sessions
    WHERE identity = $1 AND identity_index = $2
    ORDER BY used_at DESC, created_at DESC OFFSET $3
);

-- name: console_session_evict_total
-- Keep the $1 sessions used last; end the others.
DELETE FROM console_sessions WHERE digest IN (
    SELECT digest FROM console_sessions ORDER BY used_at DESC, created_at DESC OFFSET $1
);

-- name: console_session_insert
INSERT INTO console_sessions
    (digest, identity, identity_index, scheme, csrf, lang, created_at, used_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8);

-- name: console_session_get
-- The live session of this digest; the same digest's row is deleted if it has expired.
WITH gone AS (DELETE FROM console_sessions WHERE digest = $1 AND expires_at <= $2)
SELECT digest, identity, identity_index, scheme, csrf, lang, created_at, used_at, expires_at
FROM console_sessions WHERE digest = $1 AND expires_at > $2;

-- name: console_session_touch
UPDATE console_sessions SET used_at = $2, expires_at = $3 WHERE digest = $1;

-- name: console_session_set_lang
UPDATE console_sessions SET lang = $2 WHERE digest = $1;

-- name: console_session_delete
DELETE FROM console_sessions WHERE digest = $1;

-- name: console_session_count
SELECT count(*) FROM console_sessions;

-- name: console_import_start
-- Created before the upload's first chunk, so the job page answers on any worker at
-- once; the importer's own import_job_start then finds it (same actor) and goes on.
INSERT INTO imports (job, actor, source, total_rows, template, started_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $6);

-- name: console_import_fail
UPDATE imports SET failure = $2, updated_at = $3 WHERE job = $1;

-- name: console_import_touch
-- The worker running a console import says it still does (importjob.HEARTBEAT_S): a row
-- left "running" and not touched for long is an import whose worker died.
UPDATE imports SET updated_at = $2 WHERE job = $1 AND state = 'running';

-- name: console_import_get
SELECT job, actor, source, template, total_rows, through_line, loaded, existing, rejected,
       state, failure, started_at, updated_at
FROM imports WHERE job = $1 AND total_rows IS NOT NULL;

-- name: console_import_list
-- The console imports of one actor ($1), or of everyone when $1 is NULL, newest first.
SELECT job, actor, source, template, total_rows, through_line, loaded, existing, rejected,
       state, failure, started_at, updated_at
FROM imports
WHERE total_rows IS NOT NULL AND ($1::text IS NULL OR actor = $1)
ORDER BY started_at DESC, job LIMIT $2;
