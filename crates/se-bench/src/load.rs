//! MQTT load: QoS 1 publishers that time each PUBACK, and a subscriber that
//! counts distinct messages by device and `seq`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::watch;

/// Topic filter that matches every publisher's telemetry topic.
pub const TELEMETRY_FILTER: &str = "smart-energy/v1/+/telemetry";

/// Shape of one load run: broker port, client count, messages and time limit.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub port: u16,
    pub publishers: usize,
    /// Messages per publisher.
    pub messages_each: u64,
    /// Unacknowledged QoS 1 messages each publisher keeps in flight.
    pub inflight: u16,
    pub deadline: Instant,
}

/// Counts and PUBACK latencies seen by one publisher.
#[derive(Debug, Default)]
pub struct PublisherOutcome {
    pub acked: u64,
    /// Publish (written to the socket) to PUBACK, one entry per acknowledged message.
    pub latencies: Vec<Duration>,
    pub last_ack: Option<Instant>,
    /// Reason the publisher stopped early, if it did.
    pub error: Option<String>,
}

pub fn device_id(publisher: usize) -> String {
    format!("bench-p{publisher}")
}

fn topic(publisher: usize) -> String {
    format!("smart-energy/v1/{}/telemetry", device_id(publisher))
}

/// Native telemetry with one GPU reading. `seq` and `ts` are distinct per
/// message, so the store keeps every one instead of skipping duplicates.
fn payload(seq: u64, ts_ms: u64) -> String {
    let power_w = 200.0 + (seq % 500) as f64 / 10.0;
    format!(r#"{{"seq":{seq},"ts":{ts_ms},"readings":[{{"channel":"gpu0","power_w":{power_w}}}]}}"#)
}

/// First device timestamp: in the past by more than the run's message count
/// in milliseconds, so no timestamp lies in the future.
fn first_timestamp_ms(messages_each: u64) -> u64 {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0);
    now_ms.saturating_sub(messages_each + 60_000)
}

fn options(client_id: &str, port: u16, inflight: u16) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(true);
    options.set_inflight(inflight);
    options
}

/// Polls until the CONNACK arrives, failing after 10 s.
async fn connect(eventloop: &mut EventLoop, client_id: &str) -> anyhow::Result<()> {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(error) => return Err(anyhow!("MQTT client {client_id} failed to connect: {error}")),
            }
        }
    })
    .await;
    waited.map_err(|_| anyhow!("MQTT client {client_id} got no CONNACK within 10 s"))?
}

/// Connects publisher `index`, waits for `start`, publishes its messages and
/// returns once every PUBACK arrived or the deadline passed.
pub async fn run_publisher(
    plan: LoadPlan,
    index: usize,
    mut start: watch::Receiver<bool>,
    acked_total: Arc<AtomicU64>,
) -> anyhow::Result<PublisherOutcome> {
    let client_id = format!("se-bench-pub-{index}-{}", std::process::id());
    let (client, mut eventloop) = AsyncClient::new(options(&client_id, plan.port, plan.inflight), 1_000);
    connect(&mut eventloop, &client_id).await?;
    start.wait_for(|started| *started).await.context("start signal dropped")?;

    // The producer runs beside the event loop; `client` stays alive here so
    // the event loop does not see its request channel close.
    let producer_client = client.clone();
    let topic = topic(index);
    let first_ts = first_timestamp_ms(plan.messages_each);
    let count = plan.messages_each;
    let producer = tokio::spawn(async move {
        for seq in 0..count {
            producer_client
                .publish(topic.clone(), QoS::AtLeastOnce, false, payload(seq, first_ts + seq))
                .await?;
        }
        Ok::<(), rumqttc::ClientError>(())
    });

    // A packet id is reused only after its PUBACK, so one slot per id suffices.
    let mut sent_at: Vec<Option<Instant>> = vec![None; usize::from(u16::MAX) + 1];
    let mut outcome = PublisherOutcome {
        latencies: Vec::with_capacity(count as usize),
        ..PublisherOutcome::default()
    };
    while outcome.acked < count {
        let polled = tokio::time::timeout_at(plan.deadline.into(), eventloop.poll()).await;
        match polled {
            Err(_) => {
                outcome.error = Some(format!("timed out with {} of {count} PUBACKs", outcome.acked));
                break;
            }
            Ok(Err(error)) => {
                outcome.error = Some(format!("connection failed after {} PUBACKs: {error}", outcome.acked));
                break;
            }
            Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                sent_at[usize::from(pkid)] = Some(Instant::now());
            }
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                let now = Instant::now();
                if let Some(sent) = sent_at[usize::from(ack.pkid)].take() {
                    outcome.latencies.push(now - sent);
                    outcome.acked += 1;
                    outcome.last_ack = Some(now);
                    acked_total.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Ok(_)) => {}
        }
    }
    producer.abort();
    let _ = client.try_disconnect();
    Ok(outcome)
}

