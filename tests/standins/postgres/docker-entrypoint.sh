#!/usr/bin/env bash
# Entrypoint of the postgres stand-in (see the Dockerfile): on first start, initialise PGDATA
# and run /docker-entrypoint-initdb.d against a server on its unix socket only; then replace
# this shell with postgres, which listens on all addresses.
set -euo pipefail
shopt -s nullglob

if [ "${1:0:1}" = - ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec "$@"
fi

export PGDATA=${PGDATA:-/var/lib/postgresql/data}
export POSTGRES_USER=${POSTGRES_USER:-postgres}
export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}

initialise() {
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgres stand-in: set POSTGRES_PASSWORD to initialise a new database" >&2
    exit 1
  fi
  mkdir -p "$PGDATA"
  chmod 0700 "$PGDATA"
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"

  # The socket only, while the scripts run: a TCP answer means initialisation is over.
  pg_ctl --wait --silent --options="-c listen_addresses=''" start
  local sql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER")
  if [ "$POSTGRES_DB" != postgres ]; then
    "${sql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  for file in /docker-entrypoint-initdb.d/*; do
    echo "postgres stand-in: running $file"
    case $file in
      *.sh) if [ -x "$file" ]; then "$file"; else bash "$file"; fi ;;
      *.sql) "${sql[@]}" --dbname "$POSTGRES_DB" --file "$file" ;;
      *) echo "postgres stand-in: ignoring $file (not *.sh or *.sql)" ;;
    esac
  done
  pg_ctl --wait --silent --mode=fast stop
  echo "postgres stand-in: initialised; starting on all addresses"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initialise
fi
exec "$@"
