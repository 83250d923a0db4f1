-- name: add_enterprise
INSERT INTO enterprises (name, credit_code, contact, status, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $5)
RETURNING id, name, credit_code, contact, status, created_at, updated_at;

-- name: list_enterprises
SELECT id, name, credit_code, contact, status, created_at, updated_at
FROM enterprises ORDER BY id;

-- name: get_enterprise_by_code
SELECT id, name, credit_code, contact, status, created_at, updated_at
FROM enterprises WHERE credit_code = $1;
