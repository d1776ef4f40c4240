"""Compare day-ahead forecasts of `smart-energy forecast backtest` with
scikit-learn and statsmodels on the same hours.

For each data set, smart-energy runs its rolling-origin backtest and writes
every prediction to a CSV file. This script then forecasts the same origins
(local midnights, 24 hours ahead) with:

- scikit-learn LinearRegression on the calendar features that the
  smart-energy `regression` model uses (hour-of-day dummies, weekend, and
  temperature where the data set has it), fitted on the last 4 weeks;
- statsmodels ExponentialSmoothing (Holt-Winters) with an additive damped
  trend and an additive daily season of 24 hours, fitted on the last 4 weeks;
- statsmodels MSTL with 24 h and 168 h seasons on the last 8 weeks, with a
  damped-trend exponential smoothing model for trend plus remainder, built
  the way the smart-energy `mstl` model is (which uses the augurs crate);
- a daily seasonal naive forecast, computed here to check that both sides
  read the same hourly values.

Every model is scored by the same code on the same hours, and the MAPE of
each model is divided by the MAPE of the daily seasonal naive forecast. Two
more rows score the model that the backtest chooses among the default
candidates (see `chosen_rows`).

Data sets:
- tetouan: power of zone 1 of Tetouan, Morocco (UCI data set 849,
  CC BY 4.0), 10-minute rows averaged per hour by smart-energy and by pandas.
- taylor: half-hourly electricity demand of England and Wales in MW,
  5 June to 27 August 2000, shipped in the PyPI package pmdarima
  (`pmdarima.datasets.load_taylor`, MIT licence). pmdarima took it from the
  `taylor` data set of the R package forecast, where James W. Taylor provided
  it. Pairs of half hours are averaged into hours.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HOURS_PER_DAY = 24
# Training window of the regression and ETS models, the same 4 weeks as the
# smart-energy `regression` model.
WINDOW_HOURS = 4 * 7 * HOURS_PER_DAY
# Training window of the MSTL model, the same 8 weeks as smart-energy `mstl`.
MSTL_WINDOW_HOURS = 8 * 7 * HOURS_PER_DAY
SMART_ENERGY_MODELS = ["mean", "naive", "naive-weekly", "regression", "mstl", "ets"]
# Candidates of `smart-energy forecast backtest` when --models is not given
# (DEFAULT_MODELS in se-analytics); the chosen model is one of these.
DEFAULT_MODELS = ["naive", "naive-weekly", "regression", "mstl"]


@dataclass
class DataSet:
    name: str
    # File and options given to `smart-energy forecast backtest`.
    csv_path: Path
    time_column: str
    value_column: str
    feature_columns: list[str]
    time_format: str | None
    start_date: str
    # Hourly values indexed by the start of each hour, with feature columns.
    hourly: pd.DataFrame


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_tetouan(path: Path) -> DataSet:
    if not path.is_file():
        raise SystemExit(
            f"Tetouan data not found at {path}; pass --tetouan with the path of "
            "tetouan_city_power_10min.csv"
        )
    raw = pd.read_csv(path)
    raw["time"] = pd.to_datetime(raw["DateTime"], format="%m/%d/%y %H:%M")
    hourly = (
        raw.set_index("time")[["Zone 1 Power Consumption", "Temperature"]]
        .resample("h")
        .mean()
        .rename(columns={"Zone 1 Power Consumption": "load", "Temperature": "temperature"})
    )
    return DataSet(
        name="tetouan zone 1",
        csv_path=path,
        time_column="DateTime",
        value_column="Zone 1 Power Consumption",
        feature_columns=["Temperature"],
        time_format="%m/%d/%y %H:%M",
        start_date="2017-10-01",
        hourly=hourly,
    )


def load_taylor(work_dir: Path) -> DataSet:
    from pmdarima.datasets import load_taylor as pmdarima_taylor

    half_hourly = pmdarima_taylor()
    # 4032 half hours from Monday 2000-06-05 00:00, British Summer Time all
    # along, so local clock times have no gap or repeat.
    index = pd.date_range("2000-06-05 00:00", periods=len(half_hourly), freq="30min")
    hourly = (
        pd.DataFrame({"load": half_hourly}, index=index).resample("h").mean()
    )
    path = work_dir / "taylor_hourly.csv"
    frame = hourly.reset_index(names="time")
    frame["time"] = frame["time"].dt.strftime("%Y-%m-%d %H:%M")
    frame.to_csv(path, index=False)
    return DataSet(
        name="taylor (England and Wales)",
        csv_path=path,
        time_column="time",
        value_column="load",
        feature_columns=[],
        time_format=None,
        # Four weeks of history before the first origin, as the regression
        # window needs, leaves 8 weeks of origins.
        start_date="2000-07-03",
        hourly=hourly,
    )


def run_smart_energy(binary: Path, data: DataSet, output: Path) -> pd.DataFrame:
    command = [
        str(binary),
        "forecast",
        "backtest",
        str(data.csv_path),
        "--time-column",
        data.time_column,
        "--value-column",
        data.value_column,
        "--timezone",
        "UTC",
        "--from",
        data.start_date,
        "--horizon",
        "24h",
        "--models",
        ",".join(SMART_ENERGY_MODELS),
        "--output",
        str(output),
    ]
    if data.feature_columns:
        command += ["--feature-columns", ",".join(data.feature_columns)]
    if data.time_format:
        command += ["--time-format", data.time_format]
    log(f"[{data.name}] running: {' '.join(command)}")
    started = time.monotonic()
    # stderr stays on the terminal, so smart-energy's progress bar shows.
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if completed.returncode != 0:
        raise SystemExit(
            f"smart-energy forecast backtest failed with exit code {completed.returncode} "
            f"on {data.csv_path}"
        )
    log(f"[{data.name}] smart-energy took {time.monotonic() - started:.1f} s; its report:")
    log(completed.stdout.rstrip())
    predictions = pd.read_csv(output)
    # Times are written with their offset (+00:00 for UTC); drop it to match
    # the naive local times of the pandas series.
    predictions["time"] = (
        pd.to_datetime(predictions["time"], utc=True).dt.tz_localize(None)
    )
    return predictions


def calendar_features(index: pd.DatetimeIndex, extra: pd.DataFrame) -> np.ndarray:
    """Hour-of-day dummies (midnight is the baseline), weekend, and the extra columns."""
    hours = index.hour.to_numpy()
    dummies = (hours[:, None] == np.arange(1, HOURS_PER_DAY)[None, :]).astype(float)
    weekend = (index.day_of_week.to_numpy() >= 5).astype(float)[:, None]
    columns = [dummies, weekend]
    if not extra.empty:
        columns.append(extra.to_numpy(dtype=float))
    return np.hstack(columns)


def forecast_regression(history: pd.DataFrame, future: pd.DataFrame, features: list[str]) -> np.ndarray:
    from sklearn.linear_model import LinearRegression

    train = history.iloc[-WINDOW_HOURS:]
    model = LinearRegression()
    model.fit(calendar_features(train.index, train[features]), train["load"].to_numpy())
    return model.predict(calendar_features(future.index, future[features]))


def forecast_ets(history: pd.DataFrame, horizon: int) -> np.ndarray:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    train = history["load"].iloc[-WINDOW_HOURS:].to_numpy()
    model = ExponentialSmoothing(
        train,
        trend="add",
        damped_trend=True,
        seasonal="add",
        seasonal_periods=HOURS_PER_DAY,
        initialization_method="estimated",
    )
    with warnings.catch_warnings():
        # Convergence warnings on some origins are expected; the forecast is
        # still scored like every other.
        warnings.simplefilter("ignore")
        fitted = model.fit()
    return fitted.forecast(horizon)


def forecast_mstl(history: pd.DataFrame, horizon: int) -> np.ndarray:
    """MSTL with 24 h and 168 h seasons on the last 8 weeks, like the
    smart-energy `mstl` model: a damped-trend exponential smoothing model
    forecasts trend plus remainder, and the last cycle of each season repeats."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing
    from statsmodels.tsa.seasonal import MSTL

    train = history["load"].iloc[-MSTL_WINDOW_HOURS:].to_numpy()
    periods = (HOURS_PER_DAY, 7 * HOURS_PER_DAY)
    decomposition = MSTL(train, periods=periods).fit()
    adjusted = decomposition.trend + decomposition.resid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trend = ExponentialSmoothing(
            adjusted, trend="add", damped_trend=True, initialization_method="estimated"
        ).fit()
    forecast = trend.forecast(horizon)
    seasonal = np.asarray(decomposition.seasonal)
    steps = np.arange(horizon)
    for column, period in enumerate(periods):
        last_cycle = seasonal[-period:, column]
        forecast = forecast + last_cycle[steps % period]
    return forecast


