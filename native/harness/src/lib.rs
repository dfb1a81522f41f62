//! Test harness for the bedrock-raft core: an in-memory [`Network`] of nodes,
//! each the real Ready-loop object ([`Consensus`]) over the real WAL on its
//! own power-losing in-memory disk ([`MemDisk`]), with per-link faults, a
//! transport frame cap, and a trivial state machine.
//!
//! Faults a schedule can inject: a process crash ([`Network::crash`]: what
//! was written survives), a power loss of one node or of all at once
//! ([`Network::power_loss`]: what was not synced is lost or torn), and a
//! power cut in the middle of a node's next persist
//! ([`Network::cut_power_after`]).

use bedrock_raft::{
    Config, Entry, EntryType, Message, NodeId, RawNode, ReadState, Role, Snapshot, Status,
};
use bedrock_wal::{Consensus, Disk, MemDisk, PendingReady, WalOptions, WalStorage};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, MutexGuard};

/// Default cap on one message, as the transport's 16 MiB frame cap.
pub const FRAME_CAP: usize = 16 << 20;

/// Where each node's WAL lives on its disk.
pub const WAL_DIR: &str = "/raft";

/// splitmix64: a small deterministic PRNG for schedules.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)`; `n > 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// A 64-bit FNV-1a hash step, used for state-machine digests.
pub fn mix(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01B3);
    }
    h
}

/// The application: records applied payloads and a running digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateMachine {
    /// Index of the last applied entry.
    pub applied: u64,
    /// Digest of everything applied (identical on all nodes at one index).
    pub digest: u64,
    /// Non-empty normal payloads applied, in order.
    pub data: Vec<Vec<u8>>,
}

impl StateMachine {
    /// Applies one committed entry.
    ///
    /// # Panics
    /// If `e` is not the entry after the last one applied.
    pub fn apply(&mut self, e: &Entry) {
        assert_eq!(e.index, self.applied + 1, "applied out of order");
        self.applied = e.index;
        self.digest = mix(self.digest ^ e.index, &e.data);
        if e.entry_type == EntryType::Normal && !e.data.is_empty() {
            self.data.push(e.data.clone());
        }
    }

    /// Serializes for a snapshot, followed by `padding` zero bytes (to make
    /// snapshots as large as a test needs).
    pub fn encode(&self, padding: usize) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&self.applied.to_le_bytes());
        v.extend_from_slice(&self.digest.to_le_bytes());
        v.extend_from_slice(&(self.data.len() as u32).to_le_bytes());
        for d in &self.data {
            v.extend_from_slice(&(d.len() as u32).to_le_bytes());
            v.extend_from_slice(d);
        }
        v.resize(v.len() + padding, 0);
        v
    }

    /// Rebuilds from snapshot data.
    ///
    /// # Panics
    /// If `b` is not what [`StateMachine::encode`] produced.
    pub fn decode(b: &[u8]) -> Self {
        let u = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let n = u32::from_le_bytes(b[16..20].try_into().unwrap());
        let mut sm = StateMachine {
            applied: u(0),
            digest: u(8),
            data: Vec::new(),
        };
        let mut o = 20;
        for _ in 0..n {
            let len = u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
            sm.data.push(b[o + 4..o + 4 + len].to_vec());
            o += 4 + len;
        }
        sm
    }
}

/// Something a node did while its Readys were processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `id` became leader of `term`.
    BecameLeader {
        /// The node.
        id: NodeId,
        /// Its term.
        term: u64,
    },
    /// `id` persisted a hard state.
    HardState {
        /// The node.
        id: NodeId,
        /// What it saved.
        hs: bedrock_raft::HardState,
    },
    /// `id` applied `entry`; its digest is now `digest`.
    Applied {
        /// The node.
        id: NodeId,
        /// The entry.
        entry: Entry,
        /// State-machine digest after applying it.
        digest: u64,
    },
    /// `id` restored a snapshot.
    Restored {
        /// The node.
        id: NodeId,
        /// Snapshot index.
        index: u64,
        /// Digest of the restored state.
        digest: u64,
    },
    /// `id` got a confirmed read.
    Read {
        /// The node.
        id: NodeId,
        /// The read.
        rs: ReadState,
    },
    /// `id`'s disk failed during a persist: the node died.
    DiskFailed {
        /// The node.
        id: NodeId,
    },
}

