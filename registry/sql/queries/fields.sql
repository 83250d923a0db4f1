-- name: clear_fields
DELETE FROM handle_fields WHERE handle_key = $1;

-- name: clear_unique
DELETE FROM handle_unique WHERE handle_key = $1;

-- name: add_fields
INSERT INTO handle_fields (prefix_key, template_key, field, value, handle_key)
SELECT $1, t, f, v, $2 FROM unnest($3::text[], $4::text[], $5::text[]) AS u(t, f, v)
ON CONFLICT DO NOTHING;

-- name: claim_unique
-- One holder per value: the row inserted, or the handle holding it already.
WITH claimed AS (
    INSERT INTO handle_unique (prefix_key, template_key, field, value, handle_key)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT DO NOTHING
    RETURNING handle_key
)
SELECT handle_key FROM claimed
UNION ALL
SELECT handle_key FROM handle_unique
WHERE prefix_key = $1 AND template_key = $2 AND field = $3 AND value = $4
LIMIT 1;

-- name: search_fields
-- Search (GET /api/search, ``idnode search``): one page in handle key order after a
-- cursor (the last key of the previous page; '' for the first), never OFFSET, so page
-- 1000 costs what page 1 does. $1: the prefix keys to look under, NULL for every
-- registered prefix. Each prefix is one range scan of the primary key (prefix, template,
-- field, value, handle) starting after the cursor and stopping at the page size; the
-- few pages are merged. $6 is one more than the page, to tell whether another follows.
SELECT h.handle, m.handle_key
FROM (
    SELECT f.handle_key
    FROM unnest(coalesce($1::text[], ARRAY(SELECT prefix_key FROM prefixes))) AS p(prefix_key)
    CROSS JOIN LATERAL (
        SELECT handle_key FROM handle_fields
        WHERE prefix_key = p.prefix_key AND template_key = $2 AND field = $3 AND value = $4
          AND handle_key > $5
        ORDER BY handle_key
        LIMIT $6
    ) AS f
    ORDER BY f.handle_key
    LIMIT $6
) AS m
JOIN handles h ON h.handle_key = m.handle_key
ORDER BY m.handle_key;

-- name: count_fields
-- Bounded: counts at most $5 matches (a dye lot of a million rolls is "more than").
SELECT count(*) FROM (
    SELECT 1
    FROM unnest(coalesce($1::text[], ARRAY(SELECT prefix_key FROM prefixes))) AS p(prefix_key)
    CROSS JOIN LATERAL (
        SELECT 1 FROM handle_fields
        WHERE prefix_key = p.prefix_key AND template_key = $2 AND field = $3 AND value = $4
        LIMIT $5
    ) AS f
    LIMIT $5
) AS bounded;

-- name: search_unique
-- A ``unique`` field that is not ``indexed`` lives only in handle_unique: at most one
-- holder per prefix, so no page is large; same shape and cursor as search_fields.
SELECT h.handle, m.handle_key
FROM (
    SELECT u.handle_key
    FROM unnest(coalesce($1::text[], ARRAY(SELECT prefix_key FROM prefixes))) AS p(prefix_key)
    JOIN handle_unique u
      ON u.prefix_key = p.prefix_key AND u.template_key = $2 AND u.field = $3 AND u.value = $4
    WHERE u.handle_key > $5
    ORDER BY u.handle_key
    LIMIT $6
) AS m
JOIN handles h ON h.handle_key = m.handle_key
ORDER BY m.handle_key;

-- name: count_unique
SELECT count(*) FROM (
    SELECT 1
    FROM unnest(coalesce($1::text[], ARRAY(SELECT prefix_key FROM prefixes))) AS p(prefix_key)
    JOIN handle_unique u
      ON u.prefix_key = p.prefix_key AND u.template_key = $2 AND u.field = $3 AND u.value = $4
    LIMIT $5
) AS bounded;
