//! The Raft state machine: roles, elections, replication, reads, transfers,
//! snapshots and membership. Pure: it reacts to ticks, messages and
//! proposals by changing state and queueing messages; `RawNode` hands those
//! out.
//!
//! Every value taken from a message (terms, indexes, lengths, offsets) is
//! used with checked or saturating arithmetic or bounded first: a forged
//! message can be refused, never make a counter wrap.

use std::sync::Arc;

use crate::conf_log::ConfLog;
use crate::config::Config;
use crate::errors::{Error, Result};
use crate::failure_detector::LeaderDetector;
use crate::message::{Message, MessageType, SnapshotChunk};
use crate::raft_log::RaftLog;
use crate::read_only::{ReadOnly, ReadState};
use crate::status::{Role, SoftState};
use crate::storage::Storage;
use crate::tracker::{ProgressState, ProgressTracker, VoteResult};
use crate::types::{
    ConfChange, ConfState, Entry, EntryType, HardState, NodeId, Snapshot, SnapshotMetadata,
    INVALID_ID,
};

/// Context of a vote request caused by a leadership transfer: it overrides
/// the voters' leader stickiness.
pub const CAMPAIGN_TRANSFER: &[u8] = b"CampaignTransfer";

/// Log indexes (and snapshot sizes) above this are refused as forged: far
/// beyond any real log, and far enough below `u64::MAX` that index
/// arithmetic can never overflow.
pub const MAX_INDEX: u64 = u64::MAX >> 2;

/// Ticks between the fast pre-vote attempts of consecutive ranks after the
/// leader's connection broke (see [`Raft::peer_unreachable`]). Each node
/// retries only every `FAST_STAGGER_TICKS * survivors` ticks.
pub const FAST_STAGGER_TICKS: usize = 3;

/// A small deterministic PRNG (splitmix64) for election timeouts.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CampaignType {
    PreElection,
    Election,
    Transfer,
}

/// Fast pre-votes after the leader was lost (its connection broke, or the
/// failure detector's window of silence expired: [`Raft::leader_lost`]). Only *pre*-votes go early, on a schedule staggered by rank: rank
/// `r` tries at `r * FAST_STAGGER_TICKS` ticks and then every `period`
/// ticks. A pre-vote changes no term, so a slow vote round trip cannot burn
/// terms; a real campaign that follows a won pre-vote keeps the normal
/// randomized election timeout. The normal election timer keeps running
/// meanwhile, so the fast path is never slower than the normal one. A
/// survivor that is itself pre-voting refuses the pre-vote of one ranked
/// after it, so two survivors never both win a pre-vote and split the
/// real vote, however slow the round trips; unless that one's log is more
/// up to date than its own: then the later one would refuse this node's
/// vote anyway, and refusing it back left neither able to win until the
/// earlier one's fast window ended (measured with the default timers: 32
/// ticks of silence instead of 13 when the leader's last entry had reached
/// only the later survivor, 54 instead of 20 when the earlier one had just
/// restarted). With two survivors the one behind cannot win at all without
/// the vote it yields to; with more, both may now win a pre-vote and split
/// the real vote, which costs an election timeout (as any split vote in
/// Raft), never safety.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FastElection {
    /// The leader whose connection broke.
    lost: NodeId,
    /// This node's position among the voters other than `lost`.
    rank: usize,
    /// Ticks since the leader was reported lost.
    elapsed: usize,
    /// Tick of the next fast pre-vote of this node.
    next_attempt: usize,
    /// Ticks between two attempts of this node.
    period: usize,
}

/// A snapshot a follower is assembling from chunks.
///
/// Invariant: `data.len() < total_len <= max_snapshot_bytes`.
#[derive(Debug, Clone)]
struct IncomingSnapshot {
    /// Who sends it (chunks of the same snapshot from another leader start over).
    from: NodeId,
    /// Its position and membership.
    metadata: SnapshotMetadata,
    /// Size of the complete data.
    total_len: u64,
    /// The bytes received so far, in order.
    data: Vec<u8>,
}

/// When the next tick matters (see [`Raft::next_due`]): a driver that sleeps
/// between events instead of ticking on a fixed grid wakes for this tick and
/// delivers the ticks before it late, in a burst, before any other input.
///
/// Invariant: `ticks >= 1`; each of the `ticks - 1` ticks before the due one
/// only advances counters (no message, no change of role, term, vote or
/// leader), whenever it is delivered, as long as no other input came first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickDue {
    /// The first tick from now that may act.
    pub ticks: usize,
    /// That tick may give up on this node's peers (a follower's leader is
    /// lost, an election starts, a leader steps down for want of a quorum):
    /// a driver that wakes late for it has just stalled, and the peers'
    /// messages queued meanwhile deserve a look first. The other acts —
    /// heartbeats, snapshot resends, fast pre-votes — are never held back.
    pub gives_up: bool,
}

/// One Raft node's protocol state over the durable log in `S`.
///
/// Invariant: `lead == id` iff `role == Leader`; `tracker` holds the
/// membership in force, `conf.in_force()`.
#[derive(Debug)]
pub struct Raft<S: Storage> {
    /// This node.
    pub id: NodeId,
    /// Current term.
    pub term: u64,
    /// Vote cast in `term`, or [`INVALID_ID`].
    pub vote: NodeId,
    /// Known leader of `term`, or [`INVALID_ID`].
    pub lead: NodeId,
    /// Current role.
    pub role: Role,
    /// The log.
    pub raft_log: RaftLog<S>,
    /// The membership as the log defines it.
    pub conf: ConfLog,
    /// Membership in force, progress and votes.
    pub tracker: ProgressTracker,
    /// Messages to send, drained into each Ready.
    pub msgs: Vec<Message>,
    /// Confirmed reads, drained into each Ready.
    pub read_states: Vec<ReadState>,
    /// Index of the latest conf change appended (as leader); none may be
    /// proposed while it exceeds `applied`.
    pub pending_conf_index: u64,
    /// Target of a leadership transfer in progress, or [`INVALID_ID`].
    pub lead_transferee: NodeId,
    read_only: ReadOnly,
    /// Reads that arrived before the leader committed an entry of its term.
    pending_reads: Vec<(Vec<u8>, NodeId)>,
    election_elapsed: usize,
    heartbeat_elapsed: usize,
    /// Ticks since the leader last checked that a quorum is active.
    quorum_check_elapsed: usize,
    election_timeout: usize,
    heartbeat_timeout: usize,
    randomized_election_timeout: usize,
    max_msg_size: u64,
    max_snapshot_chunk: u64,
    max_snapshot_bytes: u64,
    max_entry_bytes: u64,
    check_quorum: bool,
    pre_vote: bool,
    rng: SplitMix64,
    /// When this follower stops trusting its leader (with check-quorum);
    /// it learns heartbeat gaps as follower and, from the voters' answers,
    /// as leader.
    detector: LeaderDetector,
    fast_election: Option<FastElection>,
    /// A pre-vote ignored because the leader's lease still held, and the ticks
    /// it is kept: answered if this node loses that leader meanwhile (see
    /// [`Raft::leader_lost`]).
    deferred_pre_vote: Option<(Message, usize)>,
    incoming: Option<IncomingSnapshot>,
    /// Entries were proposed that no Append has carried yet (see
    /// [`Raft::flush_proposals`]).
    proposals_unsent: bool,
    /// The commit index moved (as leader) and no Append has carried it to
    /// the followers yet: the next Append does (every one carries the
    /// commit), or the next tick, or [`Raft::share_commit`]. Sent at once,
    /// an Append carrying only the commit and its answer were four of a
    /// single client's ten messages per write, for followers that serve
    /// nothing from their applied state but stale reads.
    commit_unsent: bool,
}

