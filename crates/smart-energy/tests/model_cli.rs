//! End-to-end tests of `smart-energy model fit` on generated tables.

use std::path::Path;
use std::process::{Command, Output};

/// Exact coefficients of the generated target.
const INTERCEPT: f64 = 700.0;
const AREA: f64 = 0.25;
const OCCUPANTS: f64 = 12.0;
const TEMPERATURE: f64 = -7.5;
const COMMERCIAL: f64 = 300.0;
const INDUSTRIAL: f64 = 900.0;
const WEEKEND: f64 = -80.0;

/// A table whose `Energy` column is an exact linear function of the others,
/// with one-hot effects for `Building` (baseline Residential) and `Day`
/// (baseline Weekday).
fn generated_table(rows: usize, offset: usize) -> String {
    let buildings = ["Residential", "Commercial", "Industrial"];
    let mut csv = String::from("Building,Area,Occupants,Temperature,Day,Energy\n");
    for i in offset..offset + rows {
        let building = buildings[(i * 7) % 3];
        let weekend = (i / 5) % 2 == 1;
        let area = 500.0 + ((i * 131) % 4000) as f64;
        let occupants = ((i * 17) % 60) as f64;
        let temperature = 10.0 + ((i * 29) % 250) as f64 / 10.0;
        let building_effect = match building {
            "Commercial" => COMMERCIAL,
            "Industrial" => INDUSTRIAL,
            _ => 0.0,
        };
        let energy = INTERCEPT
            + AREA * area
            + OCCUPANTS * occupants
            + TEMPERATURE * temperature
            + building_effect
            + if weekend { WEEKEND } else { 0.0 };
        let day = if weekend { "Weekend" } else { "Weekday" };
        csv.push_str(&format!(
            "{building},{area},{occupants},{temperature},{day},{energy}\n"
        ));
    }
    csv
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

fn smart_energy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smart-energy"))
        .args(args)
        .env("LANG", "C")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .output()
        .unwrap()
}

/// Value printed after `name` on its coefficient line ("  name   value").
fn coefficient(stdout: &str, name: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|line| {
            line.trim_start().starts_with(name) && line.trim_start()[name.len()..].starts_with("  ")
        })
        .unwrap_or_else(|| panic!("no coefficient line for {name} in:\n{stdout}"));
    line.split_whitespace().last().unwrap().parse().unwrap()
}

/// Value after `label` (such as "MSE") on the line starting with `prefix`.
fn metric(stdout: &str, prefix: &str, label: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} line in:\n{stdout}"));
    let after = line.split(&format!("{label} ")).nth(1).unwrap();
    after.split(',').next().unwrap().trim().parse().unwrap()
}

/// Exact data: the SVD solution agrees to about 1e-9; printed with 6 decimals.
const TOLERANCE: f64 = 1e-5;

