-- Bulk import (registry/bulk.py, migration 0009) and export.

-- name: import_job_start
INSERT INTO imports (job, actor, source, started_at, updated_at)
VALUES ($1, $2, $3, $4, $4)
ON CONFLICT (job) DO NOTHING;

-- name: import_job_get
SELECT job, actor, source, through_line, loaded, existing, rejected, state, started_at, updated_at
FROM imports WHERE job = $1;

-- name: import_job_lock
-- Held until the chunk commits: two runs of one job load one after the other, and the
-- second finds the lines the first committed.
SELECT job, actor, source, through_line, loaded, existing, rejected, state, started_at, updated_at
FROM imports WHERE job = $1 FOR UPDATE;

-- name: import_job_advance
UPDATE imports
SET through_line = $2, loaded = loaded + $3, existing = existing + $4,
    rejected = rejected + $5, updated_at = $6
WHERE job = $1
RETURNING job, actor, source, through_line, loaded, existing, rejected, state, started_at, updated_at;

-- name: import_job_finish
UPDATE imports SET state = 'done', updated_at = $2 WHERE job = $1
RETURNING job, actor, source, through_line, loaded, existing, rejected, state, started_at, updated_at;

-- name: import_rejects_add
INSERT INTO import_rejects (job, line, handle, reason, problems)
SELECT $1, u.line, u.handle, u.reason, u.problems::jsonb
FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[]) AS u(line, handle, reason, problems)
ON CONFLICT DO NOTHING;

-- name: import_rejects_list
SELECT line, handle, reason, problems::text AS problems FROM import_rejects
WHERE job = $1 AND line > $2 ORDER BY line LIMIT $3;

-- name: import_lz4_available
SELECT coalesce(bool_or(enumvals @> ARRAY['lz4']), false)
FROM pg_settings WHERE name = 'default_toast_compression';

-- name: import_use_lz4
-- A record of a few KB is TOASTed; pglz compression is the largest single cost of a bulk
-- load, lz4 a third of it (and faster to read back). This transaction only.
SET LOCAL default_toast_compression = 'lz4';

-- name: import_prefixes
-- As put_handle's prefix_for_write: a prefix disabled meanwhile waits for this chunk.
SELECT prefix_key, status FROM prefixes WHERE prefix_key = ANY($1::text[]) FOR SHARE;

-- name: import_existing
SELECT handle_key, handle, "values" FROM handles WHERE handle_key = ANY($1::text[]);

-- name: import_unique_taken
-- Claims (one per row and unique field) on a value another handle of the prefix holds.
SELECT c.line, c.field, c.value, h.handle AS holder
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
    AS c(line, handle_key, prefix_key, template_key, field, value)
JOIN handle_unique u
    ON u.prefix_key = c.prefix_key AND u.template_key = c.template_key
    AND u.field = c.field AND u.value = c.value
JOIN handles h ON h.handle_key = u.handle_key
WHERE u.handle_key <> c.handle_key;

-- name: export_batch
SELECT handle_key, handle, "values", version FROM handles
WHERE prefix_key = $1 AND handle_key > $2
ORDER BY handle_key LIMIT $3;
