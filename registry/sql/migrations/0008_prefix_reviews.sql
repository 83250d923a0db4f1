-- The prefix lifecycle as a reviewed workflow (docs/enterprises.md): an enterprise
-- applies for a prefix, an auditor moves it through review, an operator may set a status
-- outright. Every step that changes a prefix's status through idnode appends one row
-- here, in the transaction that changes it: from which status to which, who (the
-- authenticated `index:handle`, or `cli:<os user>`) and why. Like handle_history, the
-- table is append-only, and like it, it names its object by key without a foreign key:
-- the trail outlives a prefix deleted one day (a foreign key would forbid that deletion
-- forever, since no review row may go first).

CREATE TABLE prefix_reviews (
    id            bigserial PRIMARY KEY,
    prefix_key    text COLLATE "C" NOT NULL,       -- ASCII-upper-cased, as prefixes'
    prefix        text NOT NULL,                   -- as registered
    enterprise_id bigint NOT NULL REFERENCES enterprises (id),
    -- apply: an enterprise's application (new, or again after a rejection);
    -- review: an auditor's decision; operator: `idnode prefix add | set-status`.
    action        text NOT NULL CHECK (action IN ('apply', 'review', 'operator')),
    from_status   smallint CHECK (from_status BETWEEN 0 AND 5),  -- NULL: this step registered it
    to_status     smallint NOT NULL CHECK (to_status BETWEEN 0 AND 5),
    actor         text NOT NULL CHECK (length(actor) BETWEEN 1 AND 300),
    reason        text NOT NULL DEFAULT '' CHECK (length(reason) <= 2000),
    at            timestamptz NOT NULL,
    -- A review that rejects, disables or schedules deletion says why (0, 2, 3).
    CONSTRAINT prefix_reviews_reason_given
        CHECK (action <> 'review' OR to_status NOT IN (0, 2, 3) OR length(btrim(reason)) > 0)
);
CREATE INDEX prefix_reviews_by_prefix ON prefix_reviews (prefix_key, id);

CREATE FUNCTION prefix_reviews_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'prefix_reviews is append-only';
END;
$$;
CREATE TRIGGER prefix_reviews_no_change
    BEFORE UPDATE OR DELETE OR TRUNCATE ON prefix_reviews
    FOR EACH STATEMENT EXECUTE FUNCTION prefix_reviews_append_only();
