//! The driver's interface: feed events in, take a [`Ready`] out, persist,
//! send, apply, then [`RawNode::advance`].

use crate::config::Config;
use crate::errors::Result;
use crate::message::Message;
use crate::raft::Raft;
use crate::raft_log::RaftLog;
use crate::read_only::ReadState;
use crate::status::{ProgressStatus, Role, SoftState, Status};
use crate::types::{ConfChange, Entry, EntryType, HardState, NodeId, PersistedState, Snapshot};

/// Everything the driver must do after some events, in this order:
/// persist `snapshot`, `entries` and `hard_state` (fsync if `must_sync`)
/// BEFORE sending `messages`; then apply `committed_entries` in order and
/// serve `read_states`; then call [`RawNode::advance`] with this Ready.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    /// Some when the leader or role changed since the last Ready.
    pub soft_state: Option<SoftState>,
    /// Some when term, vote or commit changed: persist BEFORE sending messages.
    pub hard_state: Option<HardState>,
    /// A snapshot from the leader: persist it and restore the state machine
    /// from it before applying `committed_entries`.
    pub snapshot: Option<Snapshot>,
    /// Entries to persist BEFORE sending. `entries[0].index` may be at or
    /// below the last persisted index: the persisted tail from there is replaced.
    pub entries: Vec<Entry>,
    /// Committed entries to apply, in order (all after `snapshot`, if any).
    pub committed_entries: Vec<Entry>,
    /// Messages to send AFTER persisting.
    pub messages: Vec<Message>,
    /// Confirmed reads: serve each once `index` is applied.
    pub read_states: Vec<ReadState>,
    /// True iff entries, a snapshot, or a term/vote change must be fsynced
    /// (a commit-only change needs no fsync).
    pub must_sync: bool,
}

/// A Raft node driven synchronously by one owner.
#[derive(Debug)]
pub struct RawNode {
    raft: Raft,
    prev_ss: SoftState,
    prev_hs: HardState,
    max_committed_size_per_ready: u64,
}