/// A live node: the core over its WAL, and its application.
pub struct Node {
    /// The core and its WAL.
    pub c: Consensus,
    /// The application state.
    pub sm: StateMachine,
    /// Reads confirmed so far.
    pub read_states: Vec<ReadState>,
    /// A Ready taken (its early messages sent) whose persist has not run
    /// yet, as a driver's WAL thread may still be writing it while the node
    /// keeps stepping messages (see [`Network::defer_persists`]).
    /// The term when it was taken (a Ready's role change belongs to it).
    pub pending: Option<(PendingReady, u64)>,
}

impl Node {
    /// The core (locked).
    pub fn raw(&self) -> MutexGuard<'_, RawNode<WalStorage>> {
        self.c.raw()
    }

    /// The core's status.
    pub fn status(&self) -> Status {
        self.c.raw().status()
    }
}

/// Ticks `c` once and checks the promise of `next_due`: a tick before the due
/// one only counts (no message, no change of role, term, vote, leader or
/// commit), so a driver may sleep through it and deliver it late.
///
/// # Panics
/// If the tick broke that promise.
pub fn tick_checked(c: &Consensus) {
    let mut raw = c.raw();
    let due = raw.next_due();
    let before = (
        raw.status().soft_state,
        raw.status().hard_state,
        raw.raft().msgs.len(),
        raw.has_ready(),
    );
    raw.tick();
    if due.ticks > 1 {
        let after = (
            raw.status().soft_state,
            raw.status().hard_state,
            raw.raft().msgs.len(),
            raw.has_ready(),
        );
        assert_eq!(
            before,
            after,
            "node {}: a tick {} ticks before its due one acted",
            raw.status().id,
            due.ticks - 1
        );
        assert!(
            raw.next_due().ticks >= due.ticks - 1,
            "node {}: the due tick came closer than one tick",
            raw.status().id
        );
    }
}

/// A simulated cluster: nodes, their disks, messages in flight and link
/// faults. Messages are queued on send and filtered on delivery.
pub struct Network {
    /// Live nodes (absent = crashed or never started).
    pub nodes: BTreeMap<NodeId, Node>,
    /// Each node's disk; survives crashes (and loses what was not synced
    /// on a power loss).
    pub disks: BTreeMap<NodeId, MemDisk>,
    /// Configuration per node.
    pub configs: BTreeMap<NodeId, Config>,
    /// Membership a node starts with when its disk is empty.
    pub initial_voters: BTreeMap<NodeId, Vec<NodeId>>,
    /// Messages sent and not yet delivered.
    pub in_flight: VecDeque<Message>,
    /// Messages larger than this are dropped, as the transport drops frames
    /// over its cap.
    pub max_msg_bytes: usize,
    /// Messages dropped for their size.
    pub oversize_dropped: u64,
    /// Zero bytes added to every snapshot the harness takes.
    pub snapshot_padding: usize,
    /// WAL segment size of every node (small, so segments roll often).
    pub segment_bytes: u64,
    /// Directed links that drop everything.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Events recorded while processing Readys (when `record` is set).
    pub events: Vec<Event>,
    /// Record events.
    pub record: bool,
    /// Leave each Ready unpersisted after sending its early messages, until
    /// the node's next [`Network::process_ready`]: the node steps messages
    /// meanwhile (acks from followers can arrive before a leader's own
    /// persist), and a crash in between loses what it had sent early.
    pub defer_persists: bool,
}

/// A config suitable for tests: election 10, heartbeat 1, seed `seed`.
pub fn test_config(id: NodeId, seed: u64) -> Config {
    let mut c = Config::new(id);
    c.election_tick = 10;
    c.heartbeat_tick = 1;
    c.seed = seed;
    c
}

fn trace() -> bool {
    std::env::var_os("HARNESS_TRACE").is_some()
}

impl Network {
    /// A cluster of `ids` (all initial voters), default test configs.
    pub fn new(ids: &[NodeId]) -> Self {
        Self::with_config(ids, |id| test_config(id, 0))
    }

