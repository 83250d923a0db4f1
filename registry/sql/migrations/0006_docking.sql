-- Docking with the top-level node (README "Docking"): one row per prefix this node
-- registers upstream, holding what should be there (register with these values, or
-- withdraw) and how delivering it went. It is the outbox: a row stays pending, retried
-- with backoff, until the top-level acknowledged it; a change of what should be there
-- bumps ``version``, so an acknowledgement of an older version is not taken for it.

CREATE TABLE upstream_docking (
    prefix_key      text COLLATE "C" PRIMARY KEY,   -- ASCII-upper-cased
    prefix          text NOT NULL,
    action          text NOT NULL CHECK (action IN ('register', 'withdraw')),
    -- For a derived prefix (88.118.2), the node's own prefix it is registered under
    -- (88.118); NULL for an own prefix.
    derived_from    text,
    payload         bytea NOT NULL,                 -- the values to publish, wire form
    version         bigint NOT NULL DEFAULT 1,
    state           text NOT NULL CHECK (state IN ('pending', 'docked', 'failed', 'withdrawn')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_attempt_at timestamptz,
    last_error      text NOT NULL DEFAULT '',
    updated_at      timestamptz NOT NULL
);
CREATE INDEX upstream_docking_due ON upstream_docking (next_attempt_at)
    WHERE state IN ('pending', 'failed');
