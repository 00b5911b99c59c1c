#!/usr/bin/env bash
# Container entrypoint: wait for every domain database (with a timeout), then replace this
# shell with the command so it runs as PID 1 and receives SIGTERM directly.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "entrypoint: no command given (e.g. serve-api, worker, migrate)" >&2
  exit 64
fi

wait-for-databases
exec "$@"
