//! Subscription table, without I/O: which clients subscribed with which filter.

use std::collections::HashMap;
use std::sync::Arc;

use crate::message::max_qos;
use crate::session::SubscriptionOptions;
use crate::topic::{filter_matches, has_wildcard};

type Subscribers = HashMap<Arc<str>, SubscriptionOptions>;

/// Filters without wildcards are found by a hash lookup; wildcard filters are matched one by
/// one.
// NOTE: matching cost grows with the number of distinct wildcard filters. A topic tree would
// scale better when thousands of clients subscribe with distinct wildcard filters.
#[derive(Debug, Default)]
pub(crate) struct SubscriptionTable {
    exact: HashMap<String, Subscribers>,
    wildcard: HashMap<String, Subscribers>,
}

impl SubscriptionTable {
    /// Adds or replaces the subscription of `client` to `filter`. Returns whether it existed.
    pub fn insert(
        &mut self,
        filter: &str,
        client: &Arc<str>,
        options: SubscriptionOptions,
    ) -> bool {
        let bucket = self
            .bucket_mut(filter)
            .entry(filter.to_owned())
            .or_default();
        bucket.insert(Arc::clone(client), options).is_some()
    }

    /// Removes the subscription of `client` to `filter`. Returns whether it existed.
    pub fn remove(&mut self, filter: &str, client: &str) -> bool {
        let bucket = self.bucket_mut(filter);
        let Some(subscribers) = bucket.get_mut(filter) else {
            return false;
        };
        let existed = subscribers.remove(client).is_some();
        if subscribers.is_empty() {
            bucket.remove(filter);
        }
        existed
    }

    /// Returns every client with a subscription matching `topic`. A client with several
    /// matching subscriptions appears once, with the highest QoS among them (MQTT 3.1.1
    /// section 3.3.5 allows either one delivery at the highest QoS or one per subscription).
    pub fn matching(&self, topic: &str) -> HashMap<Arc<str>, SubscriptionOptions> {
        let mut result: HashMap<Arc<str>, SubscriptionOptions> = HashMap::new();
        let exact = self.exact.get(topic).into_iter();
        let wildcard = self
            .wildcard
            .iter()
            .filter(|(filter, _)| filter_matches(filter, topic))
            .map(|(_, subs)| subs);
        for subscribers in exact.chain(wildcard) {
            for (client, options) in subscribers {
                result
                    .entry(Arc::clone(client))
                    .and_modify(|merged| merge_options(merged, options))
                    .or_insert(*options);
            }
        }
        result
    }

    fn bucket_mut(&mut self, filter: &str) -> &mut HashMap<String, Subscribers> {
        if has_wildcard(filter) {
            &mut self.wildcard
        } else {
            &mut self.exact
        }
    }
}

fn merge_options(merged: &mut SubscriptionOptions, other: &SubscriptionOptions) {
    merged.qos = max_qos(merged.qos, other.qos);
    // Any subscription without No Local is enough to receive one's own messages.
    merged.no_local &= other.no_local;
    merged.retain_as_published |= other.retain_as_published;
}

#[cfg(test)]
mod tests {
    use rumqttc::QoS;

    use super::*;

    fn options(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
        }
    }

    #[test]
    fn exact_and_wildcard_filters_match() {
        let mut table = SubscriptionTable::default();
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        table.insert("site/1/power", &a, options(QoS::AtMostOnce));
        table.insert("site/+/power", &b, options(QoS::AtLeastOnce));
        table.insert("other/#", &b, options(QoS::AtLeastOnce));

        let matched = table.matching("site/1/power");
        assert_eq!(matched.len(), 2);
        assert!(table.matching("site/2/energy").is_empty());
    }

    #[test]
    fn overlapping_subscriptions_merge_to_highest_qos() {
        let mut table = SubscriptionTable::default();
        let client: Arc<str> = "c".into();
        table.insert("site/#", &client, options(QoS::AtMostOnce));
        table.insert("site/+/power", &client, options(QoS::AtLeastOnce));

        let matched = table.matching("site/1/power");
        assert_eq!(matched.get("c").map(|o| o.qos), Some(QoS::AtLeastOnce));
    }

    #[test]
    fn removed_subscription_stops_matching() {
        let mut table = SubscriptionTable::default();
        let client: Arc<str> = "c".into();
        assert!(!table.insert("a/+", &client, options(QoS::AtMostOnce)));
        assert!(table.insert("a/+", &client, options(QoS::AtLeastOnce)));
        assert!(table.remove("a/+", "c"));
        assert!(!table.remove("a/+", "c"));
        assert!(table.matching("a/b").is_empty());
    }
}
