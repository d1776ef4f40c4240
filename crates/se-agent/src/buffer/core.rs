//! The in-memory store-and-forward queue. No I/O.
//!
//! Records stay in sequence order. Each one is pending until it is handed out
//! for sending, in flight until its PUBACK arrives, then acknowledged. Only
//! an acknowledged (or dropped) record at the front leaves the queue, so
//! [`BufferCore::removed_through`] is always a prefix of the sequence. When a
//! new record does not fit in the byte bound, the oldest records are dropped
//! and counted, whatever their state.

use std::collections::VecDeque;

use super::format::Record;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    InFlight,
    Acked,
}

#[derive(Debug)]
struct Entry {
    record: Record,
    size: u64,
    state: State,
}

/// Outcome of [`BufferCore::push`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushOutcome {
    /// Sequence numbers of the oldest records dropped to make room.
    pub dropped: Vec<u64>,
    /// False when the record alone is larger than the bound and was not kept.
    pub stored: bool,
}

/// Ordered queue of records with a byte bound.
#[derive(Debug)]
pub struct BufferCore {
    entries: VecDeque<Entry>,
    bytes: u64,
    max_bytes: u64,
    /// Index of the first entry that may still be pending.
    cursor: usize,
    dropped_total: u64,
    removed_through: u64,
}

impl BufferCore {
    /// Creates an empty queue holding at most `max_bytes` of encoded records.
    /// `removed_through` is the highest sequence number already removed (0 if none).
    pub fn new(max_bytes: u64, removed_through: u64) -> Self {
        BufferCore { entries: VecDeque::new(), bytes: 0, max_bytes, cursor: 0, dropped_total: 0, removed_through }
    }

    /// Appends a record, dropping the oldest records while the bound would be exceeded.
    /// Records must arrive in increasing sequence order.
    pub fn push(&mut self, record: Record) -> PushOutcome {
        let size = record.encoded_len();
        let mut outcome = PushOutcome::default();
        if size > self.max_bytes {
            self.dropped_total += 1;
            outcome.dropped.push(record.seq);
            return outcome;
        }
        while self.bytes + size > self.max_bytes {
            let Some(oldest) = self.pop_front() else { break };
            self.dropped_total += 1;
            outcome.dropped.push(oldest.record.seq);
        }
        self.bytes += size;
        self.entries.push_back(Entry { record, size, state: State::Pending });
        outcome.stored = true;
        outcome
    }

    /// Returns the oldest pending record without changing its state.
    pub fn next_pending(&mut self) -> Option<&Record> {
        while self.cursor < self.entries.len() && self.entries[self.cursor].state != State::Pending {
            self.cursor += 1;
        }
        self.entries.get(self.cursor).map(|entry| &entry.record)
    }

    /// Marks the record `seq` as sent and waiting for its PUBACK.
    pub fn mark_in_flight(&mut self, seq: u64) {
        if let Some(entry) = self.find_mut(seq) {
            if entry.state == State::Pending {
                entry.state = State::InFlight;
            }
        }
    }

    /// Records the PUBACK of `seq` and removes the acknowledged prefix.
    /// Returns false when `seq` is not in the queue (already dropped, or unknown).
    pub fn ack(&mut self, seq: u64) -> bool {
        let Some(entry) = self.find_mut(seq) else {
            return false;
        };
        entry.state = State::Acked;
        while self.entries.front().is_some_and(|entry| entry.state == State::Acked) {
            self.pop_front();
        }
        true
    }

    /// Puts every in-flight record back to pending, after the connection dropped:
    /// without a PUBACK, the broker may not have the message.
    pub fn requeue_in_flight(&mut self) {
        for entry in &mut self.entries {
            if entry.state == State::InFlight {
                entry.state = State::Pending;
            }
        }
        self.cursor = 0;
    }

    /// Highest sequence number removed from the front (acknowledged or dropped).
    pub fn removed_through(&self) -> u64 {
        self.removed_through
    }

    /// Number of records held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of records held, as encoded on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records in flight.
    pub fn in_flight(&self) -> usize {
        self.entries.iter().filter(|entry| entry.state == State::InFlight).count()
    }

    /// Records dropped for lack of room since the queue was created.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Sequence numbers held, oldest first.
    pub fn seqs(&self) -> Vec<u64> {
        self.entries.iter().map(|entry| entry.record.seq).collect()
    }

    fn find_mut(&mut self, seq: u64) -> Option<&mut Entry> {
        let index = self.entries.binary_search_by_key(&seq, |entry| entry.record.seq).ok()?;
        self.entries.get_mut(index)
    }

