//! End-to-end test of the web UI in headless Chromium driven over WebDriver
//! (chromedriver), against an in-process server with a real SQLite store.
//!
//! Without chromium or chromedriver the test prints "skipped: <reason>" and
//! passes, unless SMART_ENERGY_REQUIRE_SERVICES=1 makes a missing browser a
//! failure. It writes screenshots to /tmp/se-*.png, such as /tmp/se-dashboard.png
//! and /tmp/se-site-forecast.png.

mod common;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use se_core::{now_ms, ChannelName, DeviceId, Metric, Reading, RejectReason, Rejection};
use se_store::{SqliteStore, Store};
use se_web::{Health, LiveSender, LiveUpdate, LiveValue, WebState};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

const ADMIN_PASSWORD: &str = "browser-test-password";
const WAIT: Duration = Duration::from_secs(15);

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Returns the Chromium executable, preferring the real binary over Debian's
/// shell launcher, so chromedriver controls the browser process directly.
fn find_chromium() -> Option<PathBuf> {
    let debian_binary = Path::new("/usr/lib/chromium/chromium");
    if debian_binary.is_file() {
        return Some(debian_binary.to_owned());
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find_map(find_in_path)
}

/// Returns the browser and driver, or the reason the test cannot run.
fn browser_tools() -> Result<(PathBuf, PathBuf), String> {
    let chromium = find_chromium().ok_or("chromium not found (Debian package chromium)")?;
    let driver = find_in_path("chromedriver")
        .ok_or("chromedriver not found in PATH (Debian package chromium-driver)")?;
    Ok((chromium, driver))
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn start_driver(driver: &Path) -> (Child, String) {
    let port = free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(response) = reqwest::get(format!("{url}/status")).await {
            if response.status().is_success() {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromedriver did not answer on {url} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, url)
}

async fn connect_browser(driver_url: &str, chromium: &Path, profile: &Path) -> Client {
    let args = [
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--lang=en-US".to_owned(),
        "--window-size=1280,900".to_owned(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({ "binary": chromium.to_string_lossy(), "args": args }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(driver_url)
        .await
        .unwrap()
}

/// Polls the text of the first element matching `css` until `accept` holds.
async fn wait_for_text(browser: &Client, css: &str, accept: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = String::new();
    loop {
        if let Ok(element) = browser.find(Locator::Css(css)).await {
            if let Ok(text) = element.text().await {
                if accept(&text) {
                    return text;
                }
                last = text;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "text of {css} never matched within {WAIT:?}; last was {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_element(browser: &Client, css: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("no element {css} within {WAIT:?}: {error}"))
}

async fn screenshot(browser: &Client, path: &str) {
    let png = browser.screenshot().await.unwrap();
    std::fs::write(path, png).unwrap();
}

fn power_update(device: &DeviceId, ts_ms: i64, gpu0_watts: f64) -> LiveUpdate {
    LiveUpdate {
        device: device.clone(),
        ts_ms,
        values: vec![LiveValue::new(
            ChannelName::parse("gpu0").unwrap(),
            Metric::Power,
            gpu0_watts,
        )],
    }
}

/// Counts the pixels of the first canvas under `arguments[0]` whose colour
/// is within `arguments[4]` of RGB (`arguments[1..4]`) and whose alpha lies
/// in `arguments[5]..arguments[6]`, so a check passes only when a line or an
/// area of that colour was drawn, not just the axes. -1 without a canvas.
const COUNT_COLOUR_PIXELS: &str = r#"
    const [selector, red, green, blue, tolerance, alphaMin, alphaMax] = arguments;
    const canvas = document.querySelector(selector);
    if (!canvas) return -1;
    const context = canvas.getContext('2d');
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let count = 0;
    for (let i = 0; i < pixels.length; i += 4) {
        if (Math.abs(pixels[i] - red) < tolerance && Math.abs(pixels[i + 1] - green) < tolerance
            && Math.abs(pixels[i + 2] - blue) < tolerance && pixels[i + 3] > alphaMin && pixels[i + 3] < alphaMax) count++;
    }
    return count;
"#;

/// A colour to count with [`COUNT_COLOUR_PIXELS`]: RGB, tolerance, alpha range.
struct Colour {
    rgb: [u8; 3],
    tolerance: u8,
    alpha: (u8, u16),
}

/// The mean line of history charts (#1f6feb), opaque.
const SERIES_LINE: Colour = Colour { rgb: [31, 111, 235], tolerance: 12, alpha: (200, 256) };
/// The forecast line (#d9730d), opaque.
const FORECAST_LINE: Colour = Colour { rgb: [217, 115, 13], tolerance: 12, alpha: (200, 256) };
/// The shaded anomaly segment: rgba(207, 34, 46, 0.15) on the transparent
/// canvas reads back as that colour with an alpha near 38.
const ANOMALY_SHADE: Colour = Colour { rgb: [207, 34, 46], tolerance: 16, alpha: (20, 60) };

/// Opens the dashboard, which redirects to the login form, and signs in.
async fn log_in(browser: &Client, base: &str, username: &str, password: &str) {
    browser.goto(&format!("{base}/")).await.unwrap();
    wait_for_element(browser, "#login-form").await;
    assert!(browser
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/login"));
    browser
        .find(Locator::Css("#username"))
        .await
        .unwrap()
        .send_keys(username)
        .await
        .unwrap();
    browser
        .find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    browser
        .find(Locator::Css("#login-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn scenario(browser: &Client, base: &str, live: &LiveSender) {
    let rig = DeviceId::parse("rig-01").unwrap();

    log_in(browser, base, "admin", ADMIN_PASSWORD).await;

    // The dashboard row shows the sum of power over the two GPUs: 209 + 100 W.
    let power_cell = r#"tr[data-device="rig-01"] td[data-cell="power"]"#;
    let power = wait_for_text(browser, power_cell, |text| !text.is_empty()).await;
    assert_eq!(power, "309 W");
    let meter = wait_for_text(
        browser,
        r#"tr[data-device="meter-01"] td[data-cell="power"]"#,
        |text| !text.is_empty(),
    )
    .await;
    assert_eq!(meter, "1,250 VA");

    // A live update replaces gpu0's power; the row follows without a reload.
    wait_for_element(browser, r#"#live-indicator[data-state="connected"]"#).await;
    live.send(power_update(&rig, now_ms(), 500.0)).unwrap();
    let updated = wait_for_text(browser, power_cell, |text| text != "309 W").await;
    assert_eq!(updated, "600 W");

    // French labels after the language switch.
    browser
        .find(Locator::Css(r#"button[data-lang="fr"]"#))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let heading = wait_for_text(browser, "main h1", |text| text != "Dashboard").await;
    assert_eq!(heading, "Tableau de bord");
    let power_header = wait_for_text(browser, "#device-table th:nth-child(2)", |_| true).await;
    assert_eq!(power_header, "Puissance");
    let live_label = wait_for_text(browser, "#live-indicator .live-text", |_| true).await;
    assert_eq!(live_label, "En direct");
    // The default site's stored English name reads in French too.
    let site_label = r#".site-card[data-site="default"] .stat-label"#;
    let today = wait_for_text(browser, site_label, |text| text.ends_with("aujourd'hui")).await;
    assert_eq!(today, "Site par défaut aujourd'hui");
    screenshot(browser, "/tmp/se-dashboard.png").await;

    // The device page draws the history with uPlot.
    browser
        .find(Locator::Css(r#"tr[data-device="rig-01"] a"#))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_drawn_pixels(browser, "#chart .uplot canvas", &SERIES_LINE, "series line").await;
    let selected_metric = browser
        .find(Locator::Css("#metric-select"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(selected_metric.as_deref(), Some("power_w"));

    // The device page follows live updates too.
    let value_cell = r#"tr[data-channel="gpu0"][data-metric="power_w"] td[data-cell="value"]"#;
    wait_for_element(browser, r#"#live-indicator[data-state="connected"]"#).await;
    live.send(power_update(&rig, now_ms() + 1000, 432.0))
        .unwrap();
    let latest = wait_for_text(browser, value_cell, |text| text.starts_with("432")).await;
    assert_eq!(latest, "432 W");
    browser.set_window_size(1280, 1300).await.unwrap();
    screenshot(browser, "/tmp/se-device.png").await;

    // Phone-sized layout, for a visual check of the stacked rows.
    browser.set_window_size(390, 844).await.unwrap();
    browser.goto(&format!("{base}/")).await.unwrap();
    wait_for_text(browser, power_cell, |text| !text.is_empty()).await;
    screenshot(browser, "/tmp/se-dashboard-phone.png").await;
}

async fn seed(store: &SqliteStore) {
    let now = now_ms();
    let rig = DeviceId::parse("rig-01").unwrap();
    let meter = DeviceId::parse("meter-01").unwrap();
    let mut readings = Vec::new();
    for step in 0..30 {
        let ts = now - 1_800_000 + step * 60_000;
        let wave = (step as f64 / 4.0).sin() * 15.0;
        readings.push(Reading::new(
            rig.clone(),
            "gpu0",
            Metric::Power,
            ts,
            195.0 + wave,
        ));
        readings.push(Reading::new(rig.clone(), "gpu1", Metric::Power, ts, 100.0));
        readings.push(Reading::new(
            rig.clone(),
            "gpu0",
            Metric::Temperature,
            ts,
            61.0 + wave / 5.0,
        ));
        readings.push(Reading::new(
            meter.clone(),
            "main",
            Metric::ApparentPower,
            ts,
            1250.0,
        ));
    }
    readings.push(Reading::new(
        rig.clone(),
        "gpu0",
        Metric::Power,
        now - 30_000,
        209.0,
    ));
    store.write_readings(&readings).await.unwrap();
    store.set_device_online(&rig, true, now).await.unwrap();
}

/// The server side of a browser test.
struct Harness {
    base: String,
    live: LiveSender,
    store: Arc<SqliteStore>,
}

/// Starts a server with a fresh store and an admin account, a chromedriver and
/// a browser, runs `scenario`, and stops everything even when it fails.
/// Returns `None` when the test was skipped for lack of a browser.
async fn with_browser(
    admin_password: Option<&str>,
    scenario: impl AsyncFnOnce(&Client, &Harness, Option<String>),
) -> Option<()> {
    let require = std::env::var("SMART_ENERGY_REQUIRE_SERVICES").is_ok_and(|value| value == "1");
    let (chromium, driver_path) = match browser_tools() {
        Ok(tools) => tools,
        Err(reason) if require => panic!("SMART_ENERGY_REQUIRE_SERVICES=1 but {reason}"),
        Err(reason) => {
            println!("skipped: {reason}");
            return None;
        }
    };

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
    let generated = se_web::ensure_admin(store.as_ref(), admin_password.map(str::to_owned))
        .await
        .unwrap();
    let live = se_web::live_channel();
    let state = WebState::new(store.clone(), live.clone(), Arc::new(Health::new()));
    let listener = se_web::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(se_web::serve(listener, state, shutdown.clone()));

    let (mut driver, driver_url) = start_driver(&driver_path).await;
    let browser = connect_browser(&driver_url, &chromium, &dir.path().join("profile")).await;
    let harness = Harness { base, live, store };

    // Close the browser even when an assertion fails, then report the failure.
    let outcome = AssertUnwindSafe(scenario(&browser, &harness, generated))
        .catch_unwind()
        .await;
    let _ = browser.close().await;
    let _ = driver.kill().await;
    shutdown.cancel();
    let _ = server.await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_live_language_and_chart() {
    with_browser(Some(ADMIN_PASSWORD), async |browser, harness, _| {
        seed(&harness.store).await;
        scenario(browser, &harness.base, &harness.live).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_errors_page_lists_rejections() {
    with_browser(Some(ADMIN_PASSWORD), async |browser, harness, _| {
        let rejection = Rejection::new(
            RejectReason::NotANumber,
            "se/rig-01/gpu",
            "nan",
            "value \"nan\" is not a number",
        )
        .with_device(Some(DeviceId::parse("rig-01").unwrap()))
        .with_field("power_w");
        harness
            .store
            .record_rejections(&[rejection], now_ms())
            .await
            .unwrap();
        log_in(browser, &harness.base, "admin", ADMIN_PASSWORD).await;
        wait_for_element(browser, "#device-table").await;

        browser
            .goto(&format!("{}/ingest-errors", harness.base))
            .await
            .unwrap();
        let count = wait_for_text(browser, "#count-rows tr td:nth-child(3)", |text| {
            !text.is_empty()
        })
        .await;
        assert_eq!(count, "1");
        let reason = wait_for_text(browser, "#recent-rows tr td:nth-child(6)", |text| {
            !text.is_empty()
        })
        .await;
        assert!(reason.starts_with("value is not a number"), "{reason}");

        browser
            .find(Locator::Css(r#"button[data-lang="fr"]"#))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let french = wait_for_text(browser, "#recent-rows tr td:nth-child(6)", |text| {
            !text.starts_with("value")
        })
        .await;
        assert!(
            french.starts_with("la valeur n'est pas un nombre"),
            "{french}"
        );
        screenshot(browser, "/tmp/se-ingest-errors.png").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_password_forces_change_form() {
    with_browser(None, async |browser, harness, generated| {
        let password = generated.expect("ensure_admin returns the generated password");
        browser
            .goto(&format!("{}/login", harness.base))
            .await
            .unwrap();
        wait_for_element(browser, "#login-form").await;
        screenshot(browser, "/tmp/se-login.png").await;
        browser
            .find(Locator::Css("#username"))
            .await
            .unwrap()
            .send_keys("admin")
            .await
            .unwrap();
        browser
            .find(Locator::Css("#password"))
            .await
            .unwrap()
            .send_keys(&password)
            .await
            .unwrap();
        browser
            .find(Locator::Css("#login-submit"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();

        // The change form replaces the login form, with the current password already known.
        wait_for_element(browser, "#password-section:not([hidden])").await;
        let current_hidden = browser
            .find(Locator::Css("#current-password-field"))
            .await
            .unwrap()
            .attr("hidden")
            .await
            .unwrap();
        assert!(
            current_hidden.is_some(),
            "the current password field should be hidden"
        );
        browser
            .find(Locator::Css("#new-password"))
            .await
            .unwrap()
            .send_keys("my-own-password-1")
            .await
            .unwrap();
        browser
            .find(Locator::Css("#confirm-password"))
            .await
            .unwrap()
            .send_keys("my-own-password-1")
            .await
            .unwrap();
        browser
            .find(Locator::Css("#password-form button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();

        wait_for_element(browser, "#summary").await;
        let user = harness.store.user_by_name("admin").await.unwrap().unwrap();
        assert!(!user.must_change_password);
        assert!(se_web::verify_password(
            "my-own-password-1",
            &user.password_hash
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_device_approved_from_sites_page() {
    with_browser(Some(ADMIN_PASSWORD), async |browser, harness, _| {
        let plug = DeviceId::parse("plug-1").unwrap();
        let farm = se_store::Site {
            id: "farm".into(),
            name: "Farm".into(),
            time_zone: "UTC".into(),
            currency: "EUR".into(),
            tariff_json: None,
            co2_g_per_kwh: None,
        };
        harness.store.upsert_site(&farm).await.unwrap();
        let announcement = se_core::Announcement {
            device: plug.clone(),
            format: "tasmota".into(),
            name: Some("Rig plug".into()),
            model: Some("Sonoff Pow R2".into()),
            payload: r#"{"t":"plug-1"}"#.into(),
        };
        let batch = se_store::IngestBatch {
            readings: vec![Reading::new(plug.clone(), "main", Metric::Power, now_ms(), 45.0)],
            announcements: vec![(plug.clone(), announcement, now_ms())],
            ..se_store::IngestBatch::default()
        };
        harness.store.write_ingest_batch(&batch).await.unwrap();

        log_in(browser, &harness.base, "admin", ADMIN_PASSWORD).await;
        wait_for_element(browser, "#device-table").await;
        browser.goto(&format!("{}/admin/sites", harness.base)).await.unwrap();
        let row = r#"tr[data-discovered="plug-1"]"#;
        let model = wait_for_text(browser, &format!("{row} td:nth-child(3)"), |text| !text.is_empty()).await;
        assert_eq!(model, "Sonoff Pow R2");
        screenshot(browser, "/tmp/se-discovered.png").await;

        let farm_option = r#"select[data-discovered-site="plug-1"] option[value="farm"]"#;
        browser.find(Locator::Css(farm_option)).await.unwrap().click().await.unwrap();
        browser.find(Locator::Css(&format!(r#"{row} button[data-action="approve"]"#))).await.unwrap().click().await.unwrap();

        // After approval the device leaves the discovered list and shows in the device table with its site.
        wait_for_element(browser, r#"select[data-device="plug-1"]"#).await;
        let notice = wait_for_text(browser, "#discovered-message", |text| !text.is_empty()).await;
        assert_eq!(notice, "Device plug-1 approved.");
        assert!(browser.find(Locator::Css(row)).await.is_err(), "approved device still listed as discovered");
        assert_eq!(harness.store.site_devices("farm").await.unwrap(), vec![plug]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tariff_editor_prices_today_card() {
    with_browser(Some(ADMIN_PASSWORD), async |browser, harness, _| {
        // 1 kWh inside today (UTC, the default site's zone): a constant power
        // over a span that ends before now, followed by 0 W.
        let now = now_ms();
        let midnight = now - now.rem_euclid(86_400_000);
        let span_ms = (now - midnight).min(7_200_000) / 2;
        let start = midnight + span_ms / 2;
        let watts = 1000.0 * 3_600_000.0 / span_ms as f64;
        let meter = DeviceId::parse("meter-tariff").unwrap();
        let readings = vec![
            Reading::new(meter.clone(), "main", Metric::Power, start, watts),
            Reading::new(meter.clone(), "main", Metric::Power, start + span_ms, 0.0),
        ];
        harness.store.write_readings(&readings).await.unwrap();

        log_in(browser, &harness.base, "admin", ADMIN_PASSWORD).await;
        wait_for_element(browser, "#device-table").await;
        browser.goto(&format!("{}/admin/sites", harness.base)).await.unwrap();
        let card = r#"div[data-site="default"]"#;
        let textarea = wait_for_element(browser, &format!("{card} textarea[name=tariff]")).await;
        let save = format!(r#"{card} button[data-action="save-tariff"]"#);

        // A tariff without a price is refused with the server's explanation.
        textarea.send_keys(r#"{"currency":"EUR","energy":{"type":"flat"}}"#).await.unwrap();
        browser.find(Locator::Css(&save)).await.unwrap().click().await.unwrap();
        let refused = wait_for_text(browser, &format!(r#"{card} p[data-field="message"].alert"#), |text| !text.is_empty()).await;
        assert!(refused.starts_with("The tariff is invalid"), "{refused}");

        textarea.clear().await.unwrap();
        textarea.send_keys(r#"{"currency":"EUR","energy":{"type":"flat","price_per_kwh":"0.25"}}"#).await.unwrap();
        browser.find(Locator::Css(&save)).await.unwrap().click().await.unwrap();
        let saved = wait_for_text(browser, &format!(r#"{card} p[data-field="message"].notice"#), |text| !text.is_empty()).await;
        assert!(saved.starts_with("Tariff saved"), "{saved}");

        browser.goto(&format!("{}/", harness.base)).await.unwrap();
        let kwh = wait_for_text(browser, r#".site-card[data-site="default"] [data-field="kwh"]"#, |text| !text.is_empty()).await;
        // The meter is silent since its last sample, so the rest of the day is unknown.
        assert_eq!(kwh, "at least 1 kWh");
        let cost = wait_for_text(browser, r#".site-card[data-site="default"] [data-field="cost"]"#, |text| text.contains("EUR")).await;
        assert_eq!(cost, "Cost: 0.25 EUR");
        screenshot(browser, "/tmp/se-tariff.png").await;
    })
    .await;
}


async fn wait_for_forecast_line(browser: &Client) {
    wait_for_drawn_pixels(browser, "#forecast-chart .uplot canvas", &FORECAST_LINE, "forecast line").await;
}

/// Waits until `selector` exists and more than 50 of its pixels have
/// `colour`, or fails the test after [`WAIT`].
async fn wait_for_drawn_pixels(browser: &Client, selector: &str, colour: &Colour, line: &str) {
    wait_for_element(browser, selector).await;
    let [red, green, blue] = colour.rgb;
    let arguments = vec![
        selector.into(),
        red.into(),
        green.into(),
        blue.into(),
        colour.tolerance.into(),
        colour.alpha.0.into(),
        colour.alpha.1.into(),
    ];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let drawn = browser
            .execute(COUNT_COLOUR_PIXELS, arguments.clone())
            .await
            .unwrap()
            .as_i64()
            .unwrap_or(-1);
        if drawn > 50 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{selector} shows no {line}; {drawn} pixels of its colour"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_forecast_chart_and_warning() {
    with_browser(Some(ADMIN_PASSWORD), async |browser, harness, _| {
        // 21 days of a daily cycle around 800 W with ±60 W of noise, every 15
        // minutes, on the site "farm" whose demand limit of 0.1 kW the forecast passes.
        let rig = DeviceId::parse("rig-fc").unwrap();
        let now = now_ms();
        let steps = 21 * 24 * 4;
        let readings: Vec<Reading> = (0..steps)
            .map(|step| {
                let ts = now - (steps - step) * 900_000;
                let hour_of_day = ts.rem_euclid(86_400_000) as f64 / 3_600_000.0;
                let noise = 120.0 * ((step as f64 * 0.618_033_988_75).fract() - 0.5);
                let watts = 800.0 + 300.0 * (2.0 * std::f64::consts::PI * hour_of_day / 24.0).sin() + noise;
                Reading::new(rig.clone(), "main", Metric::Power, ts, watts)
            })
            .collect();
        harness.store.write_readings(&readings).await.unwrap();
        let farm = se_store::Site {
            id: "farm".into(),
            name: "Farm".into(),
            time_zone: "UTC".into(),
            currency: "EUR".into(),
            tariff_json: None,
            co2_g_per_kwh: None,
        };
        harness.store.upsert_site(&farm).await.unwrap();
        harness.store.assign_device(&rig, "farm").await.unwrap();
        let limits = se_store::SiteLimits {
            demand_limit_kw: Some(0.1),
            ..se_store::SiteLimits::default()
        };
        harness.store.set_site_limits("farm", &limits).await.unwrap();

        log_in(browser, &harness.base, "admin", ADMIN_PASSWORD).await;
        wait_for_element(browser, "#device-table").await;

        // The dashboard's site card links to the site page and lists the warning.
        let card_warning = r#".site-card[data-site="farm"] [data-warning-kind="demand_forecast"]"#;
        let on_card = wait_for_text(browser, card_warning, |text| !text.is_empty()).await;
        assert!(on_card.starts_with("Tomorrow's peak will pass the demand limit"), "{on_card}");
        screenshot(browser, "/tmp/se-dashboard-warning.png").await;
        browser
            .find(Locator::Css(r#".site-card[data-site="farm"] a[data-field="forecast-link"]"#))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();

        let warning = wait_for_text(browser, r#"#warnings [data-warning-kind="demand_forecast"]"#, |text| !text.is_empty()).await;
        assert!(warning.contains("limit 0.1 kW"), "{warning}");
        wait_for_forecast_line(browser).await;
        let model = wait_for_text(browser, "#forecast-model", |text| text.contains("backtests")).await;
        assert!(model.contains("MAPE"), "{model}");
        assert!(model.contains("days of backtests"), "{model}");
        browser.set_window_size(1280, 1400).await.unwrap();
        screenshot(browser, "/tmp/se-site-forecast.png").await;

        // The week-ahead button loads the longer forecast.
        browser
            .find(Locator::Css(r#"button[data-horizon="168h"]"#))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_element(browser, r#"button[data-horizon="168h"][aria-pressed="true"]"#).await;
        wait_for_forecast_line(browser).await;

        // French strings after the language switch, including the server's warning text.
        browser
            .find(Locator::Css(r#"button[data-lang="fr"]"#))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let french = wait_for_text(browser, r#"#warnings [data-warning-kind="demand_forecast"]"#, |text| text.starts_with("Le pic")).await;
        assert!(french.contains("limite 0,1 kW"), "{french}");
        let model = wait_for_text(browser, "#forecast-model", |text| text.contains("jours")).await;
        assert!(model.contains("jours de backtests"), "{model}");

        // The device page has its own forecast chart.
        browser.goto(&format!("{}/devices/rig-fc", harness.base)).await.unwrap();
        wait_for_forecast_line(browser).await;
        screenshot(browser, "/tmp/se-device-forecast.png").await;
    })
    .await;
}

/// Readings of a 4-GPU rig over the last 2 hours, every 30 s: power around
/// 200 W ± 20 W at about 95 % utilization with a 250 W limit. With `faulty`,
/// GPU 1 repeats 200 W over the last 30 minutes (stuck) and GPU 2 reads
/// 520 W once, 20 minutes ago (a spike, and above 1.1 × the limit).
fn anomaly_rig(id: &str, faulty: bool) -> Vec<Reading> {
    let device = DeviceId::parse(id).unwrap();
    let now = now_ms();
    let steps = 240;
    let mut readings = Vec::new();
    for step in 0..steps {
        let ts = now - (steps - 1 - step) * 30_000;
        for gpu in 0..4 {
            let noise = ((step as f64 + 37.0 * gpu as f64) * 0.618_033_988_75).fract() - 0.5;
            let load_noise = (step as f64 * 0.414_213_562_37 + 0.25 * gpu as f64).fract() - 0.5;
            let mut watts = ((200.0 + 40.0 * noise) * 10.0).round() / 10.0;
            if faulty && gpu == 1 && step >= steps - 60 {
                watts = 200.0;
            }
            if faulty && gpu == 2 && step == steps - 40 {
                watts = 520.0;
            }
            let channel = format!("gpu{gpu}");
            readings.push(Reading::new(device.clone(), &channel, Metric::Power, ts, watts));
            readings.push(Reading::new(device.clone(), &channel, Metric::Utilization, ts, ((95.0 + 5.0 * load_noise) * 10.0).round() / 10.0));
            readings.push(Reading::new(device.clone(), &channel, Metric::PowerLimit, ts, 250.0));
        }
    }
    readings
}



#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_anomalies_list_and_chart() {
    with_browser(Some(ADMIN_PASSWORD), async |browser, harness, _| {
        let mut readings = anomaly_rig("rig-an", true);
        readings.extend(anomaly_rig("rig-ok", false));
        harness.store.write_readings(&readings).await.unwrap();
        for (id, name) in [("farm", "Farm"), ("calm", "Calm")] {
            let site = se_store::Site {
                id: id.into(),
                name: name.into(),
                time_zone: "UTC".into(),
                currency: "EUR".into(),
                tariff_json: None,
                co2_g_per_kwh: None,
            };
            harness.store.upsert_site(&site).await.unwrap();
        }
        harness.store.assign_device(&DeviceId::parse("rig-an").unwrap(), "farm").await.unwrap();
        harness.store.assign_device(&DeviceId::parse("rig-ok").unwrap(), "calm").await.unwrap();

        log_in(browser, &harness.base, "admin", ADMIN_PASSWORD).await;
        wait_for_element(browser, "#device-table").await;
        browser.goto(&format!("{}/sites/farm", harness.base)).await.unwrap();

        // Critical anomalies come first, so the stuck sensor (a warning) is last.
        let stuck_item = r#"#anomaly-list .anomaly-item[data-anomaly-kind="stuck"]"#;
        let stuck = wait_for_text(browser, stuck_item, |text| !text.is_empty()).await;
        assert!(stuck.contains("GPU 1 of rig-an: power stayed at exactly 200.0 W"), "{stuck}");
        assert!(stuck.starts_with("Warning"), "{stuck}");
        let items = browser.find_all(Locator::Css("#anomaly-list .anomaly-item")).await.unwrap();
        let mut kinds = Vec::new();
        for item in &items {
            kinds.push(item.attr("data-anomaly-kind").await.unwrap().unwrap_or_default());
        }
        assert_eq!(kinds, ["spike", "impossible", "stuck"]);
        let badge = wait_for_text(browser, r#".anomaly-item[data-anomaly-kind="spike"] .badge"#, |text| !text.is_empty()).await;
        assert_eq!(badge, "Critical");

        // Selecting the anomaly draws its series with the segment shaded.
        browser.find(Locator::Css(stuck_item)).await.unwrap().click().await.unwrap();
        wait_for_element(browser, &format!(r#"{stuck_item}[aria-pressed="true"]"#)).await;
        let chart_title = wait_for_text(browser, "#anomaly-chart-title", |text| !text.is_empty()).await;
        assert_eq!(chart_title, "rig-an · gpu1 · Power");
        wait_for_drawn_pixels(browser, "#anomaly-chart .uplot canvas", &SERIES_LINE, "series line").await;
        wait_for_drawn_pixels(browser, "#anomaly-chart .uplot canvas", &ANOMALY_SHADE, "shaded segment").await;
        browser.set_window_size(1280, 1500).await.unwrap();
        screenshot(browser, "/tmp/se-site-anomalies.png").await;

        // French: the server's messages and the badges follow the language, and the selection stays.
        browser.find(Locator::Css(r#"button[data-lang="fr"]"#)).await.unwrap().click().await.unwrap();
        let french = wait_for_text(browser, stuck_item, |text| text.contains("Le GPU")).await;
        assert!(french.contains("Le GPU 1 de rig-an : la puissance reste à exactement 200,0 W"), "{french}");
        assert!(french.starts_with("Avertissement"), "{french}");
        wait_for_element(browser, &format!(r#"{stuck_item}[aria-pressed="true"]"#)).await;
        wait_for_drawn_pixels(browser, "#anomaly-chart .uplot canvas", &SERIES_LINE, "series line").await;
        browser.find(Locator::Css(r#"button[data-lang="en"]"#)).await.unwrap().click().await.unwrap();
        // The page stores the choice once the English strings have loaded,
        // just before it redraws, so wait for the redraw before leaving.
        wait_for_text(browser, stuck_item, |text| text.starts_with("Warning")).await;

        // The page of a healthy site shows the empty-list text.
        browser.goto(&format!("{}/sites/calm", harness.base)).await.unwrap();
        let none = wait_for_text(browser, r#"#anomaly-list [data-anomalies="none"]"#, |text| !text.is_empty()).await;
        assert_eq!(none, "No anomaly in the last 6 hours.");
        browser.find(Locator::Css(r#"#anomalies-card button[data-hours="24"]"#)).await.unwrap().click().await.unwrap();
        let none = wait_for_text(browser, r#"#anomaly-list [data-anomalies="none"]"#, |text| text.contains("24")).await;
        assert_eq!(none, "No anomaly in the last 24 hours.");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommendation_applied_from_site_page() {
    with_browser(Some(ADMIN_PASSWORD), async |browser, harness, _| {
        // A week of a device idle on standby (80 W, 0 %) from 20:00 to 08:00
        // UTC and busy otherwise, every 30 minutes, and the recommendation to
        // switch it off when idle, as a run of the recommenders stores it.
        let rig = DeviceId::parse("rig-br").unwrap();
        let now = now_ms();
        let mut readings = Vec::new();
        for step in 0..7 * 48 {
            let ts = now - (7 * 48 - step) * 1_800_000;
            let busy = (8..20).contains(&(ts.rem_euclid(86_400_000) / 3_600_000));
            readings.push(Reading::new(rig.clone(), "main", Metric::Power, ts, if busy { 280.0 } else { 80.0 }));
            readings.push(Reading::new(rig.clone(), "main", Metric::Utilization, ts, if busy { 95.0 } else { 0.0 }));
        }
        harness.store.write_readings(&readings).await.unwrap();
        let farm = se_store::Site {
            id: "farm".into(),
            name: "Farm".into(),
            time_zone: "UTC".into(),
            currency: "EUR".into(),
            tariff_json: Some(r#"{"currency": "EUR", "energy": {"type": "flat", "price_per_kwh": "0.25"}}"#.into()),
            co2_g_per_kwh: None,
        };
        harness.store.upsert_site(&farm).await.unwrap();
        harness.store.assign_device(&rig, "farm").await.unwrap();
        let recommendation = se_store::NewRecommendation {
            site_id: "farm".into(),
            device: rig.clone(),
            channel: ChannelName::parse("main").unwrap(),
            action_type: "switch_off_when_idle".into(),
            action_json: r#"{"type":"switch_off_when_idle","standby_w":80.0,"idle_hours_per_day":12.0}"#.into(),
            kwh_per_month: 28.8,
            money_per_month: Some(rust_decimal::Decimal::new(720, 2)),
            currency: "EUR".into(),
            computed_ms: now,
        };
        let id = harness.store.upsert_recommendation(&recommendation).await.unwrap().id;

        log_in(browser, &harness.base, "admin", ADMIN_PASSWORD).await;
        wait_for_element(browser, "#device-table").await;
        browser.goto(&format!("{}/sites/farm", harness.base)).await.unwrap();

        let open_item = format!(r#"#recommendation-open li[data-recommendation-id="{id}"]"#);
        let message = wait_for_text(browser, &format!(r#"{open_item} [data-field="message"]"#), |text| !text.is_empty()).await;
        assert!(message.starts_with("rig-br is idle about 12.0 h a day while drawing 80 W"), "{message}");
        let estimate = wait_for_text(browser, &format!(r#"{open_item} [data-field="estimate"]"#), |text| !text.is_empty()).await;
        assert_eq!(estimate, "Estimated saving: 28.8 kWh · 7.20 EUR per month");
        let apply = browser.find(Locator::Css(&format!(r#"{open_item} button[data-action="apply"]"#))).await.unwrap();
        let tooltip = apply.attr("title").await.unwrap().unwrap_or_default();
        assert!(tooltip.contains("sends no command to the device"), "{tooltip}");
        browser.set_window_size(1280, 1400).await.unwrap();
        screenshot(browser, "/tmp/se-site-recommendations.png").await;

        apply.click().await.unwrap();

        // The recommendation moves to the applied list, with its estimate and why no saving is measured yet.
        let applied_item = format!(r#"#recommendation-applied li[data-recommendation-id="{id}"]"#);
        let note = wait_for_text(browser, &format!(r#"{applied_item} [data-field="achieved-note"]"#), |text| !text.is_empty()).await;
        assert!(note.starts_with("Not measured yet: 0.0 days since it was applied"), "{note}");
        let estimate = wait_for_text(browser, &format!(r#"{applied_item} [data-field="estimate"]"#), |text| !text.is_empty()).await;
        assert_eq!(estimate, "Estimated saving: 28.8 kWh · 7.20 EUR per month");
        assert!(browser.find(Locator::Css(&open_item)).await.is_err(), "the applied recommendation is still listed as open");
        let none_open = wait_for_text(browser, r#"#recommendations-card [data-recommendations="none"]"#, |text| !text.is_empty()).await;
        assert_eq!(none_open, "No open recommendation.");
        let stored = harness.store.recommendation(id).await.unwrap().unwrap();
        assert_eq!(stored.status, se_store::RecommendationStatus::Applied);
        assert_eq!(stored.decided_by.as_deref(), Some("admin"));
        assert!(stored.baseline.is_some(), "the week of readings before applying is kept as the baseline");
        screenshot(browser, "/tmp/se-site-recommendation-applied.png").await;

        // French strings after the language switch, including the server's note.
        browser.find(Locator::Css(r#"button[data-lang="fr"]"#)).await.unwrap().click().await.unwrap();
        let french = wait_for_text(browser, &format!(r#"{applied_item} [data-field="achieved-note"]"#), |text| text.starts_with("Pas encore")).await;
        assert!(french.starts_with("Pas encore mesurée : 0,0 jours depuis son application"), "{french}");
        let title = wait_for_text(browser, "#recommendations-card h2", |text| text != "Savings recommendations").await;
        assert_eq!(title, "Recommandations d'économies");
        let estimate = wait_for_text(browser, &format!(r#"{applied_item} [data-field="estimate"]"#), |text| text.starts_with("Économie")).await;
        assert_eq!(estimate, "Économie estimée : 28,8 kWh · 7,20 EUR par mois");
        browser.find(Locator::Css(r#"button[data-lang="en"]"#)).await.unwrap().click().await.unwrap();
        // The page stores the choice once the English strings have loaded,
        // just before it redraws, so wait for the redraw before leaving.
        wait_for_text(browser, "#recommendations-card h2", |text| text == "Savings recommendations").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_sees_why_a_foreign_site_is_closed() {
    with_browser(Some(ADMIN_PASSWORD), async |browser, harness, _| {
        for id in ["mine", "theirs"] {
            harness.store.upsert_site(&common::site(id)).await.unwrap();
        }
        common::add_owner(&harness.store, "owner", &["mine"]).await;

        log_in(browser, &harness.base, "owner", common::OWNER_PASSWORD).await;
        wait_for_element(browser, "#device-table").await;
        browser.goto(&format!("{}/sites/theirs", harness.base)).await.unwrap();
        let message = wait_for_text(browser, "#site-error", |text| !text.is_empty()).await;
        assert_eq!(message, "Site \"theirs\" is not one of your sites. Ask an administrator for access.");
        let content = browser.find(Locator::Css("#site-content")).await.unwrap();
        assert!(!content.is_displayed().await.unwrap(), "the site's panels stay hidden");

        // The owner's own site opens.
        browser.goto(&format!("{}/sites/mine", harness.base)).await.unwrap();
        let name = wait_for_text(browser, "#site-name", |text| !text.is_empty()).await;
        assert_eq!(name, "Site mine");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_creates_owner_from_accounts_page() {
    with_browser(Some(ADMIN_PASSWORD), async |browser, harness, _| {
        for id in ["mine", "theirs"] {
            harness.store.upsert_site(&common::site(id)).await.unwrap();
        }
        log_in(browser, &harness.base, "admin", ADMIN_PASSWORD).await;
        wait_for_element(browser, "#device-table").await;
        browser.find(Locator::Css("#nav-admin-accounts")).await.unwrap().click().await.unwrap();
        wait_for_element(browser, r#"#accounts tr[data-account="admin"]"#).await;

        // A building owner of "mine" only.
        browser.find(Locator::Css(r#"#new-account input[name="username"]"#)).await.unwrap().send_keys("marie").await.unwrap();
        browser.find(Locator::Css(r#"#new-account-sites input[value="mine"]"#)).await.unwrap().click().await.unwrap();
        browser.find(Locator::Css(r#"button[data-action="create-account"]"#)).await.unwrap().click().await.unwrap();
        let message = wait_for_text(browser, "#accounts-message", |text| text.starts_with("Account marie created")).await;
        let password = message
            .split("One-time password: ")
            .nth(1)
            .and_then(|rest| rest.split('.').next())
            .unwrap_or_else(|| panic!("{message}"))
            .to_owned();
        assert!(password.chars().count() >= 16, "{message}");
        wait_for_element(browser, r#"#accounts tr[data-account="marie"]"#).await;
        let user = harness.store.user_by_name("marie").await.unwrap().unwrap();
        let owned: Vec<String> = harness.store.sites_of_user(user.id).await.unwrap().into_iter().map(|site| site.id).collect();
        assert_eq!(owned, vec!["mine".to_owned()]);
        assert!(user.must_change_password);
        assert!(se_web::verify_password(&password, &user.password_hash), "the page shows the password that was stored");

        // Give her the other site too, from her row.
        browser.find(Locator::Css(r#"tr[data-account="marie"] input[value="theirs"]"#)).await.unwrap().click().await.unwrap();
        browser.find(Locator::Css(r#"tr[data-account="marie"] button[data-action="save-sites"]"#)).await.unwrap().click().await.unwrap();
        wait_for_text(browser, "#accounts-message", |text| text == "Sites of marie saved.").await;
        let owned = harness.store.sites_of_user(user.id).await.unwrap().len();
        assert_eq!(owned, 2);
        // The admin's own row has no delete button.
        assert!(browser.find(Locator::Css(r#"tr[data-account="admin"] button[data-action="delete"]"#)).await.is_err());
        browser.set_window_size(1280, 900).await.unwrap();
        screenshot(browser, "/tmp/se-accounts.png").await;
    })
    .await;
}
