//! Live push of new readings to browsers over Server-Sent Events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use se_core::{ChannelName, DeviceId, Metric, Reading, TimestampMs};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::WebState;

/// Sender side of the live channel: ingestion sends one update per device and
/// instant after the readings are stored.
pub type LiveSender = tokio::sync::broadcast::Sender<LiveUpdate>;

/// Capacity of the live channel a subscriber may fall behind by before it
/// receives a `lagged` event; see [`live_channel`].
pub const LIVE_CHANNEL_CAPACITY: usize = 1024;

/// Creates the live channel with [`LIVE_CHANNEL_CAPACITY`].
pub fn live_channel() -> LiveSender {
    tokio::sync::broadcast::channel(LIVE_CHANNEL_CAPACITY).0
}

/// New values of one device at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveUpdate {
    pub device: DeviceId,
    pub ts_ms: TimestampMs,
    pub values: Vec<LiveValue>,
}

/// One new value, with the unit of its metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveValue {
    pub channel: ChannelName,
    pub metric: Metric,
    pub unit: &'static str,
    pub value: f64,
}

impl LiveValue {
    pub fn new(channel: ChannelName, metric: Metric, value: f64) -> Self {
        Self {
            channel,
            metric,
            unit: metric.unit(),
            value,
        }
    }
}

impl LiveUpdate {
    /// Groups readings into one update per device and timestamp, in the order
    /// each pair first appears.
    pub fn from_readings(readings: &[Reading]) -> Vec<LiveUpdate> {
        let mut updates: Vec<LiveUpdate> = Vec::new();
        for reading in readings {
            let value = LiveValue::new(reading.channel.clone(), reading.metric, reading.value);
            let existing = updates
                .iter_mut()
                .find(|update| update.device == reading.device && update.ts_ms == reading.ts_ms);
            match existing {
                Some(update) => update.values.push(value),
                None => updates.push(LiveUpdate {
                    device: reading.device.clone(),
                    ts_ms: reading.ts_ms,
                    values: vec![value],
                }),
            }
        }
        updates
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct LiveParams {
    device: Option<String>,
}

/// Interval of SSE comments that keep proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /api/v1/live[?device=]`: SSE stream of `reading` events, each a
/// [`LiveUpdate`] as JSON. A subscriber that falls more than
/// [`LIVE_CHANNEL_CAPACITY`] updates behind gets a `lagged` event with the
/// number of skipped updates and then continues with the newest ones.
pub(crate) async fn live(
    State(state): State<WebState>,
    user: CurrentUser,
    Query(params): Query<LiveParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let device = params
        .device
        .as_deref()
        .map(crate::params::device_id)
        .transpose()?;
    // An admin may wait for a device that has not published yet; a building
    // owner only for a known device on one of their sites.
    if let Some(device) = &device {
        if user.role == se_store::Role::BuildingOwner {
            crate::api::visible_device(&state, &user, device).await?;
        }
    }
    // NOTE: a building owner's devices are read once, when the stream opens;
    // a device assigned to their site later appears after a reconnect.
    let owned = crate::api::owned_devices(&state, &user).await?.map(std::sync::Arc::new);
    let receiver = state.live.subscribe();
    let shutdown = state.shutdown.clone();

    // The greeting lets a client tell "connected" from "waiting" at once.
    let opened = stream::once(async { Ok(Event::default().event("ready").data("{}")) });
    let updates = stream::unfold(receiver, move |mut receiver| {
        let device = device.clone();
        let owned = owned.clone();
        async move {
            loop {
                match receiver.recv().await {
                    Ok(update) => {
                        if device
                            .as_ref()
                            .is_some_and(|wanted| *wanted != update.device)
                        {
                            continue;
                        }
                        if owned.as_ref().is_some_and(|owned| !owned.contains(&update.device)) {
                            continue;
                        }
                        return Some((reading_event(&update), receiver));
                    }
                    Err(RecvError::Lagged(skipped)) => {
                        tracing::warn!(skipped, "live subscriber lagged behind; updates skipped");
                        let event = Event::default()
                            .event("lagged")
                            .data(format!("{{\"skipped\":{skipped}}}"));
                        return Some((event, receiver));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    // Graceful shutdown waits for open connections, so streams end with it.
    let stream = opened
        .chain(updates.map(Ok))
        .take_until(async move { shutdown.cancelled_owned().await });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

fn reading_event(update: &LiveUpdate) -> Event {
    match serde_json::to_string(update) {
        Ok(json) => Event::default().event("reading").data(json),
        // LiveUpdate contains only names, integers and floats, so this branch is not expected to run.
        Err(error) => {
            tracing::error!(device_id = %update.device, %error, "failed to serialize a live update");
            Event::default().comment("serialization failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_readings_groups_by_instant() {
        let rig = DeviceId::parse("rig-01").unwrap();
        let readings = [
            Reading::new(rig.clone(), "gpu0", Metric::Power, 1000, 200.0),
            Reading::new(rig.clone(), "gpu1", Metric::Power, 1000, 210.0),
            Reading::new(rig.clone(), "gpu0", Metric::Power, 2000, 201.0),
        ];
        let updates = LiveUpdate::from_readings(&readings);
        assert_eq!(updates.len(), 2);
        assert_eq!(updates[0].values.len(), 2);
        assert_eq!(updates[1].ts_ms, 2000);
    }

    #[test]
    fn live_value_carries_metric_unit() {
        let value = LiveValue::new(
            ChannelName::parse("main").unwrap(),
            Metric::ApparentPower,
            5.0,
        );
        assert_eq!(value.unit, "VA");
    }
}
