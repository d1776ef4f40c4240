use std::sync::Arc;

use bytes::Bytes;
use rumqttc::QoS;

/// Application message as routed inside the broker, independent of the protocol version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Message {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

/// Returns the lower of two QoS levels.
pub(crate) fn min_qos(a: QoS, b: QoS) -> QoS {
    if qos_level(a) <= qos_level(b) {
        a
    } else {
        b
    }
}

/// Returns the higher of two QoS levels.
pub(crate) fn max_qos(a: QoS, b: QoS) -> QoS {
    if qos_level(a) >= qos_level(b) {
        a
    } else {
        b
    }
}

fn qos_level(qos: QoS) -> u8 {
    qos as u8
}