def forecast_naive(history: pd.DataFrame, horizon: int) -> np.ndarray:
    last_day = history["load"].iloc[-HOURS_PER_DAY:].to_numpy()
    return np.resize(last_day, horizon)


def run_python_models(data: DataSet, origins: list[pd.Timestamp], horizon: int) -> dict[str, pd.DataFrame]:
    series = data.hourly
    features = [column for column in series.columns if column != "load"]
    rows: dict[str, list[pd.DataFrame]] = {
        "python seasonal naive": [],
        "scikit-learn LinearRegression": [],
        "statsmodels ETS (damped, 24 h season)": [],
        "statsmodels MSTL (24 h, 168 h) + ETS trend": [],
    }
    started = time.monotonic()
    for done, origin in enumerate(origins, start=1):
        history = series.loc[series.index < origin]
        future = series.loc[origin : origin + pd.Timedelta(hours=horizon - 1)]
        predicted = {
            "python seasonal naive": forecast_naive(history, horizon),
            "scikit-learn LinearRegression": forecast_regression(history, future, features),
            "statsmodels ETS (damped, 24 h season)": forecast_ets(history, horizon),
            "statsmodels MSTL (24 h, 168 h) + ETS trend": forecast_mstl(history, horizon),
        }
        for model, values in predicted.items():
            rows[model].append(
                pd.DataFrame(
                    {"time": future.index, "actual": future["load"].to_numpy(), "predicted": values}
                )
            )
        if done % 10 == 0 or done == len(origins):
            log(
                f"[{data.name}] python models: {done}/{len(origins)} origins, "
                f"{time.monotonic() - started:.1f} s"
            )
    return {model: pd.concat(parts, ignore_index=True) for model, parts in rows.items()}


