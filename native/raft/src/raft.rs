//! The Raft state machine: roles, elections, replication, reads, transfers
//! and membership. Pure: it reacts to ticks, messages and proposals by
//! changing state and queueing messages; `RawNode` hands those out.

use crate::config::Config;
use crate::errors::{Error, Result};
use crate::message::{Message, MessageType};
use crate::raft_log::RaftLog;
use crate::read_only::{ReadOnly, ReadState};
use crate::status::{Role, SoftState};
use crate::tracker::{ProgressState, ProgressTracker, VoteResult};
use crate::types::{
    ConfChange, ConfState, Entry, EntryType, HardState, NodeId, PersistedState, Snapshot,
    SnapshotMetadata, INVALID_ID,
};

/// Context of a vote request caused by a leadership transfer: it overrides
/// the voters' leader stickiness.
pub const CAMPAIGN_TRANSFER: &[u8] = b"CampaignTransfer";

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

/// One Raft node's protocol state.
///
/// Invariant: `lead == id` iff `role == Leader`.
#[derive(Debug)]
pub struct Raft {
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
    pub raft_log: RaftLog,
    /// Membership, progress and votes.
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
    election_timeout: usize,
    heartbeat_timeout: usize,
    randomized_election_timeout: usize,
    max_msg_size: u64,
    check_quorum: bool,
    pre_vote: bool,
    rng: SplitMix64,
    /// Set when the transport reported the leader's connection broken: until
    /// a leader is known again (or an election timeout passes), elections
    /// retry on a short timer staggered by rank, so the survivors elect a new
    /// leader within a few round trips instead of an election timeout, and do
    /// not all campaign at once (which would split the vote).
    fast_election: Option<FastElection>,
}

/// See [`Raft::peer_unreachable`].
#[derive(Debug, Clone, Copy)]
struct FastElection {
    /// Position of this node among the voters other than the lost leader;
    /// rank 0 campaigns at once, rank r after `1 + 2r` ticks.
    rank: usize,
    /// Ticks since the leader was reported lost.
    elapsed: usize,
}

