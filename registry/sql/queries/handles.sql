-- name: get_handle
SELECT handle, "values", version, created_at, updated_at
FROM handles WHERE handle_key = $1;

-- name: get_handle_raw
SELECT handle, "values", version FROM handles WHERE handle_key = $1;

-- name: lock_handle
SELECT handle, "values", version, created_at, updated_at FROM handles WHERE handle_key = $1 FOR UPDATE;

-- name: insert_handle
INSERT INTO handles (handle_key, handle, prefix_key, "values", version, created_at, updated_at)
VALUES ($1, $2, $3, $4, 1, $5, $5)
ON CONFLICT (handle_key) DO NOTHING
RETURNING version;

-- name: update_handle
UPDATE handles SET "values" = $2, version = version + 1, updated_at = $3
WHERE handle_key = $1
RETURNING version;

-- name: delete_handle
DELETE FROM handles WHERE handle_key = $1
RETURNING handle, "values", version;

-- name: add_history
INSERT INTO handle_history (handle_key, handle, action, actor, at, version, old_values, new_values)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8);

-- name: list_history
SELECT handle, action, actor, at, version, old_values, new_values
FROM handle_history WHERE handle_key = $1 ORDER BY id;

-- name: list_handles
SELECT handle FROM handles WHERE prefix_key = $1
ORDER BY handle_key LIMIT $2 OFFSET $3;

-- name: count_handles
SELECT count(*) FROM handles WHERE prefix_key = $1;

-- name: prefix_for_write
SELECT status FROM prefixes WHERE prefix_key = $1 FOR SHARE;

-- name: get_handles_raw
-- The resolution read for a batch of keys (registry.readbatch): values in wire form.
SELECT handle_key, handle, "values", version FROM handles WHERE handle_key = ANY($1::text[]);