    /// A cluster of `ids` with configs from `cfg`.
    pub fn with_config(ids: &[NodeId], cfg: impl Fn(NodeId) -> Config) -> Self {
        let mut net = Network {
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            configs: BTreeMap::new(),
            initial_voters: BTreeMap::new(),
            in_flight: VecDeque::new(),
            max_msg_bytes: FRAME_CAP,
            oversize_dropped: 0,
            snapshot_padding: 0,
            segment_bytes: 4 << 10,
            cut: BTreeSet::new(),
            events: Vec::new(),
            record: false,
            defer_persists: false,
        };
        for &id in ids {
            net.start_node(id, cfg(id), ids.to_vec());
        }
        net
    }

    /// Starts a fresh node `id` (empty disk) with `voters` as its initial
    /// membership (`[]` for a node joining an existing group).
    pub fn start_node(&mut self, id: NodeId, config: Config, voters: Vec<NodeId>) {
        self.disks.insert(id, MemDisk::new());
        self.configs.insert(id, config);
        self.initial_voters.insert(id, voters);
        self.restart(id);
    }

    /// The node `id`.
    ///
    /// # Panics
    /// If it is not running.
    pub fn node(&self, id: NodeId) -> &Node {
        self.nodes.get(&id).expect("node not running")
    }