def score(frame: pd.DataFrame) -> tuple[float, float, float, int]:
    scored = frame.dropna(subset=["actual"])
    error = scored["actual"] - scored["predicted"]
    mae = float(error.abs().mean())
    rmse = float(np.sqrt((error**2).mean()))
    mape = float((error / scored["actual"]).abs().mean() * 100.0)
    return mae, rmse, mape, len(scored)


def compare(binary: Path, data: DataSet, work_dir: Path) -> list[dict]:
    output = work_dir / f"{data.csv_path.stem}_predictions.csv"
    predictions = run_smart_energy(binary, data, output)

    origins = sorted(
        predictions.loc[predictions["model"] == "naive", "time"]
        .loc[lambda times: times.dt.hour == 0]
        .unique()
    )
    horizon = HOURS_PER_DAY
    python_results = run_python_models(data, [pd.Timestamp(origin) for origin in origins], horizon)

    # Both sides must have scored the same hours on the same hourly values.
    ours_naive = predictions.loc[predictions["model"] == "naive"].reset_index(drop=True)
    theirs_naive = python_results["python seasonal naive"]
    if len(ours_naive) != len(theirs_naive) or not (ours_naive["time"] == theirs_naive["time"]).all():
        raise SystemExit(f"[{data.name}] smart-energy and pandas forecast different hours")
    worst_actual = float((ours_naive["actual"] - theirs_naive["actual"]).abs().max())
    worst_naive = float((ours_naive["predicted"] - theirs_naive["predicted"]).abs().max())
    log(
        f"[{data.name}] hourly resampling check: max |actual difference| {worst_actual:.3g}, "
        f"max |seasonal naive difference| {worst_naive:.3g}"
    )
    tolerance = 1e-6 * float(theirs_naive["actual"].abs().max())
    if worst_actual > tolerance or worst_naive > tolerance:
        raise SystemExit(f"[{data.name}] smart-energy and pandas read different hourly values")

    results = []
    for model in SMART_ENERGY_MODELS:
        frame = predictions.loc[predictions["model"] == model]
        results.append(("smart-energy " + model, frame))
    results += [(model, frame) for model, frame in python_results.items() if model != "python seasonal naive"]

    baseline_mape = score(predictions.loc[predictions["model"] == "naive"])[2]
    table = []
    for model, frame in results:
        mae, rmse, mape, count = score(frame)
        table.append(
            {
                "data set": data.name,
                "model": model,
                "origins": len(origins),
                "hours": count,
                "MAE": mae,
                "RMSE": rmse,
                "MAPE %": mape,
                "MAPE / naive": mape / baseline_mape,
            }
        )
    table += chosen_rows(data, predictions, origins)
    return table