impl<S: Storage> Raft<S> {
    /// A follower recovered from `store`. Membership is the snapshot's plus
    /// every conf change in the log; a fresh node (nothing stored) with
    /// non-empty `initial_voters` bootstraps that membership instead.
    pub fn new(config: &Config, store: S, initial_voters: &[NodeId]) -> Result<Self> {
        config.validate()?;
        if initial_voters.contains(&INVALID_ID) {
            return Err(Error::InvalidArgument("voter id 0".into()));
        }
        let rs = store.initial_state();
        let fresh = store.first_index() == 1 && store.last_index() == 0 && rs.hard_state.is_empty();
        let mut conf = ConfLog::new(store.first_index() - 1, rs.conf_state.clone());
        conf.push_entries(&rs.conf_entries);
        let hs = rs.hard_state;
        let mut raft_log = RaftLog::new(store, hs.commit);
        let voters = ConfState::new(initial_voters.to_vec()).voters;
        if fresh && !voters.is_empty() {
            // A fresh founding member writes the initial membership into the
            // log as committed term-0 entries (identical on every founder),
            // so a node added later learns it by replaying the log.
            let bootstrap: Vec<Entry> = voters
                .iter()
                .enumerate()
                .map(|(i, v)| Entry {
                    term: 0,
                    index: i as u64 + 1,
                    entry_type: EntryType::ConfChange,
                    data: ConfChange::AddNode(*v).encode(),
                })
                .collect();
            raft_log.append(&bootstrap);
            conf.push_entries(&bootstrap);
            raft_log.commit_to(voters.len() as u64);
        }
        let tracker = ProgressTracker::new(
            &conf.in_force(),
            raft_log.last_index() + 1,
            config.max_inflight_msgs,
        );
        let mut r = Raft {
            id: config.id,
            term: hs.term,
            vote: hs.vote,
            lead: INVALID_ID,
            role: Role::Follower,
            raft_log,
            conf,
            tracker,
            msgs: Vec::new(),
            read_states: Vec::new(),
            pending_conf_index: 0,
            lead_transferee: INVALID_ID,
            read_only: ReadOnly::default(),
            pending_reads: Vec::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            quorum_check_elapsed: 0,
            election_timeout: config.election_tick,
            heartbeat_timeout: config.heartbeat_tick,
            randomized_election_timeout: config.election_tick,
            max_msg_size: config.max_size_per_msg,
            max_snapshot_chunk: config.max_snapshot_chunk,
            max_snapshot_bytes: config.max_snapshot_bytes.min(MAX_INDEX),
            max_entry_bytes: config.max_entry_bytes,
            check_quorum: config.check_quorum,
            pre_vote: config.pre_vote,
            rng: SplitMix64(config.seed ^ config.id.wrapping_mul(0xA24B_AED4_963E_E407)),
            detector: LeaderDetector::new(config.heartbeat_tick, config.election_tick),
            fast_election: None,
            deferred_pre_vote: None,
            incoming: None,
            proposals_unsent: false,
            commit_unsent: false,
        };
        r.become_follower(r.term, INVALID_ID);
        Ok(r)
    }