    /// The node `id`, mutable.
    ///
    /// # Panics
    /// If it is not running.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes.get_mut(&id).expect("node not running")
    }

    /// The core of node `id` (locked).
    ///
    /// # Panics
    /// If it is not running.
    pub fn raw(&self, id: NodeId) -> MutexGuard<'_, RawNode<WalStorage>> {
        self.node(id).raw()
    }

    /// Crashes the process of `id`: everything in memory is lost; what its
    /// WAL wrote stays on its disk (synced or not: the page cache survives).
    pub fn crash(&mut self, id: NodeId) {
        if trace() {
            eprintln!("crash {id}");
        }
        self.nodes.remove(&id);
        if let Some(d) = self.disks.get(&id) {
            // A power cut armed for this process's writes dies with it.
            d.cancel_power_cut();
        }
    }

    /// The power of `id`'s machine fails: the process dies and its disk
    /// keeps only what was synced (the rest lost or torn, as `seed` decides).
    pub fn power_loss(&mut self, id: NodeId, seed: u64) {
        if trace() {
            eprintln!("power loss {id} (seed {seed})");
        }
        self.nodes.remove(&id);
        if let Some(d) = self.disks.get(&id) {
            d.power_loss(seed);
        }
    }

    /// The power of `id`'s machine fails after `ops` more disk operations:
    /// the persist that hits it fails and the node dies (see
    /// [`Network::process_ready`]); [`Network::restart`] then loses power first.
    pub fn cut_power_after(&mut self, id: NodeId, ops: u64) {
        if let Some(d) = self.disks.get(&id) {
            d.cut_power_after(ops);
        }
    }

    /// (Re)starts `id` from its disk and processes its first Readys (the
    /// committed entries it re-applies), as a driver does at once.
    ///
    /// # Panics
    /// If the WAL cannot be opened: in a test that is a failure.
    pub fn restart(&mut self, id: NodeId) {
        let disk = self.disks.get(&id).expect("disk").clone();
        if disk.power_failed() {
            disk.power_loss(id);
        }
        let mut opts = WalOptions::new("harness", id);
        opts.segment_bytes = self.segment_bytes;
        opts.cache_bytes = 16 << 10;
        let c = Consensus::open(
            Disk::Mem(disk),
            Path::new(WAL_DIR),
            opts,
            &self.configs[&id],
            &self.initial_voters[&id],
        )
        .unwrap_or_else(|e| panic!("restart of {id}: {e}"));
        let sm = match c.recovered_snapshot() {
            Some(s) => StateMachine::decode(&s.data),
            None => StateMachine::default(),
        };
        self.nodes.insert(
            id,
            Node {
                c,
                sm,
                read_states: Vec::new(),
                pending: None,
            },
        );
        self.process_ready(id);
    }

    /// Cuts the links between `a` and `b` both ways.
    pub fn cut(&mut self, a: NodeId, b: NodeId) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    /// Cuts `id` off from every other node.
    pub fn isolate(&mut self, id: NodeId) {
        let ids: Vec<NodeId> = self.disks.keys().copied().collect();
        for o in ids {
            if o != id {
                self.cut(id, o);
            }
        }
    }

    /// Splits the cluster: nodes in different groups cannot talk.
    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        for (i, g) in groups.iter().enumerate() {
            for h in &groups[i + 1..] {
                for &a in g {
                    for &b in h {
                        self.cut(a, b);
                    }
                }
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// True if messages from `from` to `to` get through.
    pub fn link_up(&self, from: NodeId, to: NodeId) -> bool {
        !self.cut.contains(&(from, to))
    }

    /// Ticks `id` once (if running).
    pub fn tick(&mut self, id: NodeId) {
        if let Some(n) = self.nodes.get_mut(&id) {
            tick_checked(&n.c);
        }
    }

    /// Ticks every running node once.
    pub fn tick_all(&mut self) {
        for n in self.nodes.values_mut() {
            tick_checked(&n.c);
        }
    }

    /// Processes every pending Ready of `id` the way every driver does:
    /// send the early messages, persist (the WAL on its disk), then send
    /// the rest, apply, advance. A persist that fails (the disk lost power)
    /// kills the node. With [`Network::defer_persists`], the last Ready
    /// taken stays unpersisted until the next call.
    pub fn process_ready(&mut self, id: NodeId) {
        loop {
            let Some(node) = self.nodes.get_mut(&id) else {
                return;
            };
            let (pending, term) = match node.pending.take() {
                Some(p) => p,
                None => {
                    if !node.c.has_ready().expect("has_ready") {
                        return;
                    }
                    let mut pending = node.c.ready().expect("ready");
                    let term = node.c.raw().status().hard_state.term;
                    for m in pending.take_early_messages() {
                        if m.approx_size() > self.max_msg_bytes {
                            self.oversize_dropped += 1;
                        } else {
                            self.in_flight.push_back(m);
                        }
                    }
                    if self.defer_persists {
                        node.pending = Some((pending, term));
                        return;
                    }
                    (pending, term)
                }
            };
            let p = match node.c.persist(pending) {
                Ok(p) => p,
                Err(e) => {
                    if trace() {
                        eprintln!("persist of {id} failed: {e}");
                    }
                    if self.record {
                        self.events.push(Event::DiskFailed { id });
                    }
                    self.crash(id);
                    return;
                }
            };
            if trace() {
                eprintln!(
                    "ready {id}: hs={:?} snap={:?} committed={:?} msgs={}",
                    p.hard_state,
                    p.snapshot
                        .as_ref()
                        .map(|s| (s.metadata.index, s.metadata.term)),
                    p.committed_entries
                        .iter()
                        .map(|e| e.index)
                        .collect::<Vec<_>>(),
                    p.messages.len()
                );
            }
            if let Some(s) = &p.snapshot {
                node.sm = StateMachine::decode(&s.data);
                assert_eq!(node.sm.applied, s.metadata.index, "snapshot data index");
                if self.record {
                    self.events.push(Event::Restored {
                        id,
                        index: s.metadata.index,
                        digest: node.sm.digest,
                    });
                }
            }
            if self.record {
                if let Some(hs) = p.hard_state {
                    self.events.push(Event::HardState { id, hs });
                }
                if let Some(ss) = p.soft_state {
                    if ss.role == Role::Leader {
                        self.events.push(Event::BecameLeader { id, term });
                    }
                }
            }
            for m in &p.messages {
                if m.approx_size() > self.max_msg_bytes {
                    self.oversize_dropped += 1;
                } else {
                    self.in_flight.push_back(m.clone());
                }
            }
            for e in &p.committed_entries {
                if e.index <= node.sm.applied {
                    continue;
                }
                node.sm.apply(e);
                if self.record {
                    self.events.push(Event::Applied {
                        id,
                        entry: e.clone(),
                        digest: node.sm.digest,
                    });
                }
            }
            node.c.advance(p.marks()).expect("advance");
            for rs in &p.read_states {
                node.read_states.push(rs.clone());
                if self.record {
                    self.events.push(Event::Read { id, rs: rs.clone() });
                }
            }
        }
    }

    /// Processes the Readys of every running node.
    pub fn process_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.process_ready(id);
        }
    }

    /// Delivers `m` if its link is up and its target runs; the receiver's
    /// Readys are processed afterwards.
    pub fn deliver(&mut self, m: Message) {
        if !self.link_up(m.from, m.to) {
            return;
        }
        let to = m.to;
        if let Some(n) = self.nodes.get_mut(&to) {
            let from = m.from;
            // Errors are misaddressed messages: harmless here.
            let _ = n.c.step(m, from);
            self.process_ready(to);
        }
    }

    /// Processes Readys and delivers messages until nothing moves.
    ///
    /// # Panics
    /// If the network never settles.
    pub fn stabilize(&mut self) {
        for _ in 0..10_000 {
            self.process_all();
            if self.in_flight.is_empty() && !self.persists_pending() {
                return;
            }
            let msgs: Vec<Message> = self.in_flight.drain(..).collect();
            for m in msgs {
                self.deliver(m);
            }
        }
        panic!("network did not stabilize");
    }

    /// True while some node holds a Ready it has not persisted yet.
    pub fn persists_pending(&self) -> bool {
        self.nodes.values().any(|n| n.pending.is_some())
    }

    /// Drops every message in flight.
    pub fn drop_in_flight(&mut self) {
        self.in_flight.clear();
    }

    /// Campaigns on `id`, then stabilizes.
    pub fn elect(&mut self, id: NodeId) {
        self.process_ready(id);
        self.raw(id).campaign().expect("campaign");
        self.stabilize();
    }

    /// The running leader with the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .map(|(id, n)| (*id, n.status()))
            .filter(|(_, st)| st.soft_state.role == Role::Leader)
            .max_by_key(|(_, st)| st.hard_state.term)
            .map(|(id, _)| id)
    }

    /// Proposes `data` on `id` and stabilizes; returns the assigned index.
    pub fn propose(&mut self, id: NodeId, data: &[u8]) -> bedrock_raft::Result<u64> {
        let r = self.raw(id).propose(data.to_vec());
        self.stabilize();
        r
    }

    /// Takes a snapshot of `id` at its applied index and persists it. A
    /// disk failure while writing it kills the node.
    ///
    /// # Errors
    /// When the core refuses (see `Consensus::create_snapshot`), or the disk failed.
    pub fn compact(&mut self, id: NodeId) -> Result<Arc<Snapshot>, bedrock_wal::WalError> {
        let padding = self.snapshot_padding;
        let node = self.nodes.get_mut(&id).expect("node not running");
        match node
            .c
            .create_snapshot(node.sm.applied, node.sm.encode(padding))
        {
            Ok(snap) => {
                if trace() {
                    eprintln!("compact {id}: at {}", snap.metadata.index);
                }
                Ok(snap)
            }
            Err(e @ bedrock_wal::WalError::Raft(_)) => Err(e),
            Err(e) => {
                if self.record {
                    self.events.push(Event::DiskFailed { id });
                }
                self.crash(id);
                Err(e)
            }
        }
    }

    /// Ticks every node `n` times, stabilizing after each tick.
    pub fn tick_and_stabilize(&mut self, n: usize) {
        for _ in 0..n {
            self.tick_all();
            self.stabilize();
        }
    }

    /// Delivers (in order) the in-flight messages matching `pred`; keeps the
    /// rest queued. Returns how many were delivered.
    pub fn deliver_matching(&mut self, pred: impl Fn(&Message) -> bool) -> usize {
        let (hit, keep): (Vec<Message>, Vec<Message>) =
            self.in_flight.drain(..).partition(|m| pred(m));
        self.in_flight = keep.into();
        let n = hit.len();
        for m in hit {
            self.deliver(m);
        }
        n
    }

    /// Drops the in-flight messages matching `pred`.
    pub fn drop_matching(&mut self, pred: impl Fn(&Message) -> bool) {
        self.in_flight.retain(|m| !pred(m));
    }

    /// Like [`Network::stabilize`], but drops the messages matching `pred`
    /// instead of delivering them.
    ///
    /// # Panics
    /// If the network never settles.
    pub fn stabilize_filter_out(&mut self, pred: impl Fn(&Message) -> bool) {
        for _ in 0..10_000 {
            self.process_all();
            self.drop_matching(&pred);
            if self.in_flight.is_empty() && !self.persists_pending() {
                return;
            }
            let msgs: Vec<Message> = self.in_flight.drain(..).collect();
            for m in msgs {
                self.deliver(m);
            }
        }
        panic!("network did not stabilize");
    }
}
