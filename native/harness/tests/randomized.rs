//! Randomized schedules: seeded clusters of 3 and 5 nodes, each the real
//! Ready-loop object over the real WAL on its own power-losing disk, under
//! process crashes, power losses (of one node, or of the whole cluster at
//! once), power cuts in the middle of a persist, restarts, partitions,
//! message loss, duplication and reordering, proposals, snapshots,
//! transfers, reads, membership changes and fast failure detection, with the
//! safety invariants checked after every step:
//!
//! - I1: at most one leader per term (tracked over the whole history);
//! - I2: one entry (and one state-machine digest) per committed index,
//!   across all nodes;
//! - I3: no committed entry is lost: every new leader's log holds every
//!   entry ever committed; a restarted node still holds every entry it had
//!   persisted (its fsyncs were real: the disk model loses what was not
//!   synced) and every committed entry it had;
//! - I4: term and vote never go backwards on a node, across restarts and
//!   power losses; the commit index not across a process crash; the
//!   membership in force after a restart is the one of the persisted log;
//! - reads: a confirmed ReadIndex is at least every index committed before
//!   the read was asked.
//!
//! Seeds: fixed ones (`0..RAFT_SEEDS`, default 1500) plus a fresh random base
//! on every run (`RAFT_FRESH` seeds from it, default 500), printed;
//! `RAFT_SEED=s` replays one. Schedules run on every core. Ends with a
//! liveness check: once faults stop, a leader commits.

use bedrock_raft::{
    ConfChange, ConfState, EntryType, HardState, NodeId, Role, Storage, INVALID_ID,
};
use bedrock_raft_harness::{mix, test_config, Event, Network, Rng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const STEPS: usize = 2500;

/// How a node went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Down {
    /// kill -9: what was written survives.
    Crash,
    /// Power loss: only what was synced survives.
    PowerLoss,
    /// The power failed in the middle of a persist.
    PowerCut,
}

/// What a node had when it went down, to compare with after its restart.
#[derive(Debug, Clone)]
struct Before {
    how: Down,
    /// Last persisted hard state.
    hs: HardState,
    /// (index, term) of the last persisted entry.
    stabled: (u64, u64),
    /// Membership of the persisted log (None: nothing persisted yet).
    conf: Option<ConfState>,
}

#[derive(Default)]
struct Checker {
    /// term -> its leader (I1).
    leaders: BTreeMap<u64, NodeId>,
    /// index -> (term, payload hash) of committed entries (I2).
    committed: BTreeMap<u64, (u64, u64)>,
    /// index -> state-machine digest after applying it (I2).
    digests: BTreeMap<u64, u64>,
    /// Last persisted hard state per node (I4).
    hard: BTreeMap<NodeId, HardState>,
    /// Per node: committed entries already compared with `committed`.
    commit_checked: BTreeMap<NodeId, u64>,
    /// read ctx -> highest committed index when it was asked.
    read_floor: BTreeMap<Vec<u8>, u64>,
    /// Nodes that are down, and what they had.
    down: BTreeMap<NodeId, Before>,
}

fn entry_hash(t: EntryType, data: &[u8]) -> u64 {
    mix(if t == EntryType::Normal { 1 } else { 2 }, data)
}

impl Checker {
    fn commit_entry(&mut self, index: u64, term: u64, hash: u64, who: NodeId) {
        let prev = self.committed.entry(index).or_insert((term, hash));
        assert_eq!(
            *prev,
            (term, hash),
            "I2: node {who} has a different entry at committed index {index}"
        );
    }

