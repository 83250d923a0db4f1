-- name: docking_want
-- What should be upstream for a prefix; a change makes the row pending again.
INSERT INTO upstream_docking
    (prefix_key, prefix, action, derived_from, payload, state, next_attempt_at, updated_at)
VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6)
ON CONFLICT (prefix_key) DO UPDATE SET
    prefix = EXCLUDED.prefix,
    action = EXCLUDED.action,
    derived_from = EXCLUDED.derived_from,
    payload = EXCLUDED.payload,
    version = upstream_docking.version + 1,
    state = 'pending',
    attempts = 0,
    next_attempt_at = EXCLUDED.next_attempt_at,
    last_error = '',
    updated_at = EXCLUDED.updated_at
WHERE upstream_docking.action IS DISTINCT FROM EXCLUDED.action
   OR upstream_docking.payload IS DISTINCT FROM EXCLUDED.payload
   OR upstream_docking.derived_from IS DISTINCT FROM EXCLUDED.derived_from
RETURNING prefix_key;

-- name: docking_claim
-- Due rows, leased until $2 so that another node (or this one after a crash) retries
-- them only once the lease ran out.
UPDATE upstream_docking d
SET next_attempt_at = $2, last_attempt_at = $1, attempts = d.attempts + 1
WHERE d.prefix_key IN (
    SELECT prefix_key FROM upstream_docking
    WHERE state IN ('pending', 'failed') AND next_attempt_at <= $1
    ORDER BY next_attempt_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
RETURNING d.prefix_key, d.prefix, d.action, d.derived_from, d.payload, d.version, d.attempts;

-- name: docking_acknowledged
UPDATE upstream_docking
SET state = CASE WHEN action = 'register' THEN 'docked' ELSE 'withdrawn' END,
    last_error = '', updated_at = $3
WHERE prefix_key = $1 AND version = $2
RETURNING prefix_key;

-- name: docking_failed
UPDATE upstream_docking
SET state = 'failed', last_error = $3, next_attempt_at = $4, updated_at = $5
WHERE prefix_key = $1 AND version = $2
RETURNING prefix_key;

-- name: docking_rows
SELECT prefix, prefix_key, action, derived_from, version, state, attempts, next_attempt_at,
       last_attempt_at, last_error, updated_at
FROM upstream_docking ORDER BY prefix_key;

-- name: docking_next_due
SELECT min(next_attempt_at) FROM upstream_docking WHERE state IN ('pending', 'failed');
