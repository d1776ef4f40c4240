//! Topic names and topic filters as MQTT 3.1.1 and MQTT 5 define them (section 4.7 of both
//! specifications), without I/O.
//!
//! Levels are separated by `/`. In a filter, `+` matches exactly one level and `#`, which must
//! be the last level, matches the parent level and any number of child levels. A topic whose
//! first character is `$` (such as `$SYS/...`) is not matched by a filter whose first level is
//! a wildcard.

/// Maximum length in bytes of a topic name or filter: MQTT encodes it with a 16-bit length.
const MAX_TOPIC_LEN: usize = 65_535;

/// Prefix of MQTT 5 shared subscriptions, which the embedded broker does not support.
const SHARED_PREFIX: &str = "$share/";

/// Returns whether `topic` is a valid topic name for a PUBLISH: non-empty, no wildcard
/// characters, no NUL character and at most 65,535 bytes.
pub fn is_valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= MAX_TOPIC_LEN && !topic.contains(['+', '#', '\0'])
}

/// Returns whether `filter` is a valid topic filter for a SUBSCRIBE: non-empty, at most
/// 65,535 bytes, no NUL character, `+` only as a whole level and `#` only as the whole last
/// level.
pub fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_TOPIC_LEN || filter.contains('\0') {
        return false;
    }

    let level_count = filter.split('/').count();
    for (index, level) in filter.split('/').enumerate() {
        let is_last = index + 1 == level_count;
        let valid = match level {
            "+" => true,
            "#" => is_last,
            other => !other.contains(['+', '#']),
        };
        if !valid {
            return false;
        }
    }
    true
}

/// Returns whether `filter` is an MQTT 5 shared subscription (`$share/{group}/{filter}`).
pub fn is_shared_subscription(filter: &str) -> bool {
    filter.starts_with(SHARED_PREFIX)
}

/// Returns whether the topic name `topic` matches the topic filter `filter`.
///
/// Both are expected to be valid (see [`is_valid_topic_name`] and [`is_valid_filter`]). For
/// an invalid pair the result is unspecified, but the function does not panic.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let filter_starts_with_wildcard = filter.starts_with(['+', '#']);
    if topic.starts_with('$') && filter_starts_with_wildcard {
        return false;
    }

    let mut topic_levels = topic.split('/');
    for filter_level in filter.split('/') {
        if filter_level == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(topic_level) if filter_level == "+" || filter_level == topic_level => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// Returns whether `filter` contains a wildcard level.
pub fn has_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_filter_matches_same_topic() {
        assert!(filter_matches("site/a/power", "site/a/power"));
        assert!(!filter_matches("site/a/power", "site/b/power"));
        assert!(!filter_matches("site/a", "site/a/power"));
        assert!(!filter_matches("site/a/power", "site/a"));
    }

    #[test]
    fn plus_matches_exactly_one_level() {
        assert!(filter_matches("site/+/power", "site/a/power"));
        assert!(!filter_matches("site/+/power", "site/a/b/power"));
        assert!(!filter_matches("site/+", "site"));
        assert!(filter_matches("site/+", "site/"));
        assert!(filter_matches("+/+", "/finance"));
        assert!(!filter_matches("+", "/finance"));
    }

    #[test]
    fn hash_matches_parent_and_children() {
        assert!(filter_matches("site/#", "site"));
        assert!(filter_matches("site/#", "site/a"));
        assert!(filter_matches("site/#", "site/a/b/c"));
        assert!(!filter_matches("site/#", "other/a"));
        assert!(filter_matches("#", "a/b"));
    }

    #[test]
    fn dollar_topics_skip_leading_wildcards() {
        assert!(!filter_matches("#", "$SYS/uptime"));
        assert!(!filter_matches("+/uptime", "$SYS/uptime"));
        assert!(filter_matches("$SYS/#", "$SYS/uptime"));
        assert!(filter_matches("$SYS/+", "$SYS/uptime"));
        assert!(filter_matches("a/+", "a/$b"));
    }

    #[test]
    fn filter_validation_rejects_misplaced_wildcards() {
        let cases = [
            ("a/b", true),
            ("a/+/c", true),
            ("a/#", true),
            ("#", true),
            ("+", true),
            ("/", true),
            ("", false),
            ("a/#/c", false),
            ("a#", false),
            ("a/b+", false),
            ("a/++", false),
            ("a/\0", false),
        ];
        for (filter, expected) in cases {
            assert_eq!(is_valid_filter(filter), expected, "filter {filter:?}");
        }
    }

    #[test]
    fn topic_validation_rejects_wildcards() {
        assert!(is_valid_topic_name("a/b"));
        assert!(is_valid_topic_name("/"));
        assert!(!is_valid_topic_name(""));
        assert!(!is_valid_topic_name("a/+"));
        assert!(!is_valid_topic_name("a/#"));
        assert!(!is_valid_topic_name(&"x".repeat(MAX_TOPIC_LEN + 1)));
    }

    #[test]
    fn shared_subscription_prefix_detected() {
        assert!(is_shared_subscription("$share/group/a/b"));
        assert!(!is_shared_subscription("share/group/a/b"));
    }
}
