-- name: list_templates
-- Template records (the field index holds one row per template: write service), of the
-- templates' own prefixes $1 (NULL: all), in handle order, after a cursor.
SELECT h.handle, h.handle_key
FROM handle_fields f JOIN handles h ON h.handle_key = f.handle_key
WHERE f.template_key = 'IDIS_TEMPLATE' AND f.field = 'prefix'
  AND ($1::text IS NULL OR f.value = $1)
  AND f.handle_key > $2
ORDER BY f.handle_key
LIMIT $3;
