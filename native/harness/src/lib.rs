//! Test harness for the bedrock-raft core: an in-memory [`Network`] of
//! [`RawNode`]s with per-link faults, a trivial state machine, and durable
//! [`Storage`] behind a trait so crashes and restarts are faithful.

pub mod storage;

pub use storage::{MemStorage, Storage, WalStorage};

use bedrock_raft::{Config, Entry, EntryType, Message, NodeId, RawNode, ReadState, Role, Snapshot};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

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
    pub fn apply(&mut self, e: &Entry) {
        assert_eq!(e.index, self.applied + 1, "applied out of order");
        self.applied = e.index;
        self.digest = mix(self.digest ^ e.index, &e.data);
        if e.entry_type == EntryType::Normal && !e.data.is_empty() {
            self.data.push(e.data.clone());
        }
    }

    /// Serializes for a snapshot.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&self.applied.to_le_bytes());
        v.extend_from_slice(&self.digest.to_le_bytes());
        for d in &self.data {
            v.extend_from_slice(&(d.len() as u32).to_le_bytes());
            v.extend_from_slice(d);
        }
        v
    }

    /// Rebuilds from snapshot data.
    pub fn decode(b: &[u8]) -> Self {
        let u = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let mut sm = StateMachine {
            applied: u(0),
            digest: u(8),
            data: Vec::new(),
        };
        let mut o = 16;
        while o < b.len() {
            let n = u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
            sm.data.push(b[o + 4..o + 4 + n].to_vec());
            o += 4 + n;
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
}

/// A live node: the core, its storage and its application.
pub struct Node {
    /// The Raft core.
    pub raw: RawNode,
    /// The application state.
    pub sm: StateMachine,
    /// Reads confirmed so far.
    pub read_states: Vec<ReadState>,
}

/// A simulated cluster: nodes, durable storages, messages in flight and
/// link faults. Messages are queued on send and filtered on delivery.
pub struct Network {
    /// Live nodes (absent = crashed or never started).
    pub nodes: BTreeMap<NodeId, Node>,
    /// Durable storage per node; survives crashes.
    pub storages: BTreeMap<NodeId, Box<dyn Storage>>,
    /// Configuration per node.
    pub configs: BTreeMap<NodeId, Config>,
    /// Membership a node starts with when it has no snapshot.
    pub initial_voters: BTreeMap<NodeId, Vec<NodeId>>,
    /// Messages sent and not yet delivered.
    pub in_flight: VecDeque<Message>,
    /// Directed links that drop everything.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Events recorded while processing Readys (when `record` is set).
    pub events: Vec<Event>,
    /// Record events.
    pub record: bool,
    /// Makes a storage for a fresh node.
    storage_factory: Box<dyn FnMut(NodeId) -> Box<dyn Storage>>,
}

/// A config suitable for tests: election 10, heartbeat 1, seed `seed`.
pub fn test_config(id: NodeId, seed: u64) -> Config {
    let mut c = Config::new(id);
    c.election_tick = 10;
    c.heartbeat_tick = 1;
    c.seed = seed;
    c
}

impl Network {
    /// A cluster of `ids` (all initial voters), in-memory storage, default
    /// test configs.
    pub fn new(ids: &[NodeId]) -> Self {
        Self::with_config(ids, |id| test_config(id, 0))
    }

    /// A cluster of `ids` with configs from `cfg`.
    pub fn with_config(ids: &[NodeId], cfg: impl Fn(NodeId) -> Config) -> Self {
        Self::with_storage(ids, cfg, Box::new(|_| Box::new(MemStorage::new())))
    }

    /// A cluster of `ids` with configs from `cfg` and storages from `factory`.
    pub fn with_storage(
        ids: &[NodeId],
        cfg: impl Fn(NodeId) -> Config,
        factory: Box<dyn FnMut(NodeId) -> Box<dyn Storage>>,
    ) -> Self {
        let mut net = Network {
            nodes: BTreeMap::new(),
            storages: BTreeMap::new(),
            configs: BTreeMap::new(),
            initial_voters: BTreeMap::new(),
            in_flight: VecDeque::new(),
            cut: BTreeSet::new(),
            events: Vec::new(),
            record: false,
            storage_factory: factory,
        };
        for &id in ids {
            net.start_node(id, cfg(id), ids.to_vec());
        }
        net
    }

    /// Starts a fresh node `id` (new storage) with `voters` as its initial
    /// membership (`[]` for a node joining an existing group).
    pub fn start_node(&mut self, id: NodeId, config: Config, voters: Vec<NodeId>) {
        let storage = (self.storage_factory)(id);
        self.storages.insert(id, storage);
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

    /// The core of node `id`.
    pub fn raw(&mut self, id: NodeId) -> &mut RawNode {
        &mut self.node_mut(id).raw
    }

    /// Crashes `id`: everything not saved in its storage is lost.
    pub fn crash(&mut self, id: NodeId) {
        if std::env::var_os("HARNESS_TRACE").is_some() {
            eprintln!("crash {id}");
        }
        self.nodes.remove(&id);
    }

    /// (Re)starts `id` from its storage.
    pub fn restart(&mut self, id: NodeId) {
        let state = self.storages.get_mut(&id).expect("storage").load();
        let sm = match &state.snapshot {
            Some(s) => StateMachine::decode(&s.data),
            None => StateMachine::default(),
        };
        let raw =
            RawNode::new(&self.configs[&id], state, &self.initial_voters[&id]).expect("restart");
        self.nodes.insert(
            id,
            Node {
                raw,
                sm,
                read_states: Vec::new(),
            },
        );
    }

    /// Cuts the links between `a` and `b` both ways.
    pub fn cut(&mut self, a: NodeId, b: NodeId) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    /// Cuts `id` off from every other node.
    pub fn isolate(&mut self, id: NodeId) {
        let ids: Vec<NodeId> = self.storages.keys().copied().collect();
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
            n.raw.tick();
        }
    }

    /// Ticks every running node once.
    pub fn tick_all(&mut self) {
        for n in self.nodes.values_mut() {
            n.raw.tick();
        }
    }

    /// Processes every pending Ready of `id` following the contract:
    /// persist, then send, then apply, then advance.
    pub fn process_ready(&mut self, id: NodeId) {
        loop {
            let Some(node) = self.nodes.get_mut(&id) else {
                return;
            };
            if !node.raw.has_ready() {
                return;
            }
            let mut rd = node.raw.ready();
            let term = node.raw.status().hard_state.term;
            if std::env::var_os("HARNESS_TRACE").is_some() {
                eprintln!(
                    "ready {id}: hs={:?} snap={:?} ents={:?} committed={:?} msgs={}",
                    rd.hard_state,
                    rd.snapshot
                        .as_ref()
                        .map(|s| (s.metadata.index, s.metadata.term)),
                    rd.entries
                        .iter()
                        .map(|e| (e.index, e.term))
                        .collect::<Vec<_>>(),
                    rd.committed_entries
                        .iter()
                        .map(|e| e.index)
                        .collect::<Vec<_>>(),
                    rd.messages.len()
                );
            }
            let storage = self.storages.get_mut(&id).expect("storage");
            if let Some(s) = &rd.snapshot {
                storage.save_snapshot(s);
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
            storage.save(rd.hard_state.as_ref(), &rd.entries);
            if self.record {
                if let Some(hs) = rd.hard_state {
                    self.events.push(Event::HardState { id, hs });
                }
                if let Some(ss) = rd.soft_state {
                    if ss.role == Role::Leader {
                        self.events.push(Event::BecameLeader { id, term });
                    }
                }
            }
            self.in_flight.extend(rd.messages.drain(..));
            for e in &rd.committed_entries {
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
            for rs in &rd.read_states {
                node.read_states.push(rs.clone());
                if self.record {
                    self.events.push(Event::Read { id, rs: rs.clone() });
                }
            }
            node.raw.advance(rd);
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
            // Errors are misaddressed messages: harmless here.
            let _ = n.raw.step(m);
            self.process_ready(to);
        }
    }

    /// Processes Readys and delivers messages until nothing moves (or
    /// `max_rounds` delivery rounds passed).
    pub fn stabilize(&mut self) {
        for _ in 0..10_000 {
            self.process_all();
            if self.in_flight.is_empty() {
                return;
            }
            let msgs: Vec<Message> = self.in_flight.drain(..).collect();
            for m in msgs {
                self.deliver(m);
            }
        }
        panic!("network did not stabilize");
    }

    /// Drops every message in flight.
    pub fn drop_in_flight(&mut self) {
        self.in_flight.clear();
    }

    /// Campaigns on `id`, then stabilizes.
    pub fn elect(&mut self, id: NodeId) {
        self.raw(id).campaign().expect("campaign");
        self.stabilize();
    }

    /// The running leader with the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raw.status().soft_state.role == Role::Leader)
            .max_by_key(|(_, n)| n.raw.status().hard_state.term)
            .map(|(id, _)| *id)
    }

    /// Proposes `data` on `id` and stabilizes; returns the assigned index.
    pub fn propose(&mut self, id: NodeId, data: &[u8]) -> bedrock_raft::Result<u64> {
        let r = self.raw(id).propose(data.to_vec());
        self.stabilize();
        r
    }

    /// Takes a snapshot of `id` at its applied index and persists it.
    pub fn compact(&mut self, id: NodeId) -> bedrock_raft::Result<Snapshot> {
        let node = self.nodes.get_mut(&id).expect("node not running");
        let snap = node.raw.create_snapshot(node.sm.encode())?;
        if std::env::var_os("HARNESS_TRACE").is_some() {
            eprintln!("compact {id}: at {}", snap.metadata.index);
        }
        self.storages
            .get_mut(&id)
            .expect("storage")
            .save_snapshot(&snap);
        Ok(snap)
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
    pub fn stabilize_filter_out(&mut self, pred: impl Fn(&Message) -> bool) {
        for _ in 0..10_000 {
            self.process_all();
            self.drop_matching(&pred);
            if self.in_flight.is_empty() {
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
