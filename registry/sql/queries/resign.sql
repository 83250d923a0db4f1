-- Bulk re-signing (node/resign.py). $2 NULL: every prefix; else that prefix and the
-- enterprise prefixes under it (88.118 covers 88.118.2).

-- name: resign_next_batch
SELECT handle, handle_key FROM handles
WHERE handle_key > $1 AND ($2::text IS NULL OR prefix_key = $2 OR starts_with(prefix_key, $2 || '.'))
ORDER BY handle_key LIMIT $3;

-- name: resign_count
SELECT count(*) FROM handles
WHERE handle_key > $1 AND ($2::text IS NULL OR prefix_key = $2 OR starts_with(prefix_key, $2 || '.'));

-- name: resign_progress_get
SELECT last_key, done FROM resign_progress WHERE job = $1;

-- name: resign_progress_save
INSERT INTO resign_progress (job, last_key, done, updated_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (job) DO UPDATE SET last_key = $2, done = $3, updated_at = $4;

-- name: resign_progress_clear
DELETE FROM resign_progress WHERE job = $1;
