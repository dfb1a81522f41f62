//! The window of Append messages in flight to one follower.

use std::collections::VecDeque;

/// Last indexes of the Append messages sent to a follower and not yet
/// acknowledged, oldest first. Bounds pipelining: when full, the leader
/// stops sending until an acknowledgement frees a slot.
///
/// Invariant: `len() <= cap` and the indexes are strictly increasing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inflights {
    cap: usize,
    queue: VecDeque<u64>,
}

impl Inflights {
    /// An empty window of `cap` slots.
    pub fn new(cap: usize) -> Self {
        Inflights {
            cap,
            queue: VecDeque::new(),
        }
    }

    /// True when no more messages may be sent.
    pub fn full(&self) -> bool {
        self.queue.len() >= self.cap
    }

    /// Number of messages in flight.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Records a message whose last entry is `last`.
    ///
    /// # Panics
    /// If the window is full or `last` does not exceed the newest entry
    /// (the leader checks `full()` and sends increasing indexes).
    pub fn add(&mut self, last: u64) {
        assert!(!self.full(), "inflights window is full");
        if let Some(&back) = self.queue.back() {
            assert!(last > back, "inflight {last} not after {back}");
        }
        self.queue.push_back(last);
    }

    /// Frees every message whose last entry is `<= to` (they were acknowledged).
    pub fn free_to(&mut self, to: u64) {
        while self.queue.front().is_some_and(|&i| i <= to) {
            self.queue.pop_front();
        }
    }

    /// Frees the oldest message. A heartbeat response does this so a window
    /// full of lost messages cannot stall replication forever.
    pub fn free_first_one(&mut self) {
        self.queue.pop_front();
    }

    /// Forgets everything in flight.
    pub fn reset(&mut self) {
        self.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_fills_and_frees() {
        let mut ins = Inflights::new(3);
        ins.add(2);
        ins.add(5);
        assert!(!ins.full());
        ins.add(9);
        assert!(ins.full());
        ins.free_to(4);
        assert_eq!(ins.len(), 2);
        ins.free_to(4);
        assert_eq!(ins.len(), 2);
        ins.free_first_one();
        assert_eq!(ins.len(), 1);
        ins.free_to(100);
        assert!(ins.is_empty());
        ins.add(10);
        ins.reset();
        assert!(ins.is_empty());
    }

    #[test]
    #[should_panic]
    fn add_to_full_window_panics() {
        let mut ins = Inflights::new(1);
        ins.add(1);
        ins.add(2);
    }
}