    fn on_events(&mut self, net: &mut Network) {
        for ev in std::mem::take(&mut net.events) {
            match ev {
                Event::HardState { id, hs } => {
                    let old = self.hard.get(&id).copied().unwrap_or_default();
                    assert!(
                        hs.term >= old.term,
                        "I4: term of {id} went back {old:?} -> {hs:?}"
                    );
                    if hs.term == old.term && old.vote != INVALID_ID {
                        assert_eq!(hs.vote, old.vote, "I4: vote of {id} changed in a term");
                    }
                    self.hard.insert(id, hs);
                }
                Event::BecameLeader { id, term } => {
                    let l = *self.leaders.entry(term).or_insert(id);
                    assert_eq!(l, id, "I1: two leaders in term {term}: {l} and {id}");
                    if let Some(n) = net.nodes.get(&id) {
                        let raw = n.raw();
                        let log = raw.raft_log();
                        for (i, (t, _)) in self.committed.range(log.first_index()..) {
                            assert_eq!(
                                log.term(*i),
                                Some(*t),
                                "I3: leader {id} of term {term} lacks committed index {i}"
                            );
                        }
                    }
                }
                Event::Applied { id, entry, digest } => {
                    self.commit_entry(
                        entry.index,
                        entry.term,
                        entry_hash(entry.entry_type, &entry.data),
                        id,
                    );
                    let d = *self.digests.entry(entry.index).or_insert(digest);
                    assert_eq!(d, digest, "I2: state of {id} differs at {}", entry.index);
                }
                Event::Restored { id, index, digest } => {
                    let d = *self.digests.entry(index).or_insert(digest);
                    assert_eq!(d, digest, "I2: snapshot state of {id} differs at {index}");
                }
                Event::Read { id, rs } => {
                    if let Some(floor) = self.read_floor.get(&rs.request_ctx) {
                        assert!(
                            rs.index >= *floor,
                            "stale read on {id}: index {} < committed {floor}",
                            rs.index
                        );
                    }
                }
                Event::DiskFailed { id } => {
                    // The node died inside a persist (power cut).
                    let before = self.snapshot_of(net, id, Down::PowerCut);
                    self.down.insert(id, before);
                }
            }
        }
        // Entries each node has durably committed agree everywhere.
        for (&id, n) in &net.nodes {
            let Some(hs) = self.hard.get(&id).copied() else {
                continue;
            };
            let raw = n.raw();
            let log = raw.raft_log();
            let from = self
                .commit_checked
                .get(&id)
                .copied()
                .unwrap_or(0)
                .max(log.snapshot_index());
            let upto = hs.commit.min(log.committed());
            for e in log.slice(from + 1, upto, u64::MAX) {
                self.commit_entry(e.index, e.term, entry_hash(e.entry_type, &e.data), id);
            }
            if upto > from {
                self.commit_checked.insert(id, upto);
            }
        }
    }

    /// What `id` had, as it goes down (`how`). For a node already gone (a
    /// power cut inside persist), what the checker last knew.
    fn snapshot_of(&self, net: &Network, id: NodeId, how: Down) -> Before {
        let hs = self.hard.get(&id).copied().unwrap_or_default();
        match net.nodes.get(&id) {
            Some(n) => {
                let raw = n.raw();
                let log = raw.raft_log();
                // What is on the disk is the store's: with a Ready taken and
                // not persisted yet, the log in memory may already have moved
                // past it (a snapshot from the leader, a replaced tail). The
                // membership of what is on the disk is then not known here,
                // and not checked.
                let store = log.store();
                let p = store.last_index();
                let stabled = (p, store.term(p).unwrap_or(0));
                let conf = n.pending.is_none().then(|| raw.persisted_conf_state());
                Before {
                    how,
                    hs,
                    stabled,
                    conf,
                }
            }
            None => Before {
                how,
                hs,
                stabled: (0, 0),
                conf: None,
            },
        }
    }

    fn went_down(&mut self, net: &Network, id: NodeId, how: Down) {
        // A crash of a process whose disk already lost power is a power cut.
        let how = if how == Down::Crash && net.disks[&id].power_failed() {
            Down::PowerCut
        } else {
            how
        };
        if net.nodes.contains_key(&id) {
            let b = self.snapshot_of(net, id, how);
            self.down.insert(id, b);
        } else if let Some(b) = self.down.get_mut(&id) {
            // Already down; a power loss now loses what the crash kept.
            if how != Down::Crash && b.how == Down::Crash {
                b.how = how;
            }
        }
    }

    fn check_restart(&mut self, net: &Network, id: NodeId) {
        let Some(before) = self.down.remove(&id) else {
            return;
        };
        let st = net.node(id).status();
        let hs = st.hard_state;
        let old = before.hs;
        if before.how == Down::PowerCut {
            assert!(
                (hs.term, hs.vote) >= (old.term, old.vote) || hs.term > old.term,
                "I4: {id} restarted with term/vote {:?} after {old:?}",
                (hs.term, hs.vote)
            );
        } else {
            assert_eq!(
                (hs.term, hs.vote),
                (old.term, old.vote),
                "I4: {id} restarted with another term or vote ({:?})",
                before.how
            );
        }
        if before.how == Down::Crash {
            assert!(
                hs.commit >= old.commit,
                "I4: {id} lost its commit across a crash: {hs:?} after {old:?}, {st:?}"
            );
        }
        let raw = net.raw(id);
        let log = raw.raft_log();
        if before.how != Down::PowerCut {
            // Everything it had persisted (and so acknowledged) is there.
            let (i, t) = before.stabled;
            if i >= log.first_index() {
                assert_eq!(
                    log.term(i),
                    Some(t),
                    "I3: {id} lost persisted entry {i} (after {:?})",
                    before.how
                );
            }
            if let Some(conf) = &before.conf {
                assert_eq!(
                    &raw.persisted_conf_state(),
                    conf,
                    "I4: the membership of {id} changed across a restart ({:?})",
                    before.how
                );
            }
        }
        // Every committed entry it held is still there (entries are synced
        // before a hard state naming them is written).
        let lo = log.first_index();
        if old.commit >= lo {
            for (i, (t, _)) in self.committed.range(lo..=old.commit) {
                assert_eq!(
                    log.term(*i),
                    Some(*t),
                    "I3: {id} lost committed {i} on restart"
                );
            }
        }
        // What it came back with is what later changes are compared with.
        self.hard.insert(id, hs);
    }
}

