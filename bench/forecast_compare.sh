#!/usr/bin/env bash
# Compare the day-ahead accuracy of `smart-energy forecast backtest` with
# scikit-learn LinearRegression and statsmodels exponential smoothing on the
# same origins, on two public data sets. See bench/forecast_compare.py for the
# models and the data sets.
#
# Usage: bench/forecast_compare.sh [TETOUAN_CSV]
#   TETOUAN_CSV: the UCI Tetouan 10-minute file (default
#   ../shared/data/public/tetouan_city_power_10min.csv next to the repository);
#   if it is missing, only the pmdarima data set runs.
# Environment: VENV (Python virtual environment to create or reuse, default
#   target/forecast-venv), WORK_DIR (generated CSV files, default
#   target/bench/forecast).
# Needs python3 with the venv module and access to PyPI for the first run.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
venv=${VENV:-$target_dir/forecast-venv}
work_dir=${WORK_DIR:-$target_dir/bench/forecast}
tetouan=${1:-$root/../shared/data/public/tetouan_city_power_10min.csv}

echo "== building smart-energy (release)"
cargo build --release -p smart-energy
smart_energy="$target_dir/release/smart-energy"

if [ ! -x "$venv/bin/python" ]; then
    echo "== creating the Python virtual environment $venv"
    python3 -m venv "$venv"
fi
echo "== installing scikit-learn, statsmodels, pandas and pmdarima from PyPI"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    scikit-learn statsmodels pandas pmdarima
"$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
    | grep -i -E '^(numpy|pandas|scikit-learn|statsmodels|pmdarima|scipy) '

tetouan_args=()
if [ -f "$tetouan" ]; then
    tetouan_args=(--tetouan "$tetouan")
else
    echo "== $tetouan not found: skipping the Tetouan data set"
fi

echo "== backtests (progress on stderr, table on stdout)"
"$venv/bin/python" bench/forecast_compare.py \
    --smart-energy "$smart_energy" --work-dir "$work_dir" "${tetouan_args[@]}"
