-- Backup and restore (registry/backup.py).

-- name: backup_server_version
SELECT current_setting('server_version_num')::int;

-- name: backup_registry_contents
SELECT
    (SELECT count(*) FROM handles) AS handles,
    (SELECT count(*) FROM enterprises) AS enterprises,
    (SELECT count(*) FROM prefixes) AS prefixes;