impl RawNode {
    /// A node recovered from `state` (empty for a fresh node). Membership is
    /// the snapshot's if there is one, else `initial_voters` (`[]` for a node
    /// joining an existing group: it waits to be contacted and never
    /// campaigns while not a voter). Committed entries after the snapshot are
    /// re-delivered by [`RawNode::ready`].
    pub fn new(config: &Config, state: PersistedState, initial_voters: &[NodeId]) -> Result<Self> {
        // A fresh node's bootstrap state is new and must be persisted; a
        // recovered node's is already on disk.
        let fresh = state.is_empty();
        let raft = Raft::new(config, state, initial_voters)?;
        let prev_hs = if fresh {
            HardState::default()
        } else {
            raft.hard_state()
        };
        let prev_ss = raft.soft_state();
        Ok(RawNode {
            raft,
            prev_ss,
            prev_hs,
            max_committed_size_per_ready: config.max_committed_size_per_ready,
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.raft.id
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Handles a message from a peer. Stale or odd messages are ignored;
    /// misaddressed ones are an `InvalidArgument` error.
    pub fn step(&mut self, msg: Message) -> Result<()> {
        self.raft.step(msg)
    }

    /// Proposes `data` (leader only); returns the index assigned.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<u64> {
        self.raft.propose(EntryType::Normal, data)
    }

    /// Proposes a membership change (leader only, one pending at a time).
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<u64> {
        self.raft.propose(EntryType::ConfChange, cc.encode())
    }

    /// Starts an election now (pre-vote first when enabled).
    pub fn campaign(&mut self) -> Result<()> {
        self.raft.hup(false);
        Ok(())
    }

    /// Transfers leadership to `to` (forwarded to the leader on followers).
    pub fn transfer_leader(&mut self, to: NodeId) {
        self.raft.transfer_leader(to);
    }

    /// Asks for a linearizable read with id `ctx` (non-empty, unique per
    /// request); the answer is a [`ReadState`] in a later Ready.
    pub fn read_index(&mut self, ctx: Vec<u8>) {
        self.raft.read_index(ctx);
    }

    /// The transport saw the connection to `id` break (EOF/RST). A follower
    /// whose leader it is starts a pre-vote at once; a leader probes `id`.
    pub fn peer_unreachable(&mut self, id: NodeId) {
        self.raft.peer_unreachable(id);
    }

    /// True if [`RawNode::ready`] has anything to hand out.
    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        r.soft_state() != self.prev_ss
            || r.hard_state() != self.prev_hs
            || r.raft_log.pending_snapshot().is_some()
            || !r.raft_log.unstable_entries().is_empty()
            || r.raft_log.has_next_entries()
            || !r.msgs.is_empty()
            || !r.read_states.is_empty()
    }

    /// Hands out what is pending. Call [`RawNode::advance`] with it once it
    /// has been persisted, sent and applied.
    pub fn ready(&mut self) -> Ready {
        let r = &mut self.raft;
        let ss = r.soft_state();
        let hs = r.hard_state();
        let snapshot = r.raft_log.pending_snapshot().cloned();
        let entries = r.raft_log.unstable_entries().to_vec();
        let committed_entries = if r.raft_log.has_next_entries() {
            r.raft_log.next_entries(self.max_committed_size_per_ready)
        } else {
            Vec::new()
        };
        let must_sync = !entries.is_empty()
            || snapshot.is_some()
            || hs.term != self.prev_hs.term
            || hs.vote != self.prev_hs.vote;
        Ready {
            soft_state: (ss != self.prev_ss).then_some(ss),
            hard_state: (hs != self.prev_hs).then_some(hs),
            snapshot,
            entries,
            committed_entries,
            messages: std::mem::take(&mut r.msgs),
            read_states: std::mem::take(&mut r.read_states),
            must_sync,
        }
    }

    /// Records that `rd` was persisted and applied: its entries become
    /// stable, its committed entries applied, and membership changes among
    /// them take effect now.
    pub fn advance(&mut self, rd: Ready) {
        if let Some(ss) = rd.soft_state {
            self.prev_ss = ss;
        }
        if let Some(hs) = rd.hard_state {
            self.prev_hs = hs;
        }
        let r = &mut self.raft;
        if let Some(s) = &rd.snapshot {
            r.raft_log.stable_snapshot(s.metadata.index);
        }
        if let Some(e) = rd.entries.last() {
            r.raft_log.stable_to(e.index, e.term);
        }
        for e in &rd.committed_entries {
            if e.index <= r.raft_log.applied() {
                // Superseded by a snapshot installed since this Ready.
                continue;
            }
            if e.entry_type == EntryType::ConfChange {
                if let Ok(cc) = ConfChange::decode(&e.data) {
                    r.apply_conf_change(cc);
                }
            }
            r.raft_log.applied_to(e.index);
        }
    }

    /// Takes a snapshot at the applied index with the current membership;
    /// the node keeps it (for lagging followers) and compacts its log.
    /// The caller persists the returned snapshot.
    pub fn create_snapshot(&mut self, data: Vec<u8>) -> Result<Snapshot> {
        self.raft.create_snapshot(data)
    }

    /// The node's current state.
    pub fn status(&self) -> Status {
        let r = &self.raft;
        let progress = if r.role == Role::Leader {
            r.tracker
                .iter()
                .map(|(id, p)| ProgressStatus {
                    id: *id,
                    matched: p.matched,
                    next: p.next_idx,
                    state: p.state.as_str(),
                    recent_active: p.recent_active,
                })
                .collect()
        } else {
            Vec::new()
        };
        Status {
            id: r.id,
            hard_state: r.hard_state(),
            soft_state: r.soft_state(),
            applied: r.raft_log.applied(),
            last_index: r.raft_log.last_index(),
            first_index: r.raft_log.first_index(),
            voters: r.tracker.voters(),
            progress,
            pending_conf_index: r.pending_conf_index,
            lead_transferee: r.lead_transferee,
        }
    }

    /// The log, for inspection (tests, debugging).
    pub fn raft_log(&self) -> &RaftLog {
        &self.raft.raft_log
    }

    /// The protocol state, for inspection (tests, debugging).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }
}
