-- Prefixes a server administrator homed on this node with the native HOME_NA operation
-- (docs/authentication.md, "Administration"): the node answers for them as for the
-- prefixes of its settings. UNHOME_NA removes the row. Changes notify every node on
-- `idnode_prefixes`, like the prefixes table (0004), with the same payload.

CREATE TABLE homed_prefixes (
    prefix_key  text COLLATE "C" PRIMARY KEY,   -- ASCII-upper-cased
    prefix      text NOT NULL,                  -- as homed
    homed_by    text NOT NULL,                  -- index:handle of the server admin
    homed_at    timestamptz NOT NULL
);

CREATE TRIGGER homed_prefixes_notify_insert AFTER INSERT ON homed_prefixes
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION prefixes_notify();
CREATE TRIGGER homed_prefixes_notify_delete AFTER DELETE ON homed_prefixes
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION prefixes_notify();
