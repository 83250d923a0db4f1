-- A handle's history (the append-only handle_history of 0001_initial.sql), read in
-- bounded pages and as of a time. `id` orders one handle's entries as its writes
-- happened (each appends while holding the handle's row lock), whatever clock wrote `at`.

-- name: history_page
-- Newest first: at most $3 entries older than entry $2 (null: from the newest).
SELECT id, handle, action, actor, at, version, old_values, new_values
FROM handle_history
WHERE handle_key = $1 AND ($2::bigint IS NULL OR id < $2::bigint)
ORDER BY id DESC
LIMIT $3;

-- name: history_at
-- The last entry written at or before $2: the record as it stood then (none, or a
-- delete: it did not exist).
SELECT handle, action, actor, at, version, new_values
FROM handle_history
WHERE handle_key = $1 AND at <= $2
ORDER BY id DESC
LIMIT 1;
