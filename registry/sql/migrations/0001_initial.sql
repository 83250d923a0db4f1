-- The first registry schema: enterprises, their prefixes, handle records and history.

CREATE TABLE enterprises (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- Unified social credit code (GB 32100-2015): 18 characters, no I, O, S, V, Z.
    credit_code text NOT NULL UNIQUE CHECK (credit_code ~ '^[0-9A-HJ-NPQRTUWXY]{18}$'),
    contact     text NOT NULL DEFAULT '' CHECK (length(contact) <= 500),
    status      smallint NOT NULL DEFAULT 1 CHECK (status IN (0, 1)),  -- 0 suspended, 1 active
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- Prefix lifecycle as the top-level node's management system numbers it:
-- 0 disabled, 1 enabled, 2 pending deletion, 3 rejected, 4 awaiting review, 5 under review.
CREATE TABLE prefixes (
    prefix_key    text COLLATE "C" PRIMARY KEY,   -- ASCII-upper-cased, the lookup key
    prefix        text NOT NULL,                  -- as registered
    enterprise_id bigint NOT NULL REFERENCES enterprises (id),
    status        smallint NOT NULL CHECK (status BETWEEN 0 AND 5),
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX prefixes_enterprise ON prefixes (enterprise_id);

-- One row per handle; "values" is the whole record in Handle wire form (u32 count +
-- values, RFC 3652 §2.2.2.1), so one index lookup returns everything a resolver sends,
-- binary data survives untouched, and signatures digest exactly these bytes.
CREATE TABLE handles (
    handle_key  text COLLATE "C" PRIMARY KEY,     -- ASCII-upper-cased handle
    handle      text NOT NULL,                    -- spelling it was registered with
    prefix_key  text COLLATE "C" NOT NULL REFERENCES prefixes (prefix_key),
    "values"    bytea NOT NULL,
    version     bigint NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX handles_by_prefix ON handles (prefix_key, handle_key);

CREATE TABLE handle_history (
    id          bigserial PRIMARY KEY,
    handle_key  text COLLATE "C" NOT NULL,
    handle      text NOT NULL,
    action      text NOT NULL CHECK (action IN ('create', 'modify', 'delete')),
    actor       text NOT NULL,
    at          timestamptz NOT NULL,
    version     bigint NOT NULL,
    old_values  bytea,
    new_values  bytea
);
CREATE INDEX handle_history_by_handle ON handle_history (handle_key, id);

-- History is append-only: refuse any UPDATE or DELETE, whoever asks.
CREATE FUNCTION handle_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'handle_history is append-only';
END;
$$;
CREATE TRIGGER handle_history_no_change
    BEFORE UPDATE OR DELETE ON handle_history
    FOR EACH STATEMENT EXECUTE FUNCTION handle_history_append_only();