impl Raft {
    /// A follower recovered from `state`, with membership from the snapshot
    /// or else `initial_voters`.
    pub fn new(config: &Config, state: PersistedState, initial_voters: &[NodeId]) -> Result<Self> {
        config.validate()?;
        let voters = match &state.snapshot {
            Some(s) => s.metadata.conf_state.voters.clone(),
            None => ConfState::new(initial_voters.to_vec()).voters,
        };
        if voters.contains(&INVALID_ID) {
            return Err(Error::InvalidArgument("voter id 0".into()));
        }
        let mut bootstrap = Vec::new();
        let mut state = state;
        if state.is_empty() && !voters.is_empty() {
            // A fresh founding member writes the initial membership into the
            // log as committed term-0 entries (identical on every founder),
            // so a node added later learns it by replaying the log.
            bootstrap = voters
                .iter()
                .enumerate()
                .map(|(i, v)| Entry {
                    term: 0,
                    index: i as u64 + 1,
                    entry_type: EntryType::ConfChange,
                    data: ConfChange::AddNode(*v).encode(),
                })
                .collect();
            state.hard_state.commit = voters.len() as u64;
        }
        let hs = state.hard_state;
        let mut raft_log = RaftLog::new(state);
        raft_log.append(&bootstrap);
        raft_log.commit_to(hs.commit);
        let tracker =
            ProgressTracker::new(&voters, raft_log.last_index() + 1, config.max_inflight_msgs);
        let mut r = Raft {
            id: config.id,
            term: hs.term,
            vote: hs.vote,
            lead: INVALID_ID,
            role: Role::Follower,
            raft_log,
            tracker,
            msgs: Vec::new(),
            read_states: Vec::new(),
            pending_conf_index: 0,
            lead_transferee: INVALID_ID,
            read_only: ReadOnly::default(),
            pending_reads: Vec::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            election_timeout: config.election_tick,
            heartbeat_timeout: config.heartbeat_tick,
            randomized_election_timeout: config.election_tick,
            max_msg_size: config.max_size_per_msg,
            check_quorum: config.check_quorum,
            pre_vote: config.pre_vote,
            rng: SplitMix64(config.seed ^ config.id.wrapping_mul(0xA24B_AED4_963E_E407)),
            fast_election: None,
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

    /// True if this node may campaign: it is a voter.
    pub fn promotable(&self) -> bool {
        self.tracker.is_voter(self.id)
    }

    fn send(&mut self, mut m: Message) {
        m.from = self.id;
        self.msgs.push(m);
    }

    fn reset_randomized_election_timeout(&mut self) {
        if let Some(f) = self.fast_election {
            self.randomized_election_timeout = 1 + 2 * f.rank;
            return;
        }
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
        self.reset_randomized_election_timeout();
        self.lead_transferee = INVALID_ID;
        self.tracker.reset_votes();
        self.tracker
            .reset_progress(self.id, self.raft_log.last_index());
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

    fn become_candidate(&mut self) {
        self.reset(self.term + 1);
        self.vote = self.id;
        self.role = Role::Candidate;
    }

    fn become_leader(&mut self) {
        self.fast_election = None;
        self.reset(self.term);
        self.lead = self.id;
        self.role = Role::Leader;
        if let Some(p) = self.tracker.get_mut(self.id) {
            p.become_replicate();
        }
        // No conf change until the no-op (and so everything before it) is
        // applied: the membership of earlier terms must settle first.
        self.pending_conf_index = self.append_entry(vec![Entry::new(0, 0, Vec::new())]);
    }

    fn append_entry(&mut self, mut ents: Vec<Entry>) -> u64 {
        let mut li = self.raft_log.last_index();
        for e in ents.iter_mut() {
            li += 1;
            e.term = self.term;
            e.index = li;
        }
        let li = self.raft_log.append(&ents);
        if let Some(p) = self.tracker.get_mut(self.id) {
            p.maybe_update(li);
        }
        self.maybe_commit();
        li
    }

    /// Advances commit to the quorum's match if that entry is of the current
    /// term (Raft §5.4.2, Figure 8). Returns true if commit moved.
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

    fn tick_election(&mut self) {
        if let Some(f) = &mut self.fast_election {
            f.elapsed += 1;
            if self.lead != INVALID_ID || f.elapsed > self.election_timeout {
                // A leader is known again, or the fast path failed: back to
                // ordinary randomized timeouts.
                self.fast_election = None;
                self.reset_randomized_election_timeout();
            }
        }
        self.election_elapsed += 1;
        if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            self.hup(false);
        }
    }

    fn tick_heartbeat(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            self.election_elapsed = 0;
            if self.check_quorum && !self.tracker.quorum_recently_active(self.id) {
                let term = self.term;
                self.become_follower(term, INVALID_ID);
                return;
            }
            // A transfer that did not finish within an election timeout is abandoned.
            self.lead_transferee = INVALID_ID;
        }
        let timeout = self.election_timeout;
        let mut retry = Vec::new();
        for (id, p) in self.tracker.iter_mut() {
            if p.state == ProgressState::Snapshot {
                p.snapshot_elapsed += 1;
                if p.snapshot_elapsed >= timeout {
                    // No answer to the snapshot: it was probably lost.
                    p.become_probe();
                    retry.push(*id);
                }
            }
        }
        for id in retry {
            self.send_append(id);
        }
        if self.heartbeat_elapsed >= self.heartbeat_timeout {
            self.heartbeat_elapsed = 0;
            self.bcast_heartbeat(Vec::new());
        }
    }

    // ----- elections -----

    /// Starts an election now if allowed (voter, not leader, no unapplied
    /// membership change). `transfer` skips pre-vote and overrides stickiness.
    pub fn hup(&mut self, transfer: bool) {
        if self.role == Role::Leader || !self.promotable() {
            return;
        }
        let lo = self.raft_log.applied() + 1;
        let hi = self.raft_log.committed();
        let changes_membership = |e: &Entry| {
            e.entry_type == EntryType::ConfChange
                && match ConfChange::decode(&e.data) {
                    Ok(ConfChange::AddNode(id)) => !self.tracker.is_voter(id),
                    Ok(ConfChange::RemoveNode(id)) => self.tracker.is_voter(id),
                    Err(_) => false,
                }
        };
        if self.raft_log.slice(lo, hi).iter().any(changes_membership) {
            // Membership may change under us: apply it first.
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

    /// Starts a pre-vote campaign regardless of `pre_vote` (used when the
    /// transport reports the leader dead).
    pub fn pre_campaign(&mut self) {
        if self.role == Role::Leader || !self.promotable() {
            return;
        }
        self.campaign(CampaignType::PreElection);
    }

    fn campaign(&mut self, ct: CampaignType) {
        let (vote_type, term) = if ct == CampaignType::PreElection {
            self.become_pre_candidate();
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
                let in_lease = self.check_quorum
                    && self.lead != INVALID_ID
                    && self.election_elapsed < self.election_timeout;
                if !force && in_lease {
                    // Leader stickiness: a live leader is not deposed by a
                    // node that merely lost touch with it.
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
                    // (with pre-vote it could not learn it otherwise).
                    let mut r =
                        Message::new(MessageType::AppendResponse, self.id, m.from, self.term);
                    r.index = self.raft_log.last_index();
                    r.reject = false;
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
        if can_vote && self.raft_log.is_up_to_date(m.index, m.log_term) {
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

    fn step_candidate(&mut self, m: Message) {
        let my_resp = if self.role == Role::PreCandidate {
            MessageType::RequestPreVoteResponse
        } else {
            MessageType::RequestVoteResponse
        };
        match m.msg_type {
            MessageType::Append => {
                self.become_follower(m.term, m.from);
                self.handle_append(m);
            }
            MessageType::Heartbeat => {
                self.become_follower(m.term, m.from);
                self.handle_heartbeat(m);
            }
            MessageType::Snapshot => {
                self.become_follower(m.term, m.from);
                self.handle_snapshot(m);
            }
            t if t == my_resp => {
                self.poll(m.from, t, !m.reject);
            }
            _ => {}
        }
    }

    fn step_follower(&mut self, m: Message) {
        match m.msg_type {
            MessageType::Append => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_append(m);
            }
            MessageType::Heartbeat => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_heartbeat(m);
            }
            MessageType::Snapshot => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_snapshot(m);
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
        // Forged or corrupt batches (holes, wrong start) are ignored.
        let consecutive = m
            .entries
            .iter()
            .enumerate()
            .all(|(i, e)| Some(e.index) == m.index.checked_add(i as u64 + 1));
        if !consecutive {
            return;
        }
        match self
            .raft_log
            .maybe_append(m.index, m.log_term, m.commit, &m.entries)
        {
            Some(last) => {
                r.index = last;
                self.send(r);
            }
            None => {
                // Tell the leader where our log may agree: the last index of
                // a term not above the one it probed (skips whole terms).
                let hint = m.index.min(self.raft_log.last_index());
                let (hint, hint_term) = self.raft_log.find_conflict_by_term(hint, m.log_term);
                r.index = m.index;
                r.reject = true;
                r.reject_hint = hint;
                r.log_term = hint_term;
                self.send(r);
            }
        }
    }

    fn handle_heartbeat(&mut self, m: Message) {
        self.raft_log.commit_to(m.commit);
        let mut r = Message::new(MessageType::HeartbeatResponse, self.id, m.from, self.term);
        r.context = m.context;
        self.send(r);
    }

    fn handle_snapshot(&mut self, m: Message) {
        let Some(snap) = m.snapshot else {
            return;
        };
        let mut r = Message::new(MessageType::AppendResponse, self.id, m.from, self.term);
        let (si, st) = (snap.metadata.index, snap.metadata.term);
        if si <= self.raft_log.committed() {
            r.index = self.raft_log.committed();
        } else if self.raft_log.match_term(si, st) {
            // Our log already has the snapshot's last entry: just commit.
            self.raft_log.commit_to(si);
            r.index = self.raft_log.committed();
        } else {
            let voters = snap.metadata.conf_state.voters.clone();
            self.raft_log.restore(snap);
            self.tracker.set_voters(&voters, si + 1);
            r.index = self.raft_log.last_index();
        }
        self.send(r);
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
            self.bcast_append();
        } else if old_paused {
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

    /// Sends an Append (or snapshot) to `to` if its progress allows.
    fn send_append(&mut self, to: NodeId) {
        self.maybe_send_append(to, true);
    }

    fn send_append_with_entries(&mut self, to: NodeId) -> bool {
        self.maybe_send_append(to, false)
    }

    /// Returns true if a message was sent. With `send_if_empty` false, only
    /// a message carrying entries is sent.
    fn maybe_send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        if to == self.id {
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
        let prev_term = self.raft_log.term(next - 1);
        let ents = match prev_term {
            Some(_) => self.raft_log.entries_from(next, self.max_msg_size),
            None => Vec::new(),
        };
        let Some(prev_term) = prev_term else {
            // The entries it needs are compacted: send the snapshot.
            if !recent_active {
                return false;
            }
            let Some(snap) = self.raft_log.snapshot().cloned() else {
                return false;
            };
            let si = snap.metadata.index;
            let mut m = Message::new(MessageType::Snapshot, self.id, to, self.term);
            m.snapshot = Some(snap);
            self.send(m);
            if let Some(pr) = self.tracker.get_mut(to) {
                pr.become_snapshot(si);
            }
            return true;
        };
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

    fn bcast_append(&mut self) {
        for id in self.tracker.voters() {
            self.send_append(id);
        }
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
        if self.tracker.len() <= 1 && self.tracker.is_voter(self.id) {
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
            return Err(Error::ProposalDropped("leader is not a voter".into()));
        }
        if entry_type == EntryType::ConfChange {
            if self.pending_conf_index > self.raft_log.applied() {
                return Err(Error::ConfChangePending {
                    index: self.pending_conf_index,
                });
            }
            let cc = ConfChange::decode(&data)?;
            match cc {
                ConfChange::AddNode(id) if id == INVALID_ID || self.tracker.is_voter(id) => {
                    return Err(Error::InvalidArgument(format!("cannot add node {id}")));
                }
                ConfChange::RemoveNode(id) if !self.tracker.is_voter(id) => {
                    return Err(Error::InvalidArgument(format!("{id} is not a voter")));
                }
                ConfChange::RemoveNode(_) if self.tracker.len() <= 1 => {
                    return Err(Error::InvalidArgument(
                        "cannot remove the last voter".into(),
                    ));
                }
                _ => {}
            }
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
        self.bcast_append();
        Ok(idx)
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
    /// On a follower whose leader is `id`: the leader is forgotten (its lease
    /// no longer protects it) and fast elections start: the lowest-ranked
    /// surviving voter pre-votes at once, the others retry on short staggered
    /// timers (see [`FastElection`]). Peers grant such a pre-vote only if they
    /// too lost the leader or their election timeout elapsed. On a leader, the
    /// follower `id` goes back to probing.
    pub fn peer_unreachable(&mut self, id: NodeId) {
        match self.role {
            Role::Follower if id == self.lead && id != INVALID_ID => {
                // Its lease no longer protects it. Every survivor sees the
                // same EOF at about the same moment; ranking them by id lets
                // the first campaign at once and the others only if it fails.
                self.lead = INVALID_ID;
                let rank = self
                    .tracker
                    .voters()
                    .into_iter()
                    .filter(|v| *v != id)
                    .position(|v| v == self.id)
                    .unwrap_or(0);
                self.fast_election = Some(FastElection { rank, elapsed: 0 });
                self.election_elapsed = 0;
                self.reset_randomized_election_timeout();
                if rank == 0 {
                    self.pre_campaign();
                }
            }
            Role::Leader => {
                if let Some(pr) = self.tracker.get_mut(id) {
                    if pr.state == ProgressState::Replicate {
                        pr.become_probe();
                    }
                }
            }
            _ => {}
        }
    }

    /// Applies a committed membership change (called as it is applied).
    pub fn apply_conf_change(&mut self, cc: ConfChange) {
        match cc {
            ConfChange::AddNode(id) => {
                if id == INVALID_ID || self.tracker.is_voter(id) {
                    return;
                }
                self.tracker.add_voter(id, self.raft_log.last_index() + 1);
            }
            ConfChange::RemoveNode(id) => {
                if !self.tracker.is_voter(id) {
                    return;
                }
                self.tracker.remove_voter(id);
                if id == self.lead_transferee {
                    self.lead_transferee = INVALID_ID;
                }
            }
        }
        if self.role != Role::Leader {
            return;
        }
        if !self.tracker.is_voter(self.id) {
            // Tell the others the commit index, then step aside.
            self.bcast_append();
            let term = self.term;
            self.become_follower(term, INVALID_ID);
            return;
        }
        if self.maybe_commit() {
            self.bcast_append();
        } else if let ConfChange::AddNode(id) = cc {
            self.send_append(id);
        }
    }

    /// Takes a snapshot at the applied index with the current membership,
    /// keeps it and compacts the log up to it.
    pub fn create_snapshot(&mut self, data: Vec<u8>) -> Result<Snapshot> {
        let applied = self.raft_log.applied();
        if applied == 0 {
            return Err(Error::InvalidArgument("nothing applied yet".into()));
        }
        if applied > self.raft_log.stabled() {
            return Err(Error::InvalidArgument(
                "applied entries are not persisted yet: advance first".into(),
            ));
        }
        let term = self
            .raft_log
            .term(applied)
            .ok_or_else(|| Error::InvalidArgument(format!("no term for index {applied}")))?;
        let snap = Snapshot {
            metadata: SnapshotMetadata {
                index: applied,
                term,
                conf_state: ConfState::new(self.tracker.voters()),
            },
            data,
        };
        self.raft_log.compact(snap.clone());
        Ok(snap)
    }
}
