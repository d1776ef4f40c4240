#!/usr/bin/env bash
# Compare MQTT QoS 1 ingestion of `smart-energy serve` with Mosquitto 2.0 on
# this machine. Every server binds 127.0.0.1 on a free port and is stopped
# by se-bench after its run; nothing is sent to another host.
#
# Usage: bench/compare.sh [REPETITIONS] [MESSAGES] [PUBLISHER_COUNTS...]
#   defaults: 3 repetitions, 100000 messages, publisher counts 1 and 4.
# Environment: RESULTS (JSON lines output file), MOSQUITTO (binary path),
#   TIMEOUT_S (time limit of one publishing phase, default 300).
set -euo pipefail

repetitions=${1:-3}
messages=${2:-100000}
shift $(( $# > 2 ? 2 : $# ))
publisher_counts=("$@")
if [ ${#publisher_counts[@]} -eq 0 ]; then
    publisher_counts=(1 4)
fi
timeout_s=${TIMEOUT_S:-300}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
results=${RESULTS:-$root/target/bench/compare-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
mkdir -p "$(dirname "$results")"

echo "== building release binaries (smart-energy, se-bench)"
cargo build --release -p smart-energy -p se-bench
smart_energy="$target_dir/release/smart-energy"
se_bench="$target_dir/release/se-bench"

mosquitto=${MOSQUITTO:-$(command -v mosquitto || true)}
if [ -z "$mosquitto" ] && [ -x /usr/sbin/mosquitto ]; then
    mosquitto=/usr/sbin/mosquitto
fi
if [ -z "$mosquitto" ]; then
    echo "== mosquitto not found; installing the Debian package"
    if [ "$(id -u)" -ne 0 ]; then
        echo "mosquitto is missing and installing it needs root: run 'sudo apt-get install -y mosquitto'" >&2
        exit 1
    fi
    apt-get install -y mosquitto
    mosquitto=/usr/sbin/mosquitto
fi
echo "== mosquitto: $mosquitto ($("$mosquitto" -h 2>&1 | head -n 1 || true))"

targets=(smart-energy mosquitto-default mosquitto-unlimited)
total=$(( repetitions * ${#publisher_counts[@]} * ${#targets[@]} ))
run=0
for repetition in $(seq 1 "$repetitions"); do
    for publishers in "${publisher_counts[@]}"; do
        for target in "${targets[@]}"; do
            run=$(( run + 1 ))
            echo "== run $run/$total: $target, K=$publishers, N=$messages, repetition $repetition"
            common=(--messages "$messages" --publishers "$publishers" --timeout-s "$timeout_s" --json-out "$results")
            case "$target" in
                smart-energy)
                    "$se_bench" smart-energy --binary "$smart_energy" "${common[@]}" ;;
                mosquitto-default)
                    "$se_bench" mosquitto --binary "$mosquitto" --max-queued-messages default "${common[@]}" ;;
                mosquitto-unlimited)
                    "$se_bench" mosquitto --binary "$mosquitto" --max-queued-messages unlimited "${common[@]}" ;;
            esac
        done
    done
done

echo
echo "== medians of $repetitions repetitions (results: $results)"
"$se_bench" summarize "$results"
