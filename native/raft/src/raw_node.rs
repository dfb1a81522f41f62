//! The driver's interface: feed events in, take a [`Ready`] out, persist,
//! send, apply, then [`RawNode::advance`].

use crate::config::Config;
use crate::errors::Result;
use crate::message::Message;
use crate::raft::{Raft, TickDue};
use crate::raft_log::RaftLog;
use crate::read_only::ReadState;
use crate::status::{ProgressStatus, Role, SoftState, Status};
use crate::storage::Storage;
use crate::types::{
    ConfChange, ConfState, Entry, EntryType, HardState, NodeId, Snapshot, SnapshotMetadata,
};
use std::sync::Arc;

/// Everything the driver must do after some events, in this order:
/// persist `snapshot`, `entries` and `hard_state` (fsync if `must_sync`)
/// BEFORE sending `messages`; then apply `snapshot` and `committed_entries` in
/// order and serve `read_states`; then call [`RawNode::advance`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    /// Some when the leader or role changed since the last Ready.
    pub soft_state: Option<SoftState>,
    /// Some when term, vote or commit changed: persist BEFORE sending messages.
    pub hard_state: Option<HardState>,
    /// A snapshot from the leader: persist it and restore the state machine
    /// from it before applying `committed_entries`.
    pub snapshot: Option<Arc<Snapshot>>,
    /// Entries to persist BEFORE sending. `entries[0].index` may be at or
    /// below the last persisted index: the persisted tail from there is replaced.
    pub entries: Vec<Entry>,
    /// Committed entries to apply, in order (all after `snapshot`, if any).
    pub committed_entries: Vec<Entry>,
    /// Messages to send AFTER persisting.
    pub messages: Vec<Message>,
    /// Messages that may be sent BEFORE persisting (or during it): the
    /// leader's Appends and heartbeats in a term already durable. They
    /// depend on nothing this Ready persists: the leader counts its own
    /// copy of an entry toward a commit only once [`RawNode::advance`]
    /// reports it persisted, so an entry commits only on a majority of
    /// durable copies (Raft thesis §10.2.1), and the term they carry was
    /// persisted before the votes that made this node leader were asked for.
    pub early_messages: Vec<Message>,
    /// Confirmed reads: serve each once `index` is applied.
    pub read_states: Vec<ReadState>,
    /// True iff entries, a snapshot, or a term/vote change must be fsynced
    /// (a commit-only change needs no fsync).
    pub must_sync: bool,
}

impl Ready {
    /// What [`RawNode::advance_marks`] needs to know about this Ready once it
    /// was persisted and applied (the rest — messages, entries — may be
    /// handed elsewhere meanwhile).
    pub fn marks(&self) -> Marks {
        Marks {
            soft_state: self.soft_state,
            hard_state: self.hard_state,
            snapshot_index: self.snapshot.as_ref().map(|s| s.metadata.index),
            last_entry: self.entries.last().map(|e| (e.index, e.term)),
            last_committed: self.committed_entries.last().map(|e| e.index),
        }
    }
}

/// The part of a [`Ready`] that [`RawNode::advance_marks`] consumes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    /// The Ready's soft state.
    pub soft_state: Option<SoftState>,
    /// The Ready's hard state.
    pub hard_state: Option<HardState>,
    /// Index of the Ready's snapshot, if it had one.
    pub snapshot_index: Option<u64>,
    /// (index, term) of the Ready's last entry, if it had entries.
    pub last_entry: Option<(u64, u64)>,
    /// Index of the Ready's last committed entry, if any.
    pub last_committed: Option<u64>,
}

/// A Raft node driven synchronously by one owner, over the durable log in `S`.
#[derive(Debug)]
pub struct RawNode<S: Storage> {
    raft: Raft<S>,
    prev_ss: SoftState,
    prev_hs: HardState,
    max_committed_size_per_ready: u64,
}

