#!/bin/sh
# Start the connector. `exec` replaces this shell so SIGTERM from `docker stop` reaches the
# binary directly, which then stops cleanly (abandons the page in flight, closes its work).
set -eu

BIN="${CONNECTOR_BIN:-/usr/local/bin/arcsight-incidents}"

if [ "$#" -eq 0 ]; then
  set -- run
fi

exec "$BIN" "$@"