    fn pop_front(&mut self) -> Option<Entry> {
        let entry = self.entries.pop_front()?;
        self.bytes -= entry.size;
        self.cursor = self.cursor.saturating_sub(1);
        self.removed_through = self.removed_through.max(entry.record.seq);
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, payload_len: usize) -> Record {
        Record { seq, ts_ms: seq as i64 * 1000, topic: "t".to_owned(), payload: vec![b'x'; payload_len] }
    }

    /// Hands out every pending record in order, marking each in flight.
    fn send_all(core: &mut BufferCore) -> Vec<u64> {
        let mut sent = Vec::new();
        while let Some(seq) = core.next_pending().map(|record| record.seq) {
            core.mark_in_flight(seq);
            sent.push(seq);
        }
        sent
    }

    #[test]
    fn records_leave_in_push_order() {
        let mut core = BufferCore::new(1 << 20, 0);
        for seq in 1..=5 {
            core.push(record(seq, 10));
        }
        assert_eq!(send_all(&mut core), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn full_buffer_drops_oldest_and_counts() {
        let size = record(1, 100).encoded_len();
        let mut core = BufferCore::new(size * 3, 0);
        for seq in 1..=3 {
            assert!(core.push(record(seq, 100)).dropped.is_empty());
        }
        let outcome = core.push(record(4, 100));
        assert_eq!(outcome.dropped, vec![1]);
        assert!(outcome.stored);
        let outcome = core.push(record(5, 100));
        assert_eq!(outcome.dropped, vec![2]);
        assert_eq!(core.seqs(), vec![3, 4, 5]);
        assert_eq!(core.dropped_total(), 2);
        assert_eq!(core.bytes(), size * 3);
        assert_eq!(core.removed_through(), 2);
    }

    #[test]
    fn large_record_drops_several() {
        let small = record(1, 10).encoded_len();
        let mut core = BufferCore::new(small * 4, 0);
        for seq in 1..=4 {
            core.push(record(seq, 10));
        }
        let big = record(5, 10 + 2 * small as usize);
        let outcome = core.push(big);
        assert_eq!(outcome.dropped, vec![1, 2, 3]);
        assert!(core.bytes() <= small * 4);
    }

    #[test]
    fn oversized_record_is_not_stored() {
        let mut core = BufferCore::new(50, 0);
        core.push(record(1, 1));
        let outcome = core.push(record(2, 500));
        assert!(!outcome.stored);
        assert_eq!(core.seqs(), vec![1]);
        assert_eq!(core.dropped_total(), 1);
    }

    #[test]
    fn ack_removes_only_acked_prefix() {
        let mut core = BufferCore::new(1 << 20, 0);
        for seq in 1..=4 {
            core.push(record(seq, 10));
        }
        send_all(&mut core);
        assert!(core.ack(2));
        assert_eq!(core.seqs(), vec![1, 2, 3, 4]);
        assert!(core.ack(1));
        assert_eq!(core.seqs(), vec![3, 4]);
        assert_eq!(core.removed_through(), 2);
    }

    #[test]
    fn requeue_replays_in_order() {
        let mut core = BufferCore::new(1 << 20, 0);
        for seq in 1..=5 {
            core.push(record(seq, 10));
        }
        send_all(&mut core);
        core.ack(1);
        core.ack(3);
        core.requeue_in_flight();
        // 3 was acknowledged out of order: it is not sent again.
        assert_eq!(send_all(&mut core), vec![2, 4, 5]);
    }

    #[test]
    fn unknown_ack_is_ignored() {
        let mut core = BufferCore::new(1 << 20, 0);
        core.push(record(1, 10));
        assert!(!core.ack(99));
        assert_eq!(core.len(), 1);
    }

    #[test]
    fn ack_of_dropped_record_is_ignored() {
        let size = record(1, 10).encoded_len();
        let mut core = BufferCore::new(size * 2, 0);
        core.push(record(1, 10));
        core.push(record(2, 10));
        send_all(&mut core);
        core.push(record(3, 10));
        assert!(!core.ack(1));
        assert_eq!(core.seqs(), vec![2, 3]);
    }

    #[test]
    fn in_flight_count_follows_acks() {
        let mut core = BufferCore::new(1 << 20, 0);
        for seq in 1..=3 {
            core.push(record(seq, 10));
        }
        send_all(&mut core);
        core.ack(1);
        assert_eq!(core.in_flight(), 2);
    }
}