fn live(net: &Network) -> Vec<NodeId> {
    net.nodes.keys().copied().collect()
}

fn pick<T: Copy>(rng: &mut Rng, v: &[T]) -> Option<T> {
    if v.is_empty() {
        None
    } else {
        Some(v[rng.below(v.len() as u64) as usize])
    }
}

fn run(seed: u64) {
    let mut rng = Rng::new(seed ^ 0x5EED);
    let n: u64 = if rng.chance(50) { 3 } else { 5 };
    let ids: Vec<NodeId> = (1..=n).collect();
    let pre_vote = rng.chance(80);
    let check_quorum = rng.chance(80);
    let inflight = 1 + rng.below(4) as usize;
    let msg_size = 32 + rng.below(200);
    let chunk = 8 + rng.below(200);
    let cfg = move |id| {
        let mut c = test_config(id, seed);
        c.heartbeat_tick = 2;
        c.pre_vote = pre_vote;
        c.check_quorum = check_quorum;
        c.max_inflight_msgs = inflight;
        c.max_size_per_msg = msg_size;
        c.max_committed_size_per_ready = 128;
        c.max_snapshot_chunk = chunk;
        c
    };
    let mut net = Network::with_config(&ids, cfg);
    net.segment_bytes = 512 + rng.below(4096);
    // Half the schedules persist each Ready a step after taking it (the
    // leader's Appends already sent), as the driver's WAL thread does.
    net.defer_persists = rng.chance(50) && std::env::var_os("NO_DEFER").is_none();
    // Ids that may join later (each proposed at most once, never re-added).
    let mut spares: Vec<NodeId> = vec![n + 1, n + 2];
    let mut all_ids = ids.clone();
    net.record = true;
    let mut ck = Checker::default();
    let mut crashed: Vec<NodeId> = Vec::new();
    let mut next_payload = 0u64;
    let mut next_read = 0u64;

    for _ in 0..STEPS {
        let roll = rng.below(1000);
        match roll {
            0..=349 => {
                // Deliver a random message: reorder, sometimes drop or duplicate.
                if !net.in_flight.is_empty() {
                    let i = rng.below(net.in_flight.len() as u64) as usize;
                    if rng.chance(8) {
                        net.in_flight.remove(i);
                    } else if rng.chance(5) {
                        let m = net.in_flight[i].clone();
                        net.deliver(m);
                    } else if let Some(m) = net.in_flight.remove(i) {
                        net.deliver(m);
                    }
                }
            }
            350..=599 => {
                if rng.chance(30) {
                    net.tick_all();
                } else if let Some(id) = pick(&mut rng, &live(&net)) {
                    net.tick(id);
                }
            }
            600..=699 => {
                let leaders: Vec<NodeId> = live(&net)
                    .into_iter()
                    .filter(|id| net.node(*id).status().soft_state.role == Role::Leader)
                    .collect();
                if let Some(id) = pick(&mut rng, &leaders).or_else(|| pick(&mut rng, &ids)) {
                    if net.nodes.contains_key(&id) {
                        next_payload += 1;
                        let data = format!("p{next_payload}").into_bytes();
                        let _ = net.raw(id).propose(data);
                    }
                }
            }
            700..=714 => {
                if let Some(id) = pick(&mut rng, &live(&net)) {
                    ck.went_down(&net, id, Down::Crash);
                    net.crash(id);
                    crashed.push(id);
                }
            }
            715..=719 => {
                // One machine loses power.
                if let Some(id) = pick(&mut rng, &all_ids) {
                    ck.went_down(&net, id, Down::PowerLoss);
                    net.power_loss(id, rng.next_u64());
                    if !crashed.contains(&id) {
                        crashed.push(id);
                    }
                }
            }
            720 => {
                // The whole cluster loses power at once.
                for &id in &all_ids {
                    ck.went_down(&net, id, Down::PowerLoss);
                    net.power_loss(id, rng.next_u64());
                    if !crashed.contains(&id) {
                        crashed.push(id);
                    }
                }
            }
            721..=725 => {
                // The power fails in the middle of a node's coming writes.
                if let Some(id) = pick(&mut rng, &live(&net)) {
                    net.cut_power_after(id, rng.below(12));
                }
            }
            726..=789 => {
                if !crashed.is_empty() {
                    let id = crashed.remove(rng.below(crashed.len() as u64) as usize);
                    net.restart(id);
                    ck.check_restart(&net, id);
                }
            }
            790..=809 => {
                net.heal();
                if rng.chance(50) {
                    net.isolate(pick(&mut rng, &all_ids).unwrap());
                } else {
                    let (a, b): (Vec<NodeId>, Vec<NodeId>) =
                        all_ids.iter().partition(|_| rng.chance(50));
                    net.partition(&[a, b]);
                }
            }
            810..=849 => net.heal(),
            850..=879 => {
                if let Some(id) = pick(&mut rng, &live(&net)) {
                    net.process_ready(id);
                    if net.nodes.contains_key(&id) {
                        let _ = net.compact(id);
                    }
                }
            }
            880..=889 => {
                if let (Some(on), Some(to)) = (pick(&mut rng, &live(&net)), pick(&mut rng, &ids)) {
                    net.raw(on).transfer_leader(to);
                }
            }
            890..=899 => {
                if let (Some(on), Some(dead)) = (pick(&mut rng, &live(&net)), pick(&mut rng, &ids))
                {
                    net.raw(on).peer_unreachable(dead);
                }
            }
            900..=919 => {
                if let Some(on) = pick(&mut rng, &live(&net)) {
                    next_read += 1;
                    let ctx = format!("r{next_read}").into_bytes();
                    let floor = ck.committed.keys().next_back().copied().unwrap_or(0);
                    ck.read_floor.insert(ctx.clone(), floor);
                    net.raw(on).read_index(ctx);
                }
            }
            920..=939 => {
                let leaders: Vec<NodeId> = live(&net)
                    .into_iter()
                    .filter(|id| net.node(*id).status().soft_state.role == Role::Leader)
                    .collect();
                if let Some(l) = pick(&mut rng, &leaders) {
                    let st = net.node(l).status();
                    let r = rng.below(3);
                    if r == 0 && !spares.is_empty() {
                        let id = spares.remove(0);
                        net.start_node(id, cfg(id), vec![]);
                        all_ids.push(id);
                        let cc = if rng.chance(50) {
                            ConfChange::AddLearner(id)
                        } else {
                            ConfChange::AddNode(id)
                        };
                        let _ = net.raw(l).propose_conf_change(cc);
                    } else if r == 1 && !st.learners.is_empty() {
                        let id = pick(&mut rng, &st.learners).unwrap();
                        let _ = net.raw(l).propose_conf_change(ConfChange::AddNode(id));
                    } else if st.voters.len() as u64 >= n {
                        let v = pick(&mut rng, &st.voters).unwrap();
                        let _ = net.raw(l).propose_conf_change(ConfChange::RemoveNode(v));
                    }
                }
            }
            _ => {
                for _ in 0..rng.below(12) {
                    let Some(m) = net.in_flight.pop_front() else {
                        break;
                    };
                    net.deliver(m);
                }
            }
        }
        // Most nodes get to process their Readys; the rest lose them if
        // they crash first.
        for id in live(&net) {
            if rng.chance(85) {
                net.process_ready(id);
            }
        }
        while net.in_flight.len() > 400 {
            net.in_flight.pop_front();
        }
        ck.on_events(&mut net);
        // Nodes whose disk failed inside a persist died there.
        for &id in &all_ids {
            if !net.nodes.contains_key(&id) && !crashed.contains(&id) {
                crashed.push(id);
            }
        }
    }

    // Liveness: faults stop, everything restarts and heals; a leader must
    // emerge and commit a new entry on every node.
    net.heal();
    for d in net.disks.values() {
        d.cancel_power_cut();
    }
    for id in crashed.drain(..) {
        net.restart(id);
        ck.check_restart(&net, id);
    }
    let mut committed_on_all = false;
    let mut proposed: Option<u64> = None;
    let mut voters: Vec<NodeId> = ids.clone();
    let mut members: Vec<NodeId> = ids.clone();
    // Generous: without pre-vote, a voter whose log lacks a later membership
    // (it does not know a node was promoted) keeps bumping the term without
    // asking that node, which wins only once its timer runs ahead; resolved
    // by the randomized timeouts, but it can take many election rounds.
    for round in 0..3000 {
        net.tick_all();
        net.stabilize();
        ck.on_events(&mut net);
        // Only members run: a removed node that never learned it was
        // removed would keep campaigning (a known limit of single-server
        // changes without pre-vote).
        if let Some(l) = net.leader() {
            let st = net.node(l).status();
            voters = st.voters.clone();
            members = st.voters.iter().chain(&st.learners).copied().collect();
            for id in &all_ids {
                let running = net.nodes.contains_key(id);
                if members.contains(id) && !running {
                    net.restart(*id);
                    ck.check_restart(&net, *id);
                } else if !members.contains(id) && running {
                    net.crash(*id);
                }
            }
        } else {
            // No leader to say who the members are: everyone runs (a node
            // that died in a power cut just before the faults stopped too).
            for id in all_ids.clone() {
                if !net.nodes.contains_key(&id) {
                    net.restart(id);
                    ck.check_restart(&net, id);
                }
            }
        }
        // (Re)propose until it sticks: a proposal can be lost with its leader.
        if proposed.is_none() || round % 50 == 49 {
            if let Some(l) = net.leader() {
                proposed = net.raw(l).propose(b"final".to_vec()).ok().or(proposed);
            }
        }
        if proposed.is_some()
            && members.iter().all(|id| {
                net.nodes
                    .get(id)
                    .is_some_and(|n| n.sm.data.last().is_some_and(|d| d == b"final"))
            })
        {
            committed_on_all = true;
            break;
        }
    }
    ck.on_events(&mut net);
    // A leader tells its followers of a commit with its next Append or tick:
    // the members may still be an entry apart (a re-proposed "final").
    for _ in 0..10 {
        let applied: Vec<u64> = members.iter().map(|id| net.node(*id).sm.applied).collect();
        if applied.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        net.tick_all();
        net.stabilize();
        ck.on_events(&mut net);
    }
    if !committed_on_all {
        for id in net.nodes.keys() {
            let st = net.node(*id).status();
            eprintln!(
                "{id}: {:?} {:?} applied={} last={} first={} voters={:?} learners={:?} progress={:?} data={:?}",
                st.hard_state,
                st.soft_state,
                st.applied,
                st.last_index,
                st.first_index,
                st.voters,
                st.learners,
                st.progress,
                net.node(*id).sm.data.last()
            );
        }
    }
    assert!(committed_on_all, "liveness: no commit after faults stopped");
    let digests: Vec<(u64, u64)> = members
        .iter()
        .map(|id| (net.node(*id).sm.applied, net.node(*id).sm.digest))
        .collect();
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "final states differ: {digests:?}"
    );
    if std::env::var_os("RAFT_STATS").is_some() {
        eprintln!(
            "seed {seed}: {n} nodes, voters {voters:?}, {} terms with leaders, {} committed, {} syncs",
            ck.leaders.len(),
            ck.committed.len(),
            net.disks.values().map(|d| d.sync_count()).sum::<u64>(),
        );
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|s| {
        s.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {s:?}"))
    })
}

