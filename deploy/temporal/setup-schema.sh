#!/bin/sh
# Creates Temporal's two databases and brings their schemas up to date (idempotent).
# Runs in temporalio/admin-tools before the server starts.
set -eu

# The password comes from SQL_PASSWORD in the environment.
sql() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "${DB_PORT:-5432}" \
    -u "$POSTGRES_USER" "$@"
}

for database in temporal temporal_visibility; do
  case "$database" in
    temporal) schema=temporal ;;
    *) schema=visibility ;;
  esac
  sql --db "$database" create || echo "database $database exists"
  sql --db "$database" setup-schema -v 0.0 || echo "schema of $database already initialised"
  sql --db "$database" update-schema -d "/etc/temporal/schema/postgresql/v12/$schema/versioned"
done
echo "Temporal schemas are up to date"