impl<S: Storage> RawNode<S> {
    /// A node recovered from `store` (empty for a fresh node). Membership is
    /// the snapshot's plus every conf change in the log; a fresh node with
    /// non-empty `initial_voters` bootstraps that membership (`[]` for a node
    /// joining an existing group: it waits to be contacted and never
    /// campaigns while not a voter). Committed entries after the snapshot are
    /// re-delivered by [`RawNode::ready`].
    pub fn new(config: &Config, store: S, initial_voters: &[NodeId]) -> Result<Self> {
        let stored_hs = store.initial_state().hard_state;
        let raft = Raft::new(config, store, initial_voters)?;
        // A fresh node's bootstrap state is new and must be persisted; a
        // recovered node's is already on disk.
        let prev_hs = if stored_hs.is_empty() {
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

    /// The next tick that may do more than count (see [`crate::raft::TickDue`]).
    pub fn next_due(&self) -> TickDue {
        self.raft.next_due()
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

    /// Starts an election now (pre-vote first when enabled), if allowed.
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

    /// This node's loop stalled and its driver dropped ticks (see
    /// [`crate::raft::Raft::stalled`]).
    pub fn stalled(&mut self) {
        self.raft.stalled();
    }

    /// Tells the followers the commit index now if no Append carried it yet
    /// (see [`crate::raft::Raft::share_commit`]).
    pub fn share_commit(&mut self) {
        self.raft.share_commit();
    }

    /// The transport saw the connection to `id` break (EOF/RST). A follower
    /// whose leader it is starts fast pre-votes; a leader probes `id`.
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
            || r.has_unsent_proposals()
    }

    /// Hands out what is pending. Call [`RawNode::advance`] with it once it
    /// has been persisted, sent and applied; the node may keep taking events
    /// meanwhile (they go into the next Ready).
    pub fn ready(&mut self) -> Ready {
        let r = &mut self.raft;
        r.flush_proposals();
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
        let durable_term = self.prev_hs.term;
        let (early_messages, messages) = std::mem::take(&mut r.msgs)
            .into_iter()
            .partition(|m| m.is_replication() && m.term <= durable_term);
        Ready {
            soft_state: (ss != self.prev_ss).then_some(ss),
            hard_state: (hs != self.prev_hs).then_some(hs),
            snapshot,
            entries,
            committed_entries,
            messages,
            early_messages,
            read_states: std::mem::take(&mut r.read_states),
            must_sync,
        }
    }

    /// Records that `rd` was persisted and applied.
    pub fn advance(&mut self, rd: Ready) {
        self.advance_marks(rd.marks());
    }

    /// Records that the Ready of `marks` was persisted and applied: its
    /// entries and snapshot become stable, its committed entries (or its
    /// snapshot) applied.
    pub fn advance_marks(&mut self, marks: Marks) {
        if let Some(ss) = marks.soft_state {
            self.prev_ss = ss;
        }
        if let Some(hs) = marks.hard_state {
            self.prev_hs = hs;
        }
        let log = &mut self.raft.raft_log;
        if let Some(i) = marks.snapshot_index {
            log.stable_snapshot(i);
            log.applied_to(i);
        }
        if let Some((index, term)) = marks.last_entry {
            log.stable_to(index, term);
        }
        if let Some(i) = marks.last_committed {
            log.applied_to(i);
        }
        if marks.last_entry.is_some() || marks.snapshot_index.is_some() {
            self.raft.on_persisted();
        }
    }

    /// Checks that a local snapshot may be taken of the application's state
    /// at `applied` and returns its metadata; the caller persists the
    /// snapshot, which compacts the log. See [`Raft::snapshot_metadata`].
    pub fn snapshot_metadata(&mut self, applied: u64) -> Result<SnapshotMetadata> {
        self.raft.snapshot_metadata(applied)
    }

    /// The membership as of the last persisted entry (what a restart from
    /// storage comes back with).
    pub fn persisted_conf_state(&self) -> ConfState {
        self.raft.conf.at(self.raft.raft_log.persisted())
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
            persisted: r.raft_log.persisted(),
            voters: r.tracker.voters(),
            learners: r.tracker.learners(),
            progress,
            pending_conf_index: r.pending_conf_index,
            lead_transferee: r.lead_transferee,
            incoming_snapshot_bytes: r.incoming_snapshot_bytes(),
            leader_window: r.leader_window(),
        }
    }

    /// The log, for inspection (tests, debugging).
    pub fn raft_log(&self) -> &RaftLog<S> {
        &self.raft.raft_log
    }

    /// The protocol state, for inspection (tests, debugging).
    pub fn raft(&self) -> &Raft<S> {
        &self.raft
    }
}
