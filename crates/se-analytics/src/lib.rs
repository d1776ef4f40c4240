//! Analytics for Smart Energy: least-squares regression on tables, hourly
//! load forecasting with a rolling-origin backtest, anomaly detection
//! ([`anomaly`]) and savings recommendations ([`recommend`]).
//!
//! Everything here is free of I/O except reading CSV from a caller-supplied
//! reader, so the command line and the server can share it.

pub mod auto_forecast;
pub mod anomaly;
pub mod backtest;
mod error;
pub mod forecast;
pub mod linear;
pub mod metrics;
pub mod ols;
pub mod recommend;
pub mod series;
pub mod table;
pub mod warnings;
mod text;

pub use backtest::{
    run_backtest, BacktestConfig, BacktestProgress, BacktestReport, ModelResult, SelectionMetric,
};
pub use error::{AnalyticsError, Result};
pub use forecast::{model_by_name, FittedForecaster, Forecast, Forecaster, ModelOptions};
pub use metrics::ErrorMetrics;
pub use ols::{Encoding, OrdinalMap, TableModel, TableRegressionOptions};
pub use series::{HourlySeries, LoadSummary, SeriesSpec};
pub use table::Table;
