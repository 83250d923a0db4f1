#!/usr/bin/env bash
# One role and one database per idnode node: idnode_top, idnode_textile, idnode_elevator.
# The postgres image runs /docker-entrypoint-initdb.d/* once, on the first start of an
# empty data directory (later password changes: ALTER ROLE ... PASSWORD). Each node owns
# its database and no other role may connect to it. The passwords come from the
# environment (TOP_DB_PASSWORD, TEXTILE_DB_PASSWORD, ELEVATOR_DB_PASSWORD), never from
# this file. deploy/k8s/postgres.yaml carries a byte-identical copy (a test checks it).
set -e

idnode_create_database() {
    if [ -z "$2" ]; then
        echo "10-idnode-databases.sh: no password for $1 (set $3)" >&2
        exit 1
    fi
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -v name="$1" -v password="$2" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
}

idnode_create_database idnode_top "${TOP_DB_PASSWORD:-}" TOP_DB_PASSWORD
idnode_create_database idnode_textile "${TEXTILE_DB_PASSWORD:-}" TEXTILE_DB_PASSWORD
idnode_create_database idnode_elevator "${ELEVATOR_DB_PASSWORD:-}" ELEVATOR_DB_PASSWORD
