#!/usr/bin/env bash
# Compare the smart-energy store with InfluxDB 1.x (Debian package) and
# PostgreSQL on the same data: bytes per reading, query times, and the peak
# RSS of `smart-energy serve` with many active series.
#
# Every server binds 127.0.0.1. InfluxDB runs from a config file written
# here, with its data in a temp dir and reporting disabled; PostgreSQL must
# already run on 127.0.0.1:5432 with trust auth for user postgres, and gets a
# fresh database that is dropped at the end.
#
# Usage: bench/storage_compare.sh [SE_BENCH_STORAGE_OPTIONS...]
#   Options go to `se-bench storage` (see `se-bench storage --help`), for
#   example: --site-days 30 --farm-days 1 --parts footprint,query
# Environment:
#   RESULTS   JSON output file (default target/bench/storage-<time>.json)
#   WORK_DIR  directory for the stores and InfluxDB's files (default: a temp dir under target/bench)
#   PG_HOST, PG_PORT, PG_USER  PostgreSQL server (default 127.0.0.1, 5432, postgres)
#   PROFILE   Cargo profile of the binaries (default release)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results=${RESULTS:-$root/target/bench/storage-$stamp.json}
mkdir -p "$(dirname "$results")"
pg_host=${PG_HOST:-127.0.0.1}
pg_port=${PG_PORT:-5432}
pg_user=${PG_USER:-postgres}

# PROFILE=dev gives quick debug builds for trying the script; figures need release.
profile=${PROFILE:-release}
profile_dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
echo "== building $profile binaries (smart-energy, se-bench)"
cargo build --profile "$profile" -p smart-energy -p se-bench
smart_energy="$target_dir/$profile_dir/smart-energy"
se_bench="$target_dir/$profile_dir/se-bench"

if ! command -v influxd >/dev/null; then
    echo "== influxd not found; installing the Debian package influxdb"
    if [ "$(id -u)" -ne 0 ]; then
        echo "influxd is missing and installing it needs root: run 'sudo apt-get install -y influxdb'" >&2
        exit 1
    fi
    # The package's service must not start on the default port: policy-rc.d
    # answers 101 ("action forbidden") to its start request.
    policy=/usr/sbin/policy-rc.d
    added_policy=no
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod +x "$policy"
        added_policy=yes
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y influxdb
    if [ "$added_policy" = yes ]; then
        rm -f "$policy"
    fi
fi
if ! command -v psql >/dev/null; then
    echo "psql not found; install the Debian package postgresql-client" >&2
    exit 1
fi
echo "== influxd: $(influxd version 2>&1 | head -n 1)"
echo "== postgresql: $(psql -h "$pg_host" -p "$pg_port" -U "$pg_user" -Atc 'SHOW server_version' postgres)"

work=${WORK_DIR:-}
if [ -z "$work" ]; then
    mkdir -p "$root/target/bench"
    work=$(mktemp -d "$root/target/bench/storage-work.XXXXXX")
fi
mkdir -p "$work"
database="se_storage_bench_$$"
influx_pid=""

cleanup() {
    if [ -n "$influx_pid" ] && kill -0 "$influx_pid" 2>/dev/null; then
        echo "== stopping influxd (pid $influx_pid)"
        kill -TERM "$influx_pid"
        for _ in $(seq 1 100); do
            kill -0 "$influx_pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -0 "$influx_pid" 2>/dev/null && kill -KILL "$influx_pid"
    fi
    psql -h "$pg_host" -p "$pg_port" -U "$pg_user" -qc "DROP DATABASE IF EXISTS $database" postgres || true
    if [ -z "${WORK_DIR:-}" ]; then
        rm -rf "$work"
    fi
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

http_port=$(free_port)
rpc_port=$(free_port)
influx_dir="$work/influxdb"
mkdir -p "$influx_dir/meta" "$influx_dir/data" "$influx_dir/wal"
# Cold shards are compacted in full after 10 s without writes (default 4 h),
# and the cache is written to TSM files after 5 s (default 10 min), so the
# benchmark measures compacted files without waiting hours.
cat > "$influx_dir/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$rpc_port"

[meta]
  dir = "$influx_dir/meta"

[data]
  dir = "$influx_dir/data"
  wal-dir = "$influx_dir/wal"
  index-version = "inmem"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "5s"
  compact-full-write-cold-duration = "10s"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:$http_port"
  log-enabled = false

[continuous_queries]
  enabled = false

[subscriber]
  enabled = false
EOF

echo "== starting influxd on 127.0.0.1:$http_port (data in $influx_dir)"
influxd run -config "$influx_dir/influxdb.conf" > "$influx_dir/influxd.log" 2>&1 &
influx_pid=$!
for _ in $(seq 1 150); do
    if curl -fsS "http://127.0.0.1:$http_port/ping" >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$influx_pid" 2>/dev/null; then
        echo "influxd exited during start; log:" >&2
        tail -n 40 "$influx_dir/influxd.log" >&2
        exit 1
    fi
    sleep 0.2
done
curl -fsS "http://127.0.0.1:$http_port/ping" >/dev/null

echo "== creating PostgreSQL database $database"
psql -h "$pg_host" -p "$pg_port" -U "$pg_user" -qc "CREATE DATABASE $database" postgres

echo "== machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB memory, $(uname -sr)"
echo "== running se-bench storage (results: $results)"
"$se_bench" storage \
    --smart-energy "$smart_energy" \
    --work-dir "$work" \
    --influx-url "http://127.0.0.1:$http_port" \
    --influx-data-dir "$influx_dir/data" \
    --influx-wal-dir "$influx_dir/wal" \
    --postgres "host=$pg_host port=$pg_port user=$pg_user dbname=$database" \
    --json-out "$results" \
    "$@"