#[test]
fn one_hot_fit_recovers_coefficients() {
    let dir = tempfile::tempdir().unwrap();
    let train = write(dir.path(), "train.csv", &generated_table(200, 0));
    let test = write(dir.path(), "test.csv", &generated_table(40, 1000));
    let output = smart_energy(&[
        "model", "fit", &train, "--target", "Energy", "--test", &test,
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    assert!(
        (coefficient(&stdout, "(intercept)") - INTERCEPT).abs() < TOLERANCE,
        "{stdout}"
    );
    assert!(
        (coefficient(&stdout, "Area") - AREA).abs() < TOLERANCE,
        "{stdout}"
    );
    assert!(
        (coefficient(&stdout, "Occupants") - OCCUPANTS).abs() < TOLERANCE,
        "{stdout}"
    );
    assert!(
        (coefficient(&stdout, "Temperature") - TEMPERATURE).abs() < TOLERANCE,
        "{stdout}"
    );
    assert!(
        (coefficient(&stdout, "Building=Commercial") - COMMERCIAL).abs() < TOLERANCE,
        "{stdout}"
    );
    assert!(
        (coefficient(&stdout, "Building=Industrial") - INDUSTRIAL).abs() < TOLERANCE,
        "{stdout}"
    );
    assert!(
        (coefficient(&stdout, "Day=Weekend") - WEEKEND).abs() < TOLERANCE,
        "{stdout}"
    );
}

#[test]
fn exact_fit_has_zero_test_mse() {
    let dir = tempfile::tempdir().unwrap();
    let train = write(dir.path(), "train.csv", &generated_table(200, 0));
    let test = write(dir.path(), "test.csv", &generated_table(40, 1000));
    let output = smart_energy(&[
        "model", "fit", &train, "--target", "Energy", "--test", &test,
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(metric(&stdout, "Train:", "MSE") < 1e-9, "{stdout}");
    assert!(metric(&stdout, "Test:", "MSE") < 1e-9, "{stdout}");
    assert!(
        (metric(&stdout, "Test:", "R²") - 1.0).abs() < 1e-9,
        "{stdout}"
    );
}

#[test]
fn ordinal_map_sets_codes() {
    // Codes Residential 0, Commercial 1, Industrial 3 make the building effect
    // exactly 300 per code step, and Weekday 1 / Weekend 0 flips the day sign.
    let dir = tempfile::tempdir().unwrap();
    let train = write(dir.path(), "train.csv", &generated_table(200, 0));
    let map = "Building=Residential:0,Commercial:1,Industrial:3;Day=Weekday:1,Weekend:0";
    let output = smart_energy(&[
        "model",
        "fit",
        &train,
        "--target",
        "Energy",
        "--encoding",
        "ordinal",
        "--ordinal-map",
        map,
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        (coefficient(&stdout, "Building") - 300.0).abs() < TOLERANCE,
        "{stdout}"
    );
    assert!(
        (coefficient(&stdout, "Day") + WEEKEND).abs() < TOLERANCE,
        "{stdout}"
    );
    assert!(
        (coefficient(&stdout, "(intercept)") - (INTERCEPT + WEEKEND)).abs() < TOLERANCE,
        "{stdout}"
    );
}

#[test]
fn text_in_numeric_column_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut table = generated_table(20, 0);
    table.push_str("Residential,12x0,3,20,Weekday,1000\n");
    let train = write(dir.path(), "train.csv", &table);
    let output = smart_energy(&["model", "fit", &train, "--target", "Energy"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("\"12x0\""), "{stderr}");
    assert!(stderr.contains("line 22"), "{stderr}");
    assert!(stderr.contains("column \"Area\""), "{stderr}");
    assert!(stderr.contains("remove the row"), "{stderr}");
}

#[test]
fn missing_target_column_fails() {
    let dir = tempfile::tempdir().unwrap();
    let train = write(dir.path(), "train.csv", &generated_table(20, 0));
    let output = smart_energy(&["model", "fit", &train, "--target", "Energy Consumption"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("\"Energy Consumption\""), "{stderr}");
    assert!(
        stderr.contains("\"Energy\""),
        "available columns are listed: {stderr}"
    );
}

#[test]
fn unseen_test_category_fails() {
    let dir = tempfile::tempdir().unwrap();
    let train = write(dir.path(), "train.csv", &generated_table(40, 0));
    let test = write(
        dir.path(),
        "test.csv",
        "Building,Area,Occupants,Temperature,Day,Energy\nWarehouse,900,2,18,Weekday,1000\n",
    );
    let output = smart_energy(&[
        "model", "fit", &train, "--target", "Energy", "--test", &test,
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("unknown category \"Warehouse\""),
        "{stderr}"
    );
}

#[test]
fn too_few_rows_fails() {
    // Rows 0..4 have all three buildings but only weekdays: intercept, two
    // building dummies and three numeric columns make 6 parameters.
    let dir = tempfile::tempdir().unwrap();
    let train = write(dir.path(), "train.csv", &generated_table(4, 0));
    let output = smart_energy(&["model", "fit", &train, "--target", "Energy"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("4 rows but the model has 6 parameters"),
        "{stderr}"
    );
}

#[test]
fn french_locale_translates_errors() {
    let dir = tempfile::tempdir().unwrap();
    let train = write(dir.path(), "train.csv", &generated_table(20, 0));
    let output = Command::new(env!("CARGO_BIN_EXE_smart-energy"))
        .args(["model", "fit", &train, "--target", "Puissance"])
        .env("LANG", "fr_FR.UTF-8")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("introuvable"), "{stderr}");
}
