-- Cache coherence across node instances (node/cache): every committed change to
-- `handles`, whatever wrote it (a node, the CLI, a bulk COPY, plain SQL), notifies
-- channel `idnode_handles` with the changed handle keys. PostgreSQL delivers a
-- notification only when its transaction commits, so a listener hears of a write
-- after it is visible to new reads, never before.
--
-- Payload: the sender's clock as unix epoch milliseconds on the first line (listeners
-- measure the invalidation lag from it), then one handle key per line. The trigger
-- fires once per statement, so a bulk write of N rows sends N keys in payloads of at
-- most ~7000 bytes (the limit is 8000) rather than N notifications.

CREATE FUNCTION handles_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    stamp text := (extract(epoch FROM clock_timestamp()) * 1000)::bigint::text;
    chunk text;
BEGIN
    FOR chunk IN
        SELECT string_agg(handle_key, E'\n' ORDER BY handle_key)
        FROM (
            SELECT handle_key,
                   sum(octet_length(handle_key) + 1) OVER (ORDER BY handle_key) / 7000 AS part
            FROM (SELECT DISTINCT handle_key FROM changed) AS keys
        ) AS numbered
        GROUP BY part
    LOOP
        PERFORM pg_notify('idnode_handles', stamp || E'\n' || chunk);
    END LOOP;
    RETURN NULL;
END;
$$;

-- One trigger per event: a transition table belongs to one trigger, and each names
-- its rows `changed` so the one function reads them all.
CREATE TRIGGER handles_notify_insert AFTER INSERT ON handles
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION handles_notify();
CREATE TRIGGER handles_notify_update AFTER UPDATE ON handles
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION handles_notify();
CREATE TRIGGER handles_notify_delete AFTER DELETE ON handles
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION handles_notify();
