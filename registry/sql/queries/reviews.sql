-- name: review_lock_prefix
-- NO KEY UPDATE: handle writes under the prefix (their foreign key takes KEY SHARE on
-- this row) go on while a review holds it.
SELECT prefix, status, enterprise_id FROM prefixes WHERE prefix_key = $1 FOR NO KEY UPDATE;

-- name: add_prefix_review
INSERT INTO prefix_reviews
    (prefix_key, prefix, enterprise_id, action, from_status, to_status, actor, reason, at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING id;

-- name: list_prefix_reviews
SELECT r.id, r.prefix, e.credit_code, r.action, r.from_status, r.to_status, r.actor, r.reason,
       r.at
FROM prefix_reviews r JOIN enterprises e ON e.id = r.enterprise_id
WHERE r.prefix_key = $1
ORDER BY r.id;
