#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 for the test suite, on a fresh machine:
# installs Debian's server if it is missing, lets the tests' role connect from loopback without a
# password (trust for 127.0.0.1/32 only), and starts the cluster. Idempotent; touches nothing when
# a server already answers. Used by scripts/test.sh; run it alone to get the same server by hand.
set -euo pipefail

ready() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; }

if ready; then
  exit 0
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  echo "installing PostgreSQL from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

version=$(ls /etc/postgresql | sort -V | tail -n1)
hba="/etc/postgresql/$version/main/pg_hba.conf"
trust='host all all 127.0.0.1/32 trust'
# The first matching line wins in pg_hba.conf, so the trust line goes first. Loopback only.
if [ "$(grep -v -E '^\s*(#|$)' "$hba" | head -n1 | tr -s ' \t' ' ')" != "$trust" ]; then
  tmp=$(mktemp)
  { echo "# kafka-tasks test suite: the tests' postgres role connects from loopback without a password"
    echo "$trust"
    cat "$hba"; } >"$tmp"
  cat "$tmp" >"$hba"
  rm -f "$tmp"
fi

# Debian's cluster listens on localhost:5432 by default; pg_ctlcluster starts it without systemd.
pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
  || pg_ctlcluster --skip-systemctl-redirect "$version" main reload
for _ in $(seq 1 60); do ready && break; sleep 0.5; done
pg_isready -h 127.0.0.1 -p 5432