def chosen_rows(data: DataSet, predictions: pd.DataFrame, origins: list) -> list[dict]:
    """Rows for the model that the backtest chooses among DEFAULT_MODELS.

    The first row chooses and scores on all origins, as `smart-energy forecast
    backtest` reports it, so its error is optimistic. The second row chooses on
    the first half of the origins and scores on the second half only, against
    seasonal naive on that same half.
    """
    by_model = {model: predictions.loc[predictions["model"] == model] for model in DEFAULT_MODELS}
    in_sample = min(DEFAULT_MODELS, key=lambda model: score(by_model[model])[2])

    split = pd.Timestamp(origins[len(origins) // 2])
    # Every origin is a midnight and the horizon is one day, so an hour's
    # origin is the start of its day.
    day = predictions["time"].dt.floor("D")
    first, second = predictions.loc[day < split], predictions.loc[day >= split]
    first_count = sum(1 for origin in origins if pd.Timestamp(origin) < split)
    held_out = min(
        DEFAULT_MODELS, key=lambda model: score(first.loc[first["model"] == model])[2]
    )

    rows = []
    for label, frame, baseline, origin_count in [
        (
            f"chosen over all origins: {in_sample}",
            by_model[in_sample],
            by_model["naive"],
            len(origins),
        ),
        (
            f"chosen on the first {first_count} origins, scored on the rest: {held_out}",
            second.loc[second["model"] == held_out],
            second.loc[second["model"] == "naive"],
            len(origins) - first_count,
        ),
    ]:
        mae, rmse, mape, count = score(frame)
        rows.append(
            {
                "data set": data.name,
                "model": "smart-energy " + label,
                "origins": origin_count,
                "hours": count,
                "MAE": mae,
                "RMSE": rmse,
                "MAPE %": mape,
                "MAPE / naive": mape / score(baseline)[2],
            }
        )
    return rows


def print_table(rows: list[dict]) -> None:
    header = "| data set | model | origins | hours | MAE | RMSE | MAPE % | MAPE / naive |"
    print(header)
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['data set']} | {row['model']} | {row['origins']} | {row['hours']} | "
            f"{row['MAE']:.1f} | {row['RMSE']:.1f} | {row['MAPE %']:.2f} | {row['MAPE / naive']:.3f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smart-energy", type=Path, required=True, help="path of the smart-energy binary")
    parser.add_argument("--tetouan", type=Path, help="path of tetouan_city_power_10min.csv; skipped if absent")
    parser.add_argument("--work-dir", type=Path, required=True, help="folder for generated CSV files")
    args = parser.parse_args()

    args.work_dir.mkdir(parents=True, exist_ok=True)
    data_sets = []
    if args.tetouan is not None:
        data_sets.append(load_tetouan(args.tetouan))
    data_sets.append(load_taylor(args.work_dir))

    rows = []
    for data in data_sets:
        rows += compare(args.smart_energy, data, args.work_dir)
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