/// A base seed nobody chose: from the clock and the process.
fn fresh_base() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut r = Rng::new(nanos ^ (u64::from(std::process::id()) << 32));
    r.next_u64() >> 1
}

#[test]
fn randomized_schedules() {
    let seeds: Vec<u64> = match env_u64("RAFT_SEED") {
        Some(s) => vec![s],
        None => {
            let fixed = env_u64("RAFT_SEEDS").unwrap_or(1500);
            let fresh = env_u64("RAFT_FRESH").unwrap_or(500);
            let base = fresh_base();
            eprintln!(
                "randomized: fixed seeds 0..{fixed}, fresh seeds {base}..{} (replay one with \
                 RAFT_SEED=<seed> cargo test -p bedrock-raft-harness --test randomized)",
                base + fresh
            );
            (0..fixed).chain(base..base + fresh).collect()
        }
    };
    let next = AtomicU64::new(0);
    let failed: Mutex<Option<u64>> = Mutex::new(None);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= seeds.len() || failed.lock().unwrap().is_some() {
                    return;
                }
                let seed = seeds[i];
                if std::panic::catch_unwind(|| run(seed)).is_err() {
                    let mut f = failed.lock().unwrap();
                    if f.is_none() {
                        *f = Some(seed);
                    }
                }
            });
        }
    });
    let failed = *failed.lock().unwrap();
    if let Some(seed) = failed {
        panic!(
            "randomized schedule failed at seed {seed}; replay with:\n  \
             RAFT_SEED={seed} cargo test -p bedrock-raft-harness --test randomized"
        );
    }
}
