-- Prefix changes reach every running node (node/resolution/prefixes.py): a prefix
-- added, enabled, disabled or deleted, by a node, the CLI or plain SQL, notifies
-- channel `idnode_prefixes` once per statement, after commit, like `idnode_handles`
-- (0003). Payload: the sender's clock as unix epoch milliseconds, then one prefix key
-- per line (few prefixes change at once: one notification is enough).

CREATE FUNCTION prefixes_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    keys text;
BEGIN
    SELECT string_agg(DISTINCT prefix_key, E'\n') INTO keys FROM changed;
    IF keys IS NOT NULL THEN
        PERFORM pg_notify(
            'idnode_prefixes',
            (extract(epoch FROM clock_timestamp()) * 1000)::bigint::text || E'\n' || left(keys, 7000)
        );
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER prefixes_notify_insert AFTER INSERT ON prefixes
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION prefixes_notify();
CREATE TRIGGER prefixes_notify_update AFTER UPDATE ON prefixes
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION prefixes_notify();
CREATE TRIGGER prefixes_notify_delete AFTER DELETE ON prefixes
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION prefixes_notify();
