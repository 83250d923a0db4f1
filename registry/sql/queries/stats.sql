-- Figures for the node's periodic gauges (node.runtime.gauges, registry/stats.py): each
-- run once every gauge interval, never per request or per scrape.

-- name: stats_identifiers
-- Identifiers per prefix with the prefix's enterprise: one grouped count over the
-- handles_by_prefix index, joined to the (few) prefixes afterwards.
SELECT p.prefix, e.credit_code, e.name AS enterprise_name, coalesce(c.n, 0) AS identifiers
FROM prefixes p
JOIN enterprises e ON e.id = p.enterprise_id
LEFT JOIN (SELECT prefix_key, count(*) AS n FROM handles GROUP BY prefix_key) c
    ON c.prefix_key = p.prefix_key
ORDER BY identifiers DESC, p.prefix_key;

-- name: stats_database_bytes
SELECT pg_database_size(current_database());

-- name: stats_docking
SELECT state, count(*) AS prefixes FROM upstream_docking GROUP BY state;

-- name: stats_imports
-- Unfinished import jobs (running, or interrupted and resumable) and their rows so far.
SELECT count(*) AS jobs,
       coalesce(sum(loaded), 0) AS loaded,
       coalesce(sum(existing), 0) AS existing,
       coalesce(sum(rejected), 0) AS rejected
FROM imports WHERE state = 'running';
