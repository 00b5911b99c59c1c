#!/usr/bin/env bash
# Runs once, when the postgres container initialises an empty data directory:
# creates one database per domain, named in APP_DATABASES.
set -euo pipefail

for database in ${APP_DATABASES}; do
  echo "creating database ${database}"
  psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname postgres \
    --command "CREATE DATABASE \"${database}\""
done
