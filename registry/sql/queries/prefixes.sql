-- name: add_prefix
INSERT INTO prefixes (prefix_key, prefix, enterprise_id, status, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $5)
RETURNING prefix_key;

-- name: list_prefixes
SELECT p.prefix, p.prefix_key, p.status, p.created_at, p.updated_at,
       e.credit_code, e.name AS enterprise_name
FROM prefixes p JOIN enterprises e ON e.id = p.enterprise_id
ORDER BY p.prefix_key;

-- name: get_prefix
SELECT p.prefix, p.prefix_key, p.status, p.created_at, p.updated_at,
       e.credit_code, e.name AS enterprise_name
FROM prefixes p JOIN enterprises e ON e.id = p.enterprise_id
WHERE p.prefix_key = $1;

-- name: set_prefix_status
UPDATE prefixes SET status = $2, updated_at = $3 WHERE prefix_key = $1
RETURNING prefix_key;

-- name: home_prefix
INSERT INTO homed_prefixes (prefix_key, prefix, homed_by, homed_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (prefix_key) DO NOTHING
RETURNING prefix_key;

-- name: unhome_prefix
DELETE FROM homed_prefixes WHERE prefix_key = $1 RETURNING prefix_key;

-- name: list_homed_prefixes
SELECT prefix FROM homed_prefixes ORDER BY prefix_key;
