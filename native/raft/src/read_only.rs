//! ReadIndex: linearizable reads confirmed by a heartbeat round instead of
//! a log write.

use crate::types::NodeId;
use std::collections::{BTreeSet, HashMap, VecDeque};

/// A read that may be served once the state machine has applied `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadState {
    /// Commit index at the time the read was confirmed.
    pub index: u64,
    /// The context passed to `read_index` (the request's id).
    pub request_ctx: Vec<u8>,
}

/// One read waiting for a quorum of heartbeat acknowledgements.
#[derive(Debug, Clone)]
pub struct ReadIndexStatus {
    /// Leader's commit index when the request arrived.
    pub index: u64,
    /// Who asked: the leader itself or a follower to answer.
    pub from: NodeId,
    /// Voters that acknowledged the heartbeat carrying this context.
    pub acks: BTreeSet<NodeId>,
}

/// The leader's pending reads, in arrival order.
///
/// Invariant: `queue` and `pending` hold the same contexts.
#[derive(Debug, Clone, Default)]
pub struct ReadOnly {
    pending: HashMap<Vec<u8>, ReadIndexStatus>,
    queue: VecDeque<Vec<u8>>,
}

impl ReadOnly {
    /// Queues a read at commit `index` asked by `from`. A context already
    /// pending is ignored (the earlier request answers both).
    pub fn add_request(&mut self, index: u64, ctx: Vec<u8>, from: NodeId) {
        if self.pending.contains_key(&ctx) {
            return;
        }
        self.pending.insert(
            ctx.clone(),
            ReadIndexStatus {
                index,
                from,
                acks: BTreeSet::new(),
            },
        );
        self.queue.push_back(ctx);
    }

    /// Records `id`'s acknowledgement of `ctx`; returns the acks so far, or
    /// None for an unknown context.
    pub fn recv_ack(&mut self, id: NodeId, ctx: &[u8]) -> Option<&BTreeSet<NodeId>> {
        let rs = self.pending.get_mut(ctx)?;
        rs.acks.insert(id);
        Some(&rs.acks)
    }

    /// Removes and returns every request up to and including `ctx` (a later
    /// confirmation also confirms the earlier requests).
    pub fn advance(&mut self, ctx: &[u8]) -> Vec<(Vec<u8>, ReadIndexStatus)> {
        if !self.pending.contains_key(ctx) {
            return Vec::new();
        }
        let mut out = Vec::new();
        while let Some(c) = self.queue.pop_front() {
            let done = c.as_slice() == ctx;
            if let Some(rs) = self.pending.remove(&c) {
                out.push((c, rs));
            }
            if done {
                break;
            }
        }
        out
    }

    /// Context of the newest pending read, if any.
    pub fn last_pending_request_ctx(&self) -> Option<&[u8]> {
        self.queue.back().map(Vec::as_slice)
    }

    /// Number of pending reads.
    pub fn pending_len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_releases_earlier_requests() {
        let mut ro = ReadOnly::default();
        ro.add_request(5, b"a".to_vec(), 1);
        ro.add_request(6, b"b".to_vec(), 2);
        ro.add_request(7, b"c".to_vec(), 1);
        assert_eq!(ro.recv_ack(2, b"b").unwrap().len(), 1);
        assert!(ro.recv_ack(2, b"zz").is_none());
        let out = ro.advance(b"b");
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].1.index, 6);
        assert_eq!(ro.pending_len(), 1);
        assert_eq!(ro.last_pending_request_ctx(), Some(&b"c"[..]));
    }
}
