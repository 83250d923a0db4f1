-- The field index (README "Templates"): for records citing a template, the values of
-- its searchable fields (``indexed``), to find records by field within a prefix
-- (every roll of one dye lot), and of its ``unique`` fields, one holder per value within
-- a prefix. Rows follow their handle: replaced with every write in the same transaction,
-- gone with it. The primary keys are the search path too: a search (GET /api/search)
-- is one range scan per prefix, in handle key order from a cursor (queries/fields.sql).

CREATE TABLE handle_fields (
    prefix_key   text COLLATE "C" NOT NULL,
    template_key text COLLATE "C" NOT NULL,   -- the template's handle, upper-cased
    field        text COLLATE "C" NOT NULL,   -- the field key as the template spells it
    value        text COLLATE "C" NOT NULL,   -- the value, at most 512 characters
    handle_key   text COLLATE "C" NOT NULL REFERENCES handles (handle_key) ON DELETE CASCADE,
    PRIMARY KEY (prefix_key, template_key, field, value, handle_key)
);
CREATE INDEX handle_fields_by_handle ON handle_fields (handle_key);

CREATE TABLE handle_unique (
    prefix_key   text COLLATE "C" NOT NULL,
    template_key text COLLATE "C" NOT NULL,
    field        text COLLATE "C" NOT NULL,
    value        text COLLATE "C" NOT NULL,
    handle_key   text COLLATE "C" NOT NULL REFERENCES handles (handle_key) ON DELETE CASCADE,
    PRIMARY KEY (prefix_key, template_key, field, value)
);
CREATE INDEX handle_unique_by_handle ON handle_unique (handle_key);

-- Template records are in the field index too (template_key IDIS_TEMPLATE, field
-- "prefix"), so templates can be listed (GET /api/templates). Existing ones are found by
-- their IDIS_TEMPLATE value type in the wire form (u32 length 13, then the type).
INSERT INTO handle_fields (prefix_key, template_key, field, value, handle_key)
SELECT prefix_key, 'IDIS_TEMPLATE', 'prefix', upper(split_part(handle, '/', 1)), handle_key
FROM handles
WHERE position(decode('0000000d', 'hex') || convert_to('IDIS_TEMPLATE', 'UTF8') IN "values") > 0
ON CONFLICT DO NOTHING;