    /// Term, vote and commit.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.raft_log.committed(),
        }
    }

    /// Leader and role.
    pub fn soft_state(&self) -> SoftState {
        SoftState {
            leader_id: self.lead,
            role: self.role,
        }
    }

    /// True if this node may campaign at all: it is a voter of the
    /// membership in force.
    pub fn promotable(&self) -> bool {
        self.tracker.is_voter(self.id)
    }

    /// The one guard every way of starting an election goes through (timeout,
    /// `campaign()`, a transfer, the fast path after a lost leader, and the
    /// real campaign after a won pre-vote): not the leader, a voter, the term
    /// can still grow, and no committed membership change is waiting to be
    /// applied (the application — the coordinator's peer list, for one — must
    /// see a membership before this node campaigns under it).
    pub fn may_campaign(&self) -> bool {
        self.role != Role::Leader
            && self.promotable()
            && self.term < u64::MAX
            && !self
                .conf
                .has_change_in(self.raft_log.applied(), self.raft_log.committed())
    }

    /// Ticks of silence after which this follower would consider its leader
    /// lost (see [`crate::failure_detector`]).
    pub fn leader_window(&self) -> usize {
        self.detector.window()
    }

    /// Bytes of snapshot data received so far from the leader (0 when no
    /// transfer is under way).
    pub fn incoming_snapshot_bytes(&self) -> u64 {
        self.incoming.as_ref().map_or(0, |i| i.data.len() as u64)
    }

    fn send(&mut self, mut m: Message) {
        m.from = self.id;
        self.msgs.push(m);
    }

    fn reset_randomized_election_timeout(&mut self) {
        let span = self.election_timeout as u64;
        self.randomized_election_timeout =
            self.election_timeout + (self.rng.next() % span) as usize;
    }

    fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = INVALID_ID;
        }
        self.lead = INVALID_ID;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.quorum_check_elapsed = 0;
        self.reset_randomized_election_timeout();
        self.lead_transferee = INVALID_ID;
        self.tracker.reset_votes();
        // Our own copy counts toward a commit only once it is durable: a
        // leader's Appends may leave before its own persist (see Ready).
        self.tracker
            .reset_progress(self.id, self.raft_log.persisted());
        self.pending_conf_index = 0;
        self.read_only = ReadOnly::default();
        self.pending_reads.clear();
    }

    /// Becomes a follower of `lead` in `term`.
    pub fn become_follower(&mut self, term: u64, lead: NodeId) {
        self.reset(term);
        self.lead = lead;
        self.role = Role::Follower;
    }

    fn become_pre_candidate(&mut self) {
        // Term and vote stay: a pre-vote changes nothing durable.
        self.tracker.reset_votes();
        self.lead = INVALID_ID;
        self.role = Role::PreCandidate;
    }

    /// # Panics
    /// If the term is `u64::MAX` ([`Raft::may_campaign`] rules that out).
    fn become_candidate(&mut self) {
        let term = self.term.checked_add(1).expect("campaign at the last term");
        self.fast_election = None;
        self.reset(term);
        self.vote = self.id;
        self.role = Role::Candidate;
    }

    fn become_leader(&mut self) {
        self.fast_election = None;
        self.detector.forget();
        self.incoming = None;
        self.reset(self.term);
        self.lead = self.id;
        self.role = Role::Leader;
        if let Some(p) = self.tracker.get_mut(self.id) {
            p.become_replicate();
        }
        // No conf change until the no-op (and so everything before it) is
        // applied: a membership of an earlier term must settle first.
        self.pending_conf_index = self.append_entry(vec![Entry::new(0, 0, Vec::new())]);
    }

    /// Appends new entries as leader (terms and indexes assigned here).
    fn append_entry(&mut self, mut ents: Vec<Entry>) -> u64 {
        let mut li = self.raft_log.last_index();
        for e in ents.iter_mut() {
            li += 1;
            e.term = self.term;
            e.index = li;
        }
        // Our own match moves when the entries are persisted
        // (`on_persisted`), not here: until then only followers' durable
        // copies count.
        self.append_to_log(&ents)
    }

    /// The driver persisted the log up to `raft_log.persisted()`. A leader
    /// counts its own copy toward a commit from now on (Raft thesis §10.2.1:
    /// the leader writes its log in parallel with replicating it, and only
    /// durable copies count); when that commits something, the followers
    /// hear of it with the next Append or tick (see `commit_unsent`).
    pub fn on_persisted(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let persisted = self.raft_log.persisted();
        let moved = self
            .tracker
            .get_mut(self.id)
            .is_some_and(|p| p.maybe_update(persisted));
        if moved && self.maybe_commit() {
            self.commit_unsent = true;
        }
    }

    /// Appends `ents` to the log (replacing a conflicting tail) and keeps the
    /// membership in step with it: conf changes take effect on append and
    /// are undone when truncated.
    fn append_to_log(&mut self, ents: &[Entry]) -> u64 {
        let Some(first) = ents.first() else {
            return self.raft_log.last_index();
        };
        let truncated =
            first.index <= self.raft_log.last_index() && self.conf.truncate_from(first.index);
        let li = self.raft_log.append(ents);
        let added = self.conf.push_entries(ents);
        if truncated || added {
            self.conf_changed();
        }
        li
    }

    /// The membership in force changed: follow it.
    fn conf_changed(&mut self) {
        let conf = self.conf.in_force();
        self.tracker.set_conf(&conf, self.raft_log.last_index() + 1);
        if self.lead_transferee != INVALID_ID && !self.tracker.is_voter(self.lead_transferee) {
            self.lead_transferee = INVALID_ID;
        }
    }

    /// Advances commit to the quorum's match if that entry is of the current
    /// term (Raft §5.4.2, Figure 8). Returns true if commit moved. A leader
    /// whose removal just committed tells the others and steps down.
    fn maybe_commit(&mut self) -> bool {
        let mci = self.tracker.committed_index();
        if mci <= self.raft_log.committed() || self.raft_log.term(mci) != Some(self.term) {
            return false;
        }
        let was_in_term = self.committed_entry_in_current_term();
        self.raft_log.commit_to(mci);
        if !was_in_term && self.committed_entry_in_current_term() {
            self.release_pending_reads();
        }
        if self.role == Role::Leader
            && !self.promotable()
            && self.conf.last_change_index() <= self.raft_log.committed()
        {
            // Thesis §4.2.2: a leader not in the new configuration steps down
            // once that configuration is committed.
            self.bcast_append();
            let term = self.term;
            self.become_follower(term, INVALID_ID);
        }
        true
    }

    fn committed_entry_in_current_term(&self) -> bool {
        self.raft_log.term(self.raft_log.committed()) == Some(self.term)
    }

    // ----- ticks -----

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        if self.role == Role::Leader {
            self.tick_heartbeat();
        } else {
            self.tick_election();
        }
    }

    /// The next tick that may do more than count (see [`TickDue`]). Exact for
    /// the steady states (a leader heartbeating, a follower timing a known
    /// leader, a node waiting for its election timeout); every transient one
    /// (a transfer, a snapshot in flight, a fast election, a deferred
    /// pre-vote) says the very next tick.
    pub fn next_due(&self) -> TickDue {
        let now = TickDue {
            ticks: 1,
            gives_up: false,
        };
        let after = |elapsed: usize, timeout: usize, gives_up: bool| TickDue {
            ticks: timeout.saturating_sub(elapsed).max(1),
            gives_up,
        };
        if self.role == Role::Leader {
            if self.lead_transferee != INVALID_ID
                || self.commit_unsent
                || self
                    .tracker
                    .iter()
                    .any(|(_, p)| p.state == ProgressState::Snapshot)
            {
                return now;
            }
            let heartbeat = after(self.heartbeat_elapsed, self.heartbeat_timeout, false);
            if !self.check_quorum {
                return heartbeat;
            }
            let quorum = after(self.quorum_check_elapsed, self.detector.ceiling(), true);
            return if quorum.ticks <= heartbeat.ticks {
                quorum
            } else {
                heartbeat
            };
        }
        if self.deferred_pre_vote.is_some() || self.fast_election.is_some() {
            return now;
        }
        if self.check_quorum && self.role == Role::Follower && self.lead != INVALID_ID {
            // Only the detector acts (see tick_election); one that times no
            // leader yet never expires: look again an election timeout on.
            return match self.detector.ticks_to_expiry() {
                Some(ticks) => TickDue {
                    ticks: ticks.max(1),
                    gives_up: true,
                },
                None => after(0, self.election_timeout, false),
            };
        }
        if self.promotable() {
            return after(
                self.election_elapsed,
                self.randomized_election_timeout,
                true,
            );
        }
        after(0, self.election_timeout, false)
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        self.deferred_pre_vote = match self.deferred_pre_vote.take() {
            Some((m, ticks)) if ticks > 1 => Some((m, ticks - 1)),
            _ => None,
        };
        if let Some(mut f) = self.fast_election {
            f.elapsed += 1;
            let attempt = f.elapsed >= f.next_attempt;
            if attempt {
                f.next_attempt += f.period;
            }
            if self.lead != INVALID_ID
                || f.elapsed > self.election_timeout
                || self.role == Role::Candidate
            {
                // A leader is known again, a real campaign is under way, or
                // the fast window is over: ordinary timeouts from here on.
                self.fast_election = None;
            } else {
                self.fast_election = Some(f);
                if attempt {
                    self.fast_pre_vote();
                }
            }
        }
        self.detector.tick();
        if self.check_quorum && self.role == Role::Follower && self.lead != INVALID_ID {
            // While a leader is known, the failure detector alone decides:
            // silent for a whole window, the lease this node honoured ends
            // and it asks for votes (see failure_detector).
            if self.detector.expired() {
                let lead = self.lead;
                self.leader_lost(lead);
            }
        } else if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            self.hup(false);
        }
    }

    fn tick_heartbeat(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        self.quorum_check_elapsed += 1;
        if self.quorum_check_elapsed >= self.detector.ceiling() {
            // Check-quorum gives up no sooner than the followers' longest
            // window: a leader merely slow to hear its followers (a starved
            // host) must not step down while they still trust it.
            self.quorum_check_elapsed = 0;
            if self.check_quorum && !self.tracker.quorum_recently_active(self.id) {
                let term = self.term;
                self.become_follower(term, INVALID_ID);
                return;
            }
        }
        if self.election_elapsed >= self.election_timeout {
            self.election_elapsed = 0;
            // A transfer that did not finish within an election timeout is abandoned.
            self.lead_transferee = INVALID_ID;
        }
        let timeout = self.election_timeout;
        let mut resume = Vec::new();
        for (id, p) in self.tracker.iter_mut() {
            if let Some(t) = p.since_answer.as_mut() {
                *t = t.saturating_add(1);
            }
            if p.state == ProgressState::Snapshot {
                p.snapshot_elapsed += 1;
                if p.snapshot_elapsed >= timeout {
                    // No acknowledgement for a while: the chunk (or its
                    // answer) was probably lost. Resume where it left off.
                    p.snapshot_elapsed = 0;
                    resume.push(*id);
                }
            }
        }
        for id in resume {
            self.send_snapshot_chunk(id);
        }
        if self.heartbeat_elapsed >= self.heartbeat_timeout {
            self.heartbeat_elapsed = 0;
            self.learn_answer_gaps();
            // Heartbeats carry the commit too (up to what each follower holds).
            self.bcast_heartbeat(Vec::new());
            self.commit_unsent = false;
        }
        self.share_commit();
    }

    /// This node's own loop stalled: its driver dropped ticks (a SIGSTOP, a
    /// long pause). The heartbeat gaps running now span that stall, not a
    /// peer's silence: none is learned (the next heartbeat, or a voter's next
    /// answer, starts a new series). Learned, a follower's own pause taught it
    /// a gap as long as its window (the quiet ticks its driver delivers before
    /// the heartbeats queued meanwhile), and twice the longest gap doubled the
    /// window with each pause, up to the ceiling, for a minute of heartbeats.
    pub fn stalled(&mut self) {
        self.detector.restart_series();
        for (_, p) in self.tracker.iter_mut() {
            p.since_answer = None;
        }
    }

    /// Tells the followers the commit index now if it moved since the last
    /// Append (a driver calls it when followers should apply at once: a
    /// committed entry their own readers wait for).
    pub fn share_commit(&mut self) {
        if self.commit_unsent && self.role == Role::Leader {
            self.bcast_append();
        }
        self.commit_unsent = false;
    }

    /// Once per heartbeat interval a leader's detector learns the longest
    /// gap between two answers of one voter to its periodic heartbeats since
    /// the last interval (see [`crate::failure_detector`]): the node knows a
    /// window when it follows again, and, one gap per interval as a follower
    /// learns, the detector's ring covers as much time either way. The
    /// longest, because any of those voters may lead next.
    fn learn_answer_gaps(&mut self) {
        let longest = self
            .tracker
            .iter_mut()
            .filter_map(|(_, p)| p.answer_gap.take())
            .max();
        if let Some(gap) = longest {
            self.detector.learn(gap);
        }
    }

    // ----- elections -----

    /// Starts an election now if [`Raft::may_campaign`] allows it.
    /// `transfer` skips pre-vote and overrides stickiness.
    pub fn hup(&mut self, transfer: bool) {
        if !self.may_campaign() {
            return;
        }
        if transfer {
            self.campaign(CampaignType::Transfer);
        } else if self.pre_vote {
            self.campaign(CampaignType::PreElection);
        } else {
            self.campaign(CampaignType::Election);
        }
    }

    /// A fast pre-vote (see [`FastElection`]), whatever `pre_vote` says.
    fn fast_pre_vote(&mut self) {
        if self.role == Role::Candidate {
            return;
        }
        self.campaign(CampaignType::PreElection);
    }

    fn campaign(&mut self, ct: CampaignType) {
        if !self.may_campaign() {
            if self.role == Role::PreCandidate {
                let term = self.term;
                self.become_follower(term, INVALID_ID);
            }
            return;
        }
        let (vote_type, term) = if ct == CampaignType::PreElection {
            self.become_pre_candidate();
            // may_campaign checked that the term can grow.
            (MessageType::RequestPreVote, self.term + 1)
        } else {
            self.become_candidate();
            (MessageType::RequestVote, self.term)
        };
        let id = self.id;
        if self.poll(id, vote_type, true) == VoteResult::Won {
            return;
        }
        let (li, lt) = (self.raft_log.last_index(), self.raft_log.last_term());
        for v in self.tracker.voters() {
            if v == id {
                continue;
            }
            let mut m = Message::new(vote_type, id, v, term);
            m.index = li;
            m.log_term = lt;
            if ct == CampaignType::Transfer {
                m.context = CAMPAIGN_TRANSFER.to_vec();
            }
            self.send(m);
        }
    }

    fn poll(&mut self, from: NodeId, vote_type: MessageType, granted: bool) -> VoteResult {
        self.tracker.record_vote(from, granted);
        let (_, _, res) = self.tracker.tally_votes();
        match res {
            VoteResult::Won => {
                if vote_type == MessageType::RequestPreVote
                    || vote_type == MessageType::RequestPreVoteResponse
                {
                    self.campaign(CampaignType::Election);
                } else {
                    self.become_leader();
                    self.bcast_append();
                }
            }
            VoteResult::Lost => {
                let term = self.term;
                self.become_follower(term, INVALID_ID);
            }
            VoteResult::Pending => {}
        }
        res
    }

    // ----- messages -----

    /// Handles a message from a peer. Stale, odd or forged messages are
    /// ignored (or answered so the sender can catch up); never panics.
    pub fn step(&mut self, m: Message) -> Result<()> {
        if m.to != self.id {
            return Err(Error::InvalidArgument(format!(
                "message for {} delivered to {}",
                m.to, self.id
            )));
        }
        if m.from == INVALID_ID || m.from == self.id {
            return Err(Error::InvalidArgument(format!("bad sender {}", m.from)));
        }
        let is_vote = matches!(
            m.msg_type,
            MessageType::RequestVote | MessageType::RequestPreVote
        );
        if m.term > self.term {
            if is_vote {
                let force = m.context == CAMPAIGN_TRANSFER;
                // The lease ends where the failure detector's suspicion
                // starts: a follower forgets its leader on the tick its
                // window expires (`leader_lost`), so one rule decides both
                // (see failure_detector). A leader holds its own lease.
                let in_lease = self.check_quorum && self.lead != INVALID_ID;
                if !force && in_lease {
                    // Leader stickiness: a live leader is not deposed by a
                    // node that merely lost touch with it. A pre-vote is kept
                    // a few ticks: the leader may be dead and this node just
                    // not told yet (survivors learn it in either order).
                    if m.msg_type == MessageType::RequestPreVote {
                        self.deferred_pre_vote = Some((m, FAST_STAGGER_TICKS));
                    }
                    return Ok(());
                }
            }
            match m.msg_type {
                MessageType::RequestPreVote => {}
                MessageType::RequestPreVoteResponse if !m.reject => {}
                MessageType::Append | MessageType::Heartbeat | MessageType::Snapshot => {
                    self.become_follower(m.term, m.from);
                }
                _ => self.become_follower(m.term, INVALID_ID),
            }
        } else if m.term < self.term {
            match m.msg_type {
                MessageType::Append | MessageType::Heartbeat
                    if self.check_quorum || self.pre_vote =>
                {
                    // A stale leader: tell it the term so it steps down
                    // (with pre-vote it could not learn it otherwise). The
                    // answer carries no index: the same node may lead the
                    // current term by the time it arrives, and must not take
                    // our last index for a match of its log.
                    let r = Message::new(MessageType::AppendResponse, self.id, m.from, self.term);
                    self.send(r);
                }
                MessageType::RequestPreVote | MessageType::RequestVote => {
                    // Refuse with our term (Raft's RequestVote reply): a
                    // candidate whose config no longer reaches anyone with a
                    // higher term would otherwise never learn it.
                    let t = if m.msg_type == MessageType::RequestVote {
                        MessageType::RequestVoteResponse
                    } else {
                        MessageType::RequestPreVoteResponse
                    };
                    let mut r = Message::new(t, self.id, m.from, self.term);
                    r.reject = true;
                    self.send(r);
                }
                _ => {}
            }
            return Ok(());
        }

        if is_vote {
            self.handle_vote_request(m);
            return Ok(());
        }
        match self.role {
            Role::Leader => self.step_leader(m),
            Role::Candidate | Role::PreCandidate => self.step_candidate(m),
            Role::Follower => self.step_follower(m),
        }
        Ok(())
    }

    fn handle_vote_request(&mut self, m: Message) {
        let pre = m.msg_type == MessageType::RequestPreVote;
        let resp_type = if pre {
            MessageType::RequestPreVoteResponse
        } else {
            MessageType::RequestVoteResponse
        };
        let can_vote = self.vote == m.from
            || (self.vote == INVALID_ID && self.lead == INVALID_ID)
            || (pre && m.term > self.term);
        if can_vote && !self.outranks(pre, &m) && self.raft_log.is_up_to_date(m.index, m.log_term) {
            // Granting answers in the candidate's term so it can count it.
            let r = Message::new(resp_type, self.id, m.from, m.term);
            self.send(r);
            if !pre {
                self.election_elapsed = 0;
                self.vote = m.from;
            }
        } else {
            let mut r = Message::new(resp_type, self.id, m.from, self.term);
            r.reject = true;
            self.send(r);
        }
    }

    /// True if this node, pre-voting on the fast path, ranks before the
    /// sender of the vote request `m` among the survivors of the same lost
    /// leader (see [`FastElection`]) and could win that sender's vote: its
    /// log is at least as up to date as the sender's. A sender whose log is
    /// ahead would refuse this node, so it is not outranked.
    fn outranks(&self, pre: bool, m: &Message) -> bool {
        let Some(f) = self
            .fast_election
            .filter(|_| pre && self.role == Role::PreCandidate)
        else {
            return false;
        };
        let ranked_after = self
            .tracker
            .voters()
            .into_iter()
            .filter(|v| *v != f.lost)
            .position(|v| v == m.from)
            .is_some_and(|r| r > f.rank);
        let log = &self.raft_log;
        let not_behind = (log.last_term(), log.last_index()) >= (m.log_term, m.index);
        ranked_after && not_behind
    }

    fn step_candidate(&mut self, m: Message) {
        let my_resp = if self.role == Role::PreCandidate {
            MessageType::RequestPreVoteResponse
        } else {
            MessageType::RequestVoteResponse
        };
        match m.msg_type {
            MessageType::Append => {
                self.become_follower(m.term, m.from);
                self.heard_leader(&m);
                self.handle_append(m);
            }
            MessageType::Heartbeat => {
                self.become_follower(m.term, m.from);
                self.heard_leader(&m);
                self.handle_heartbeat(m);
            }
            MessageType::Snapshot => {
                self.become_follower(m.term, m.from);
                self.heard_leader(&m);
                self.handle_snapshot_chunk(m);
            }
            t if t == my_resp => {
                self.poll(m.from, t, !m.reject);
            }
            _ => {}
        }
    }

    /// A message from the leader of this term: it is alive. Only its
    /// periodic heartbeats (no read context) time the detector's gaps.
    fn heard_leader(&mut self, m: &Message) {
        self.election_elapsed = 0;
        self.lead = m.from;
        let periodic = m.msg_type == MessageType::Heartbeat && m.context.is_empty();
        self.detector.heard(m.from, periodic);
    }

    fn step_follower(&mut self, m: Message) {
        match m.msg_type {
            MessageType::Append => {
                self.heard_leader(&m);
                self.handle_append(m);
            }
            MessageType::Heartbeat => {
                self.heard_leader(&m);
                self.handle_heartbeat(m);
            }
            MessageType::Snapshot => {
                self.heard_leader(&m);
                self.handle_snapshot_chunk(m);
            }
            MessageType::TransferLeader | MessageType::ReadIndex if self.lead != INVALID_ID => {
                // Forwarded on behalf of the original sender.
                let mut f = m;
                f.to = self.lead;
                f.term = self.term;
                self.msgs.push(f);
            }
            MessageType::ReadIndexResponse => {
                self.read_states.push(ReadState {
                    index: m.index,
                    request_ctx: m.context,
                });
            }
            MessageType::TimeoutNow => {
                // Only the leader sends this; campaign at once, past stickiness.
                self.hup(true);
            }
            _ => {}
        }
    }

    fn handle_append(&mut self, m: Message) {
        let committed = self.raft_log.committed();
        let mut r = Message::new(MessageType::AppendResponse, self.id, m.from, self.term);
        if m.index < committed {
            r.index = committed;
            self.send(r);
            return;
        }
        // Forged or corrupt batches (holes, wrong start, absurd indexes) are ignored.
        let Some(last_new) = m.index.checked_add(m.entries.len() as u64) else {
            return;
        };
        let consecutive = m
            .entries
            .iter()
            .enumerate()
            .all(|(i, e)| Some(e.index) == m.index.checked_add(i as u64 + 1));
        if !consecutive || last_new > MAX_INDEX {
            return;
        }
        if !self.raft_log.match_term(m.index, m.log_term) {
            // Tell the leader where our log may agree: the last index of a
            // term not above the one it probed (skips whole terms).
            let hint = m.index.min(self.raft_log.last_index());
            let (hint, hint_term) = self.raft_log.find_conflict_by_term(hint, m.log_term);
            r.index = m.index;
            r.reject = true;
            r.reject_hint = hint;
            r.log_term = hint_term;
            self.send(r);
            return;
        }
        let ci = self.raft_log.find_conflict(&m.entries);
        if ci != 0 {
            if ci <= committed {
                // No leader overwrites committed entries: a forged message.
                return;
            }
            let start = (ci - m.index - 1) as usize;
            self.append_to_log(&m.entries[start..]);
        }
        self.raft_log.commit_to(m.commit.min(last_new));
        r.index = last_new;
        self.send(r);
    }

    fn handle_heartbeat(&mut self, m: Message) {
        self.raft_log.commit_to(m.commit);
        let mut r = Message::new(MessageType::HeartbeatResponse, self.id, m.from, self.term);
        r.context = m.context;
        self.send(r);
    }

    fn snapshot_response(&mut self, to: NodeId, meta: &SnapshotMetadata, next: u64, reject: bool) {
        let mut r = Message::new(MessageType::SnapshotResponse, self.id, to, self.term);
        r.index = meta.index;
        r.log_term = meta.term;
        r.reject_hint = next;
        r.reject = reject;
        self.send(r);
    }

    /// One chunk of a snapshot from the leader: assembled in order (bounded by
    /// `max_snapshot_bytes`), answered with the offset wanted next, restored
    /// once complete. A transfer broken off resumes where it stopped as long
    /// as the same leader sends the same snapshot.
    fn handle_snapshot_chunk(&mut self, m: Message) {
        let from = m.from;
        let Some(chunk) = m.chunk else {
            return;
        };
        let SnapshotChunk {
            metadata,
            total_len,
            offset,
            data,
        } = chunk;
        let (si, st) = (metadata.index, metadata.term);
        let mut ack = Message::new(MessageType::AppendResponse, self.id, from, self.term);
        if si <= self.raft_log.committed() {
            self.incoming = None;
            ack.index = self.raft_log.committed();
            self.send(ack);
            return;
        }
        if self.raft_log.match_term(si, st) {
            // Our log already has the snapshot's last entry: just commit.
            self.incoming = None;
            self.raft_log.commit_to(si);
            ack.index = self.raft_log.committed();
            self.send(ack);
            return;
        }
        if si > MAX_INDEX || total_len > self.max_snapshot_bytes {
            self.snapshot_response(from, &metadata, 0, true);
            return;
        }
        let same = self.incoming.as_ref().is_some_and(|i| {
            i.from == from
                && i.metadata.index == si
                && i.metadata.term == st
                && i.total_len == total_len
        });
        if !same {
            self.incoming = None;
            if offset != 0 {
                self.snapshot_response(from, &metadata, 0, false);
                return;
            }
            self.incoming = Some(IncomingSnapshot {
                from,
                metadata: metadata.clone(),
                total_len,
                data: Vec::new(),
            });
        }
        let inc = self.incoming.as_mut().expect("incoming snapshot set above");
        let have = inc.data.len() as u64;
        let fits = offset
            .checked_add(data.len() as u64)
            .is_some_and(|end| end <= total_len);
        if offset != have || !fits {
            self.snapshot_response(from, &metadata, have, false);
            return;
        }
        inc.data.extend_from_slice(&data);
        let have = inc.data.len() as u64;
        if have < total_len {
            self.snapshot_response(from, &metadata, have, false);
            return;
        }
        let inc = self.incoming.take().expect("incoming snapshot set above");
        self.restore(Snapshot {
            metadata: inc.metadata,
            data: inc.data,
        });
        ack.index = self.raft_log.last_index();
        self.send(ack);
    }

    /// Replaces the log by a complete snapshot from the leader.
    fn restore(&mut self, snap: Snapshot) {
        let si = snap.metadata.index;
        let conf = snap.metadata.conf_state.clone();
        self.raft_log.restore(Arc::new(snap));
        self.conf.reset(si, conf);
        self.conf_changed();
    }

    fn step_leader(&mut self, m: Message) {
        match m.msg_type {
            MessageType::ReadIndex => {
                self.handle_read_index(m.context, m.from);
                return;
            }
            MessageType::TransferLeader => {
                let to = if m.index != INVALID_ID {
                    m.index
                } else {
                    m.from
                };
                self.handle_transfer_leader(to);
                return;
            }
            _ => {}
        }
        let from = m.from;
        let voter = self.tracker.is_voter(from);
        let Some(pr) = self.tracker.get_mut(from) else {
            return;
        };
        match m.msg_type {
            MessageType::AppendResponse => {
                pr.recent_active = true;
                self.handle_append_response(m);
            }
            MessageType::HeartbeatResponse => {
                pr.recent_active = true;
                pr.probe_sent = false;
                if voter && m.context.is_empty() {
                    // An answer to a periodic heartbeat (a read's carries
                    // its context): timed, as a follower times heartbeats.
                    pr.answered_heartbeat();
                }
                if pr.state == ProgressState::Replicate && pr.ins.full() {
                    pr.ins.free_first_one();
                }
                if pr.matched < self.raft_log.last_index() {
                    self.send_append(from);
                }
                if !m.context.is_empty() {
                    self.handle_read_ack(from, &m.context);
                }
            }
            MessageType::SnapshotResponse => {
                pr.recent_active = true;
                let current = pr.state == ProgressState::Snapshot
                    && pr.pending_snapshot == m.index
                    && pr
                        .snapshot
                        .as_ref()
                        .is_some_and(|s| s.metadata.term == m.log_term);
                if !current {
                    return;
                }
                if m.reject {
                    // The follower cannot take it (too large): stop, probe later.
                    pr.become_probe();
                    return;
                }
                let len = pr.snapshot.as_ref().map_or(0, |s| s.data.len() as u64);
                pr.snapshot_offset = m.reject_hint.min(len);
                pr.snapshot_elapsed = 0;
                if pr.snapshot_offset < len {
                    self.send_snapshot_chunk(from);
                }
            }
            _ => {}
        }
    }

    fn handle_append_response(&mut self, m: Message) {
        let from = m.from;
        let last_index = self.raft_log.last_index();
        if m.reject {
            let mut next_probe = m.reject_hint;
            if m.log_term > 0 {
                next_probe = self
                    .raft_log
                    .find_conflict_by_term(m.reject_hint, m.log_term)
                    .0;
            }
            let Some(pr) = self.tracker.get_mut(from) else {
                return;
            };
            if pr.maybe_decr_to(m.index, next_probe) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.send_append(from);
            }
            return;
        }
        if m.index > last_index {
            // Acknowledges entries we never had: forged or from another life.
            return;
        }
        let first_index = self.raft_log.first_index();
        let Some(pr) = self.tracker.get_mut(from) else {
            return;
        };
        let old_paused = pr.is_paused();
        if !pr.maybe_update(m.index) {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot
                if pr.matched >= pr.pending_snapshot || pr.matched + 1 >= first_index =>
            {
                pr.become_probe();
                pr.become_replicate();
            }
            ProgressState::Replicate => pr.ins.free_to(m.index),
            ProgressState::Snapshot => {}
        }
        if self.maybe_commit() {
            self.commit_unsent = true;
        }
        if old_paused {
            self.send_append(from);
        }
        // Keep streaming while the window allows.
        while self.send_append_with_entries(from) {}
        if from == self.lead_transferee
            && self
                .tracker
                .get(from)
                .is_some_and(|p| p.matched == last_index)
        {
            self.send_timeout_now(from);
        }
    }

    /// Sends an Append (or starts a snapshot) to `to` if its progress allows.
    fn send_append(&mut self, to: NodeId) {
        self.maybe_send_append(to, true);
    }

    fn send_append_with_entries(&mut self, to: NodeId) -> bool {
        self.maybe_send_append(to, false)
    }

    /// Returns true if a message was sent. With `send_if_empty` false, only
    /// a message carrying entries is sent.
    fn maybe_send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        if to == self.id || self.role != Role::Leader {
            return false;
        }
        let Some(pr) = self.tracker.get(to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let next = pr.next_idx;
        let recent_active = pr.recent_active;
        let Some(prev_term) = self.raft_log.term(next - 1) else {
            // The entries it needs are compacted: send the snapshot.
            if !recent_active {
                return false;
            }
            let snap = self.raft_log.snapshot();
            if snap.metadata.index == 0 {
                return false;
            }
            if let Some(pr) = self.tracker.get_mut(to) {
                pr.become_snapshot(snap);
            }
            self.send_snapshot_chunk(to);
            return true;
        };
        let ents = self.raft_log.entries_from(next, self.max_msg_size);
        if ents.is_empty() && !send_if_empty {
            return false;
        }
        let mut m = Message::new(MessageType::Append, self.id, to, self.term);
        m.index = next - 1;
        m.log_term = prev_term;
        m.commit = self.raft_log.committed();
        let last = ents.last().map(|e| e.index);
        m.entries = ents;
        self.send(m);
        let Some(pr) = self.tracker.get_mut(to) else {
            return true;
        };
        match pr.state {
            ProgressState::Replicate => {
                if let Some(last) = last {
                    pr.optimistic_update(last);
                    pr.ins.add(last);
                }
            }
            ProgressState::Probe => pr.probe_sent = true,
            ProgressState::Snapshot => {}
        }
        true
    }

    /// Sends the chunk of the snapshot in transfer to `to` that starts at its
    /// acknowledged offset.
    fn send_snapshot_chunk(&mut self, to: NodeId) {
        let chunk_size = self.max_snapshot_chunk;
        let Some(pr) = self.tracker.get_mut(to) else {
            return;
        };
        if pr.state != ProgressState::Snapshot {
            return;
        }
        let Some(snap) = pr.snapshot.clone() else {
            return;
        };
        pr.snapshot_elapsed = 0;
        let len = snap.data.len() as u64;
        let start = pr.snapshot_offset.min(len);
        let end = start.saturating_add(chunk_size).min(len);
        let mut m = Message::new(MessageType::Snapshot, self.id, to, self.term);
        m.chunk = Some(SnapshotChunk {
            metadata: snap.metadata.clone(),
            total_len: len,
            offset: start,
            data: snap.data[start as usize..end as usize].to_vec(),
        });
        self.send(m);
    }

    fn bcast_append(&mut self) {
        self.proposals_unsent = false;
        self.commit_unsent = false;
        for id in self.tracker.members() {
            self.send_append(id);
        }
    }

    /// True when proposals were appended that no Append carries yet.
    pub fn has_unsent_proposals(&self) -> bool {
        self.proposals_unsent && self.role == Role::Leader
    }

    /// Sends the entries proposed since the last broadcast: one Append per
    /// follower for all of them.
    pub fn flush_proposals(&mut self) {
        if self.has_unsent_proposals() {
            self.bcast_append();
        }
        self.proposals_unsent = false;
    }

    fn bcast_heartbeat(&mut self, ctx: Vec<u8>) {
        let committed = self.raft_log.committed();
        let pending: Vec<(NodeId, u64)> = self
            .tracker
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, p)| (*id, p.matched))
            .collect();
        for (id, matched) in pending {
            let mut m = Message::new(MessageType::Heartbeat, self.id, id, self.term);
            // Never past what the follower is known to hold: its log may
            // still diverge beyond `matched`.
            m.commit = matched.min(committed);
            m.context = ctx.clone();
            self.send(m);
        }
    }

    fn send_timeout_now(&mut self, to: NodeId) {
        let m = Message::new(MessageType::TimeoutNow, self.id, to, self.term);
        self.send(m);
    }

    // ----- reads -----

    /// A linearizable read with id `ctx`: the answer (a [`ReadState`]) is
    /// queued locally or sent to the follower that asked.
    pub fn read_index(&mut self, ctx: Vec<u8>) {
        match self.role {
            Role::Leader => self.handle_read_index(ctx, self.id),
            _ => {
                if self.lead != INVALID_ID {
                    let mut m = Message::new(MessageType::ReadIndex, self.id, self.lead, self.term);
                    m.context = ctx;
                    self.send(m);
                }
            }
        }
    }

    fn handle_read_index(&mut self, ctx: Vec<u8>, from: NodeId) {
        if self.tracker.voter_count() <= 1 && self.tracker.is_voter(self.id) {
            let index = self.raft_log.committed();
            self.respond_read(ctx, from, index);
            return;
        }
        if !self.committed_entry_in_current_term() {
            // Our commit index may lag the previous leader's until our
            // no-op commits; answer then.
            self.pending_reads.push((ctx, from));
            return;
        }
        let index = self.raft_log.committed();
        self.read_only.add_request(index, ctx.clone(), from);
        let id = self.id;
        self.handle_read_ack(id, &ctx);
        self.bcast_heartbeat(ctx);
    }

    fn release_pending_reads(&mut self) {
        for (ctx, from) in std::mem::take(&mut self.pending_reads) {
            self.handle_read_index(ctx, from);
        }
    }

    fn handle_read_ack(&mut self, from: NodeId, ctx: &[u8]) {
        if !self.tracker.is_voter(from) {
            return;
        }
        let Some(acks) = self.read_only.recv_ack(from, ctx) else {
            return;
        };
        let n = acks.iter().filter(|id| self.tracker.is_voter(**id)).count();
        if n < self.tracker.quorum() {
            return;
        }
        for (c, rs) in self.read_only.advance(ctx) {
            self.respond_read(c, rs.from, rs.index);
        }
    }

    fn respond_read(&mut self, ctx: Vec<u8>, from: NodeId, index: u64) {
        if from == self.id {
            self.read_states.push(ReadState {
                index,
                request_ctx: ctx,
            });
        } else {
            let mut m = Message::new(MessageType::ReadIndexResponse, self.id, from, self.term);
            m.index = index;
            m.context = ctx;
            self.send(m);
        }
    }

    // ----- proposals, transfers, membership -----

    /// Appends `data` as a new entry (leader only). Returns its index.
    pub fn propose(&mut self, entry_type: EntryType, data: Vec<u8>) -> Result<u64> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader { leader: self.lead });
        }
        if self.lead_transferee != INVALID_ID {
            return Err(Error::ProposalDropped(format!(
                "leadership transfer to {} in progress",
                self.lead_transferee
            )));
        }
        if !self.tracker.is_voter(self.id) {
            return Err(Error::ProposalDropped(
                "this leader is being removed from the group".into(),
            ));
        }
        if data.len() as u64 > self.max_entry_bytes {
            return Err(Error::InvalidArgument(format!(
                "entry of {} bytes exceeds the limit of {} bytes",
                data.len(),
                self.max_entry_bytes
            )));
        }
        if entry_type == EntryType::ConfChange {
            if self.pending_conf_index > self.raft_log.applied() {
                return Err(Error::ConfChangePending {
                    index: self.pending_conf_index,
                });
            }
            self.check_conf_change(ConfChange::decode(&data)?)?;
        }
        let e = Entry {
            term: 0,
            index: 0,
            entry_type,
            data,
        };
        let idx = self.append_entry(vec![e]);
        if entry_type == EntryType::ConfChange {
            self.pending_conf_index = idx;
        }
        // Sent with the next Ready (`flush_proposals`): proposals made
        // meanwhile share one Append per follower.
        self.proposals_unsent = true;
        Ok(idx)
    }

    fn check_conf_change(&self, cc: ConfChange) -> Result<()> {
        let t = &self.tracker;
        let bad = |why: String| Err(Error::InvalidArgument(why));
        match cc {
            ConfChange::AddNode(id) if id == INVALID_ID || t.is_voter(id) => {
                bad(format!("cannot add node {id}: already a voter"))
            }
            ConfChange::AddLearner(id)
                if id == INVALID_ID || t.is_voter(id) || t.is_learner(id) =>
            {
                bad(format!(
                    "cannot add node {id} as a learner: already a member"
                ))
            }
            ConfChange::RemoveNode(id) if !t.is_voter(id) && !t.is_learner(id) => {
                bad(format!("{id} is not a member"))
            }
            ConfChange::RemoveNode(id) if t.is_voter(id) && t.voter_count() <= 1 => {
                bad("cannot remove the last voter".into())
            }
            _ => Ok(()),
        }
    }

    /// Starts a leadership transfer to `to` (leader), or forwards the
    /// request to the leader (follower).
    pub fn transfer_leader(&mut self, to: NodeId) {
        if self.role == Role::Leader {
            self.handle_transfer_leader(to);
        } else if self.lead != INVALID_ID {
            let mut m = Message::new(MessageType::TransferLeader, self.id, self.lead, self.term);
            m.index = to;
            self.send(m);
        }
    }

    fn handle_transfer_leader(&mut self, to: NodeId) {
        if to == self.id || !self.tracker.is_voter(to) || to == self.lead_transferee {
            return;
        }
        self.lead_transferee = to;
        // The transfer must finish within an election timeout.
        self.election_elapsed = 0;
        let caught_up = self
            .tracker
            .get(to)
            .is_some_and(|p| p.matched == self.raft_log.last_index());
        if caught_up {
            self.send_timeout_now(to);
        } else {
            self.send_append(to);
        }
    }

    /// The transport saw the connection to `id` break (EOF/RST).
    ///
    /// On a follower whose leader is `id`: the leader is lost (see
    /// [`Raft::leader_lost`]). On a leader, the follower `id` goes back to
    /// probing, and the timing of its answers starts over.
    pub fn peer_unreachable(&mut self, id: NodeId) {
        match self.role {
            Role::Follower if id == self.lead && id != INVALID_ID => self.leader_lost(id),
            Role::Leader => {
                if let Some(pr) = self.tracker.get_mut(id) {
                    if pr.state == ProgressState::Replicate {
                        pr.become_probe();
                    }
                    // Its next answer follows a restart or a reconnection,
                    // not a heartbeat interval.
                    pr.forget_answers();
                }
            }
            _ => {}
        }
    }

    /// This follower stopped trusting its leader `id`: the transport saw the
    /// connection break, or the failure detector's window of silence expired
    /// (see [`crate::failure_detector`]). The leader is forgotten (its lease
    /// no longer protects it) and fast pre-votes start (see
    /// [`FastElection`]): the lowest-ranked surviving voter pre-votes at once,
    /// the others on later, staggered ticks. Peers grant such a pre-vote only
    /// if they too lost the leader (or never had one); one that
    /// ignored a pre-vote in the last few ticks because the lease held answers
    /// it when it loses the leader itself.
    fn leader_lost(&mut self, id: NodeId) {
        self.lead = INVALID_ID;
        // The randomized election timeout, the fallback once no leader is
        // known, counts from here.
        self.election_elapsed = 0;
        let survivors: Vec<NodeId> = self
            .tracker
            .voters()
            .into_iter()
            .filter(|v| *v != id)
            .collect();
        let Some(rank) = survivors.iter().position(|v| *v == self.id) else {
            return;
        };
        let period = FAST_STAGGER_TICKS * survivors.len();
        let mut f = FastElection {
            lost: id,
            rank,
            elapsed: 0,
            next_attempt: rank * FAST_STAGGER_TICKS,
            period,
        };
        if rank == 0 {
            f.next_attempt = period;
            self.fast_election = Some(f);
            self.fast_pre_vote();
        } else {
            self.fast_election = Some(f);
        }
        // A survivor that saw the loss first already asked: answer it now
        // rather than make it retry a period later (this node ignored it
        // while the lease held).
        if let Some((m, _)) = self.deferred_pre_vote.take() {
            if m.from != id {
                let _ = self.step(m);
            }
        }
    }

    /// Checks that a local snapshot may be taken at `applied` — the index the
    /// application says its state reflects — and returns its metadata (the
    /// membership as of that index). Refused unless `applied` is exactly the
    /// index the core handed out and was advanced to, no snapshot from the
    /// leader is being installed, and the snapshot would be newer than the
    /// current one. Then the application's state, the snapshot's index and
    /// its membership always agree.
    pub fn snapshot_metadata(&mut self, applied: u64) -> Result<SnapshotMetadata> {
        let log = &self.raft_log;
        let refuse = |why: String| Err(Error::SnapshotRefused(why));
        if log.snapshot_in_progress() {
            return refuse("a snapshot from the leader is being installed".into());
        }
        if applied != log.applied() {
            return refuse(format!(
                "the application's applied index {applied} is not the core's {}",
                log.applied()
            ));
        }
        if applied <= log.snapshot_index() {
            return refuse(format!(
                "nothing applied since the snapshot at {}",
                log.snapshot_index()
            ));
        }
        if applied > log.persisted() {
            return refuse(format!("index {applied} is not persisted yet"));
        }
        let Some(term) = log.term(applied) else {
            return refuse(format!("no term known for index {applied}"));
        };
        let conf_state = self.conf.at(applied);
        self.conf.compact_to(applied);
        Ok(SnapshotMetadata {
            index: applied,
            term,
            conf_state,
        })
    }
}
