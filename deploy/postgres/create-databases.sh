#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d).
# One database per service, owned by the application's role; Temporal's role owns nothing yet:
# temporal-sql-tool creates its two databases.
set -eu

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
CREATE ROLE cloudmart LOGIN PASSWORD '${CLOUDMART_DB_PASSWORD}';
CREATE ROLE temporal LOGIN CREATEDB PASSWORD '${TEMPORAL_DB_PASSWORD}';
CREATE DATABASE inventory OWNER cloudmart;
CREATE DATABASE payment OWNER cloudmart;
CREATE DATABASE shipping OWNER cloudmart;
CREATE DATABASE payment_provider OWNER cloudmart;
CREATE DATABASE event_store OWNER cloudmart;
CREATE DATABASE readmodel OWNER cloudmart;
CREATE DATABASE loyalty OWNER cloudmart;
CREATE DATABASE customers OWNER cloudmart;
CREATE DATABASE activity OWNER cloudmart;
CREATE DATABASE audit OWNER cloudmart;
SQL