/// Counts of the messages the subscriber received.
#[derive(Debug, Default)]
pub struct SubscriberOutcome {
    /// Distinct (publisher, seq) pairs received.
    pub distinct: u64,
    /// Deliveries of a pair already received.
    pub duplicates: u64,
    pub last_receive: Option<Instant>,
}

/// A connected subscriber. [`Subscriber::collect`] counts its deliveries.
pub struct Subscriber {
    client: AsyncClient,
    eventloop: EventLoop,
}

impl Subscriber {
    /// Connects and subscribes with QoS 1, returning after the SUBACK.
    pub async fn connect(port: u16) -> anyhow::Result<Subscriber> {
        let client_id = format!("se-bench-sub-{}", std::process::id());
        let (client, mut eventloop) = AsyncClient::new(options(&client_id, port, 100), 1_000);
        connect(&mut eventloop, &client_id).await?;
        client
            .subscribe(TELEMETRY_FILTER, QoS::AtLeastOnce)
            .await
            .context("queue the subscription")?;
        let subscribed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(error) => return Err(anyhow!("subscriber connection failed: {error}")),
                }
            }
        })
        .await;
        subscribed.map_err(|_| anyhow!("subscriber got no SUBACK within 10 s"))??;
        Ok(Subscriber { client, eventloop })
    }

    /// Counts deliveries until every message arrived, or until the
    /// publishers are done and nothing arrived for `idle`, or the deadline.
    pub async fn collect(
        mut self,
        plan: LoadPlan,
        publishers_done: watch::Receiver<bool>,
        idle: Duration,
    ) -> SubscriberOutcome {
        let expected = plan.publishers as u64 * plan.messages_each;
        let mut seen: Vec<Vec<bool>> = vec![vec![false; plan.messages_each as usize]; plan.publishers];
        let mut outcome = SubscriberOutcome::default();
        let mut quiet_since = Instant::now();
        while outcome.distinct < expected && Instant::now() < plan.deadline {
            if *publishers_done.borrow() && quiet_since.elapsed() >= idle {
                break;
            }
            let polled = tokio::time::timeout(Duration::from_millis(200), self.eventloop.poll()).await;
            let publish = match polled {
                Ok(Ok(Event::Incoming(Packet::Publish(publish)))) => publish,
                Ok(Ok(_)) | Err(_) => continue,
                Ok(Err(_)) => {
                    // The next poll reconnects; pause so a closed broker is not polled in a tight loop.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            quiet_since = Instant::now();
            let Some((publisher, seq)) = identify(&publish.topic, &publish.payload) else {
                continue;
            };
            let Some(slot) = seen.get_mut(publisher).and_then(|seqs| seqs.get_mut(seq as usize)) else {
                continue;
            };
            if *slot {
                outcome.duplicates += 1;
            } else {
                *slot = true;
                outcome.distinct += 1;
                outcome.last_receive = Some(quiet_since);
            }
        }
        let _ = self.client.try_disconnect();
        outcome
    }
}

/// Returns the publisher index and `seq` of a telemetry message.
fn identify(topic: &str, payload: &[u8]) -> Option<(usize, u64)> {
    let publisher = topic
        .strip_prefix("smart-energy/v1/bench-p")?
        .strip_suffix("/telemetry")?
        .parse()
        .ok()?;
    let body: serde_json::Value = serde_json::from_slice(payload).ok()?;
    Some((publisher, body.get("seq")?.as_u64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identify_reads_publisher_and_seq() {
        let text = payload(42, 1_000);
        assert_eq!(identify(&topic(3), text.as_bytes()), Some((3, 42)));
    }

    #[test]
    fn identify_rejects_other_topics() {
        assert_eq!(identify("tele/plug/SENSOR", b"{\"seq\":1}"), None);
    }
}
