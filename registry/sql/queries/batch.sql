-- Set-based statements for a batch of prepared writes (registry/batch.py): one round
-- trip per step for the whole batch, not per record.

-- name: batch_prefixes
SELECT prefix_key, status FROM prefixes WHERE prefix_key = ANY($1::text[]) FOR SHARE;

-- name: batch_lock
-- In key order, so two batches touching the same handles cannot deadlock.
SELECT handle_key, handle, "values", version, created_at
FROM handles WHERE handle_key = ANY($1::text[])
ORDER BY handle_key FOR UPDATE;

-- name: batch_unique_holders
SELECT u.prefix_key, u.template_key, u.field, u.value, u.handle_key
FROM handle_unique u
JOIN unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS c(p, t, f, v)
  ON u.prefix_key = c.p AND u.template_key = c.t AND u.field = c.f AND u.value = c.v;

-- name: batch_insert
INSERT INTO handles (handle_key, handle, prefix_key, "values", version, created_at, updated_at)
SELECT k, h, p, v, 1, $5, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) AS u(k, h, p, v)
ON CONFLICT (handle_key) DO NOTHING
RETURNING handle_key;

-- name: batch_update
UPDATE handles AS h SET "values" = u.v, version = h.version + 1, updated_at = $3
FROM unnest($1::text[], $2::bytea[]) AS u(k, v)
WHERE h.handle_key = u.k
RETURNING h.handle_key, h.version;

-- name: batch_delete
DELETE FROM handles WHERE handle_key = ANY($1::text[]);

-- name: batch_clear_fields
DELETE FROM handle_fields WHERE handle_key = ANY($1::text[]);

-- name: batch_clear_unique
DELETE FROM handle_unique WHERE handle_key = ANY($1::text[]);

-- name: batch_add_fields
INSERT INTO handle_fields (prefix_key, template_key, field, value, handle_key)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
ON CONFLICT DO NOTHING;

-- name: batch_claim_unique
-- Rows another transaction claimed in between are skipped: the caller compares counts.
INSERT INTO handle_unique (prefix_key, template_key, field, value, handle_key)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
ON CONFLICT DO NOTHING
RETURNING handle_key;

-- name: batch_history
INSERT INTO handle_history (handle_key, handle, action, actor, at, version, old_values, new_values)
SELECT k, h, a, who, $8, v, o, n
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bytea[], $7::bytea[])
    AS u(k, h, a, who, v, o, n);

-- name: get_handles
SELECT handle_key, handle, "values", version, created_at, updated_at
FROM handles WHERE handle_key = ANY($1::text[]);
