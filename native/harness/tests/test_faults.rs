//! The core under faults its happy path never meets: power loss of the
//! whole cluster, snapshots racing a slow fsync, elections while membership
//! changes, slow vote round trips, forged input, and snapshots far larger
//! than a transport frame.

mod common;

use bedrock_raft::{
    ConfChange, Error, Message, MessageType, NodeId, Role, SnapshotChunk, INVALID_ID,
};
use bedrock_raft_harness::{test_config, Network, StateMachine};
use bedrock_wal::WalError;
use common::*;

fn add(net: &mut Network, leader: NodeId, id: NodeId) {
    net.start_node(id, test_config(id, 0), vec![]);
    net.raw(leader)
        .propose_conf_change(ConfChange::AddNode(id))
        .unwrap();
    net.stabilize();
    net.tick_and_stabilize(2);
}

fn power_loss_all(net: &mut Network, seed: u64) {
    let ids: Vec<NodeId> = net.disks.keys().copied().collect();
    for id in ids {
        net.power_loss(id, seed + id);
    }
}

// ----- the leader persists in parallel with replication (thesis 10.2.1) -----

/// The leader's Appends leave before its own persist, so a follower's ack
/// can arrive first: then only durable copies count, and the leader's own
/// counts once its persist is done. A leader that counted its copy at once
/// would hold X committed on one durable copy (2's); only the one-Ready-at-
/// a-time discipline would keep that from being applied or published
/// before its own persist (losing power then, it would come back without
/// X, and 3 could win a term without it).
#[test]
fn a_leader_counts_its_own_copy_only_once_persisted() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.defer_persists = true;
    let x = net.raw(1).propose(b"X".to_vec()).unwrap();
    net.process_ready(1); // its Appends are out; its persist is not done
    assert!(net.node(1).pending.is_some());
    assert!(net
        .in_flight
        .iter()
        .any(|m| m.msg_type == MessageType::Append
            && m.to == 2
            && m.entries.iter().any(|e| e.index == x)));
    net.deliver_matching(|m| m.to == 2);
    net.process_ready(2); // 2 persists X and acks
    let acks: Vec<Message> = net.in_flight.drain(..).filter(|m| m.to == 1).collect();
    assert!(acks
        .iter()
        .any(|m| m.msg_type == MessageType::AppendResponse && m.index >= x));
    for m in acks {
        net.node(1).c.step(m, 2).unwrap();
    }
    assert!(
        net.raw(1).raft_log().committed() < x,
        "committed on the follower's copy alone"
    );
    net.process_ready(1); // its persist completes: two durable copies
    assert!(net.raw(1).raft_log().committed() >= x);
    net.defer_persists = false;
    net.stabilize();
    net.tick(1); // the commit reaches the followers with the leader's next tick
    net.stabilize();
    assert_eq!(applied_data(&net, 3), vec![b"X".to_vec()]);
}

/// A write costs each follower one Append and its answer: the new commit
/// index goes out with the next Append or the leader's next tick, not in an
/// Append of its own (found profiling one client's directory writes: those
/// Appends and their answers were four of the ten messages of each write).
#[test]
fn the_commit_of_a_write_rides_on_the_next_append_or_tick() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    let x = net.raw(1).propose(b"X".to_vec()).unwrap();
    let mut appends = 0;
    loop {
        net.process_all();
        if net.in_flight.is_empty() && !net.persists_pending() {
            break;
        }
        let msgs: Vec<Message> = net.in_flight.drain(..).collect();
        appends += msgs
            .iter()
            .filter(|m| m.msg_type == MessageType::Append)
            .count();
        for m in msgs {
            net.deliver(m);
        }
    }
    assert!(net.raw(1).raft_log().committed() >= x);
    assert_eq!(appends, 2, "one Append per follower");
    assert!(applied_data(&net, 2).is_empty() && applied_data(&net, 3).is_empty());
    net.tick(1);
    net.stabilize();
    assert_eq!(applied_data(&net, 2), vec![b"X".to_vec()]);
    assert_eq!(applied_data(&net, 3), vec![b"X".to_vec()]);
    // A second write's Append carries the first one's commit.
    let y = net.raw(1).propose(b"Y".to_vec()).unwrap();
    net.stabilize();
    assert!(net.raw(1).raft_log().committed() >= y);
    let z = net.raw(1).propose(b"Z".to_vec()).unwrap();
    net.stabilize();
    assert!(net.raw(1).raft_log().committed() >= z);
    assert_eq!(applied_data(&net, 2), vec![b"X".to_vec(), b"Y".to_vec()]);
}

/// A leader whose term is not durable yet (a single voter wins its
/// election without asking anyone) sends nothing before its persist: an
/// Append of a term it could lose in a crash would let it lead that term
/// again with another log.
#[test]
fn a_leader_whose_term_is_not_durable_sends_nothing_early() {
    let mut net = Network::new(&[1]);
    net.elect(1);
    net.start_node(2, test_config(2, 0), vec![]);
    net.raw(1)
        .propose_conf_change(ConfChange::AddLearner(2))
        .unwrap();
    net.stabilize();
    assert_eq!(net.node(1).status().learners, vec![2]);
    net.crash(1);
    net.restart(1);
    net.stabilize();
    let before = term(&net, 1);
    net.defer_persists = true;
    net.raw(1).campaign().unwrap();
    net.process_ready(1);
    assert_eq!(role(&net, 1), Role::Leader);
    assert!(term(&net, 1) > before);
    assert!(
        net.in_flight.is_empty(),
        "sent before its term was durable: {:?}",
        net.in_flight
    );
    net.process_ready(1);
    assert!(net
        .in_flight
        .iter()
        .any(|m| m.msg_type == MessageType::Append && m.to == 2));
    net.defer_persists = false;
    net.stabilize();
}

// ----- membership from the log (thesis 4.1) -----

/// Founders {1,2,3}; 4 and 5 added; K committed on {3,4,5} only; the whole
/// cluster loses power. 1 and 2 come back — their commit-only hard state
/// writes were never synced, so their commit may be back at 3 — but their
/// membership comes from their log: five voters, so the two of them cannot
/// elect a leader and overwrite K.
#[test]
fn membership_from_the_log_survives_a_whole_cluster_power_loss() {
    for seed in 0..8 {
        let mut net = Network::new(&[1, 2, 3]);
        net.elect(1);
        add(&mut net, 1, 4);
        add(&mut net, 1, 5);
        assert_eq!(net.node(1).status().voters, vec![1, 2, 3, 4, 5]);
        net.raw(1).transfer_leader(3);
        net.stabilize();
        assert_eq!(net.leader(), Some(3));
        net.isolate(1);
        net.isolate(2);
        let k = net.raw(3).propose(b"K".to_vec()).unwrap();
        net.stabilize();
        assert!(commit(&net, 3) >= k);
        power_loss_all(&mut net, seed);
        net.heal();
        net.restart(1);
        net.restart(2);
        for id in [1, 2] {
            assert_eq!(
                net.node(id).status().voters,
                vec![1, 2, 3, 4, 5],
                "seed {seed}"
            );
        }
        net.tick_and_stabilize(100);
        for id in [1, 2] {
            assert_ne!(
                role(&net, id),
                Role::Leader,
                "seed {seed}: two of five elected {id}"
            );
            assert!(commit(&net, id) < k, "seed {seed}: {id} committed over K");
        }
        for id in [3, 4, 5] {
            net.restart(id);
        }
        let l = tick_until_leader(&mut net, 300);
        net.tick_and_stabilize(5);
        for id in 1..=5 {
            assert!(
                applied_data(&net, id).contains(&b"K".to_vec()),
                "seed {seed}: K lost on {id} (leader {l})"
            );
        }
    }
}

/// A conf change is in force as soon as it is appended (a new voter counts
/// for the quorum before it commits) and is undone when a new leader
/// truncates it.
#[test]
fn a_conf_change_takes_effect_when_appended_and_reverts_when_truncated() {
    let mut net = Network::with_config(&[1, 2, 3], plain_config);
    net.elect(1);
    net.isolate(1);
    net.raw(1)
        .propose_conf_change(ConfChange::AddNode(4))
        .unwrap();
    net.stabilize();
    assert_eq!(
        net.node(1).status().voters,
        vec![1, 2, 3, 4],
        "uncommitted, in force"
    );
    // 2 and 3 elect a leader that never saw the change; it overwrites it.
    net.elect(2);
    net.propose(2, b"x").unwrap();
    net.heal();
    net.tick_and_stabilize(3);
    assert_eq!(net.leader(), Some(2));
    assert_eq!(
        net.node(1).status().voters,
        vec![1, 2, 3],
        "reverted with its entry"
    );
    assert_eq!(applied_data(&net, 1), vec![b"x".to_vec()]);
}

/// Learners receive the log but neither vote nor count: with a learner
/// that cannot catch up, a 3-voter group still commits with one voter down
/// (a voter added at once would need 3 of 4). Promotion makes it count.
#[test]
fn a_learner_replicates_but_does_not_lower_fault_tolerance() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.propose(1, b"a").unwrap();
    net.start_node(4, test_config(4, 0), vec![]);
    net.isolate(4);
    net.raw(1)
        .propose_conf_change(ConfChange::AddLearner(4))
        .unwrap();
    net.stabilize();
    let st = net.node(1).status();
    assert_eq!(
        (st.voters.clone(), st.learners.clone()),
        (vec![1, 2, 3], vec![4])
    );
    net.crash(3);
    let i = net.propose(1, b"b").unwrap();
    assert!(commit(&net, 1) >= i, "two of three voters commit");
    // A learner never campaigns, and its vote does not count.
    for _ in 0..50 {
        net.tick(4);
        net.stabilize();
    }
    assert_eq!(role(&net, 4), Role::Follower);
    net.heal();
    net.restart(3);
    net.tick_and_stabilize(3);
    assert_eq!(applied_data(&net, 4), vec![b"a".to_vec(), b"b".to_vec()]);
    net.raw(1)
        .propose_conf_change(ConfChange::AddNode(4))
        .unwrap();
    net.stabilize();
    net.tick_and_stabilize(2);
    let st = net.node(4).status();
    assert_eq!((st.voters, st.learners), (vec![1, 2, 3, 4], vec![]));
    assert!(matches!(
        net.raw(1).propose_conf_change(ConfChange::AddLearner(2)),
        Err(Error::InvalidArgument(_))
    ));
}

/// A leader that removes itself keeps leading until the removal commits,
/// without counting itself, then steps down; the rest elect a leader.
#[test]
fn a_leader_removing_itself_steps_down_once_that_commits() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    let i = net
        .raw(1)
        .propose_conf_change(ConfChange::RemoveNode(1))
        .unwrap();
    assert_eq!(role(&net, 1), Role::Leader);
    assert!(
        net.raw(1).propose(b"x".to_vec()).is_err(),
        "no proposals meanwhile"
    );
    net.stabilize();
    assert!(commit(&net, 2) >= i);
    assert_ne!(role(&net, 1), Role::Leader);
    let l = tick_until_leader(&mut net, 200);
    assert_ne!(l, 1);
    assert_eq!(net.node(l).status().voters, vec![2, 3]);
}

// ----- snapshots and the application's applied index -----

/// While a follower's Ready with committed entries up to b is being
/// persisted, a snapshot S > b from the leader arrives. The application then
/// applies up to b: a snapshot of that state must not be labelled S (entries
/// b+1..S would never be applied there). The core refuses it; once the
/// leader's snapshot is restored, the states agree.
#[test]
fn a_local_snapshot_is_never_labelled_with_a_later_index() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.propose(1, b"a").unwrap();
    net.isolate(3);
    net.propose(1, b"x").unwrap();
    let b = net.propose(1, b"y").unwrap();
    let t = term(&net, 1);
    // An Append that commits up to b reaches 3.
    let mut app = Message::new(MessageType::Append, 1, 3, t);
    app.index = b - 2;
    app.log_term = net.raw(1).raft_log().term(b - 2).unwrap();
    app.entries = net.raw(1).raft_log().slice(b - 1, b, u64::MAX);
    app.commit = b;
    assert!(net.node(3).c.step(app, 1).unwrap());
    // 3 takes that Ready and persists it (its fsync is slow: not advanced yet).
    let rd = net.node(3).c.ready().unwrap();
    let p = net.node(3).c.persist(rd).unwrap();
    assert_eq!(p.committed_entries.last().map(|e| e.index), Some(b));
    // Meanwhile the leader compacts past b and its snapshot reaches 3.
    let n3 = net.nodes.remove(&3).unwrap();
    for i in 0..5u8 {
        net.propose(1, &[i]).unwrap();
    }
    let snap = net.compact(1).unwrap();
    net.nodes.insert(3, n3);
    assert!(snap.metadata.index > b);
    let mut m = Message::new(MessageType::Snapshot, 1, 3, t);
    m.chunk = Some(SnapshotChunk {
        metadata: snap.metadata.clone(),
        total_len: snap.data.len() as u64,
        offset: 0,
        data: snap.data.clone(),
    });
    assert!(net.node(3).c.step(m, 1).unwrap());
    // The application applies up to b, the core is advanced.
    for e in &p.committed_entries {
        net.node_mut(3).sm.apply(e);
    }
    net.node(3).c.advance(p.marks()).unwrap();
    let err = net.compact(3).unwrap_err();
    assert!(
        matches!(err, WalError::Raft(Error::SnapshotRefused(_))),
        "{err}"
    );
    // A wrong applied index is refused too.
    let data = net.node(3).sm.encode(0);
    let err = net.node(3).c.create_snapshot(b + 1, data).unwrap_err();
    assert!(
        matches!(err, WalError::Raft(Error::SnapshotRefused(_))),
        "{err}"
    );
    net.heal();
    net.process_ready(3);
    assert_eq!(net.node(3).sm.applied, snap.metadata.index);
    net.tick_and_stabilize(3);
    assert_eq!(net.node(3).sm, net.node(1).sm);
}

/// A follower needing a 64 MiB snapshot — four times the transport's frame
/// cap — catches up: the snapshot travels in chunks under the cap.
#[test]
fn a_follower_needing_a_64_mib_snapshot_catches_up() {
    let mut net = Network::new(&[1, 2, 3]);
    net.snapshot_padding = 64 << 20;
    net.elect(1);
    net.isolate(3);
    for i in 0..20u8 {
        net.propose(1, &[i]).unwrap();
    }
    let snap = net.compact(1).unwrap();
    assert!(snap.data.len() > 4 * bedrock_raft_harness::FRAME_CAP);
    net.propose(1, b"after").unwrap();
    net.heal();
    net.tick_and_stabilize(5);
    assert_eq!(net.oversize_dropped, 0, "every message fits in a frame");
    assert_eq!(net.node(3).sm, net.node(1).sm);
    assert_eq!(applied_data(&net, 3).len(), 21);
}

/// A snapshot transfer broken off halfway (the link cut, chunks lost)
/// resumes from the last acknowledged offset instead of starting over.
#[test]
fn an_interrupted_snapshot_transfer_resumes_where_it_stopped() {
    let mut net = Network::with_config(&[1, 2, 3], |id| {
        let mut c = test_config(id, 0);
        c.max_snapshot_chunk = 64 << 10;
        c
    });
    net.snapshot_padding = 2 << 20;
    net.elect(1);
    net.isolate(3);
    for i in 0..10u8 {
        net.propose(1, &[i]).unwrap();
    }
    let snap = net.compact(1).unwrap();
    let total = snap.data.len() as u64;
    net.heal();
    // Let a third of the chunks through, then cut the link.
    let sent = std::cell::Cell::new(0u64);
    let mut chunk_bytes = 0u64;
    net.tick(1);
    for _ in 0..10_000 {
        net.process_all();
        if net.in_flight.is_empty() {
            break;
        }
        let msgs: Vec<Message> = net.in_flight.drain(..).collect();
        for m in msgs {
            if let Some(c) = &m.chunk {
                chunk_bytes += c.data.len() as u64;
                sent.set(sent.get() + c.data.len() as u64);
            }
            if sent.get() < total / 3 || m.to != 3 {
                net.deliver(m);
            }
        }
    }
    let received = net.node(3).status().incoming_snapshot_bytes;
    assert!(received > 0 && received < total, "{received} of {total}");
    // The link comes back: the leader's timeout resends from the acknowledged offset.
    net.tick_and_stabilize(30);
    assert_eq!(net.node(3).sm, net.node(1).sm);
    let resent = chunk_bytes - received;
    assert!(
        resent < total,
        "resumed: {resent} bytes sent after the break, not the whole {total} again"
    );
}

// ----- elections -----

/// The fast path after a lost leader goes through the same guard as every
/// election: a follower that knows a membership change is committed but has
/// not applied it yet does not pre-vote when the leader's connection breaks.
#[test]
fn the_fast_election_honours_the_pending_membership_change_guard() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.isolate(2);
    let i = net
        .raw(1)
        .propose_conf_change(ConfChange::AddNode(4))
        .unwrap();
    net.stabilize();
    let t = term(&net, 1);
    let mut app = Message::new(MessageType::Append, 1, 2, t);
    app.index = i - 1;
    app.log_term = net.raw(1).raft_log().term(i - 1).unwrap();
    app.entries = net.raw(1).raft_log().slice(i, i, u64::MAX);
    app.commit = i;
    assert!(net.node(2).c.step(app, 1).unwrap());
    // Its Ready (the conf change, committed) is being persisted: not applied.
    let rd = net.node(2).c.ready().unwrap();
    let p = net.node(2).c.persist(rd).unwrap();
    assert!(p
        .committed_entries
        .iter()
        .any(|e| e.entry_type == bedrock_raft::EntryType::ConfChange));
    let votes = |net: &Network| {
        net.raw(2)
            .raft()
            .msgs
            .iter()
            .filter(|m| m.msg_type == MessageType::RequestPreVote)
            .count()
    };
    net.raw(2).campaign().unwrap();
    assert_eq!(votes(&net), 0, "campaign() honours the guard");
    net.raw(2).peer_unreachable(1);
    assert_eq!(votes(&net), 0, "the fast path honours the same guard");
    // Once applied, the next fast attempt goes out.
    for e in &p.committed_entries {
        net.node_mut(2).sm.apply(e);
    }
    net.node(2).c.advance(p.marks()).unwrap();
    for _ in 0..bedrock_raft::raft::FAST_STAGGER_TICKS * 3 {
        net.tick(2);
    }
    assert!(votes(&net) > 0);
}

/// When a vote round trip takes longer than a tick (here three ticks each
/// way: two fsyncs and the network), the fast path after a lost leader still
/// costs one term, and the new leader is there sooner than an election
/// timeout plus the round trips.
#[test]
fn a_fast_election_under_latency_burns_no_terms() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    let t0 = term(&net, 2);
    net.crash(1);
    net.raw(2).peer_unreachable(1);
    net.raw(3).peer_unreachable(1);
    let latency = 3;
    let mut queue: Vec<(usize, Message)> = Vec::new();
    let mut ticks = 0usize;
    while net.leader().is_none() && ticks < 200 {
        net.process_all();
        for m in net.in_flight.drain(..) {
            queue.push((ticks + latency, m));
        }
        let (due, later): (Vec<_>, Vec<_>) = queue.into_iter().partition(|(t, _)| *t <= ticks);
        queue = later;
        for (_, m) in due {
            net.deliver(m);
        }
        net.tick_all();
        ticks += 1;
    }
    let l = net.leader().expect("a leader");
    assert_eq!(term(&net, l), t0 + 1, "exactly one new term");
    assert!(ticks <= 10 + 4 * latency, "took {ticks} ticks");
}

/// A fast pre-vote that cannot win (nobody answers) is retried no faster
/// than every few ticks, and never bumps the term.
#[test]
fn a_failing_fast_pre_vote_retries_slowly_and_keeps_the_term() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    let t0 = term(&net, 2);
    net.crash(1);
    net.crash(3);
    net.raw(2).peer_unreachable(1);
    let mut attempts = 0;
    for _ in 0..9 {
        net.process_all();
        attempts += net
            .in_flight
            .drain(..)
            .filter(|m| m.msg_type == MessageType::RequestPreVote)
            .count();
        net.tick(2);
    }
    assert_eq!(term(&net, 2), t0);
    assert!(attempts <= 2 * 2, "{attempts} pre-vote requests in 9 ticks");
}

// ----- hostile input -----

/// A message with the largest term makes the node adopt it, but no
/// campaign can push the term past it (it would wrap to 0 in a release
/// build); the node stays a follower at that term.
#[test]
fn the_largest_term_never_wraps() {
    let mut net = Network::with_config(&[1, 2], |id| {
        let mut c = plain_config(id);
        c.seed = 1;
        c
    });
    let m = Message::new(MessageType::Heartbeat, 2, 1, u64::MAX);
    assert!(net.node(1).c.step(m, 2).unwrap());
    for _ in 0..100 {
        net.tick(1);
        net.process_ready(1);
        net.drop_in_flight();
    }
    assert_eq!(term(&net, 1), u64::MAX);
    assert_ne!(role(&net, 1), Role::Candidate);
    // Absurd indexes from the wire are ignored, not added to.
    let mut app = Message::new(MessageType::Append, 2, 1, u64::MAX);
    app.index = u64::MAX;
    app.log_term = 1;
    app.entries = vec![bedrock_raft::Entry::new(1, 0, vec![])];
    assert!(net.node(1).c.step(app, 2).unwrap());
    net.process_ready(1);
}

/// A message whose sender is not the peer the transport authenticated is
/// dropped and counted; nothing changes.
#[test]
fn a_message_from_a_forged_sender_is_dropped_and_counted() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    let before = net.node(2).status();
    let mut m = Message::new(MessageType::Heartbeat, 3, 2, before.hard_state.term + 5);
    m.commit = 99;
    assert!(
        !net.node(2).c.step(m.clone(), 1).unwrap(),
        "claims 3 on 1's connection"
    );
    assert_eq!(net.node(2).c.forged_dropped(), 1);
    assert_eq!(net.node(2).status(), before);
    m.to = 7;
    assert!(!net.node(2).c.step(m, 3).unwrap());
    assert_eq!(net.node(2).c.misaddressed_dropped(), 1);
    assert_eq!(leader_of(&net, 2), 1);
    assert_ne!(leader_of(&net, 2), INVALID_ID);
    let _ = StateMachine::default();
}

/// Found by the soak: a follower answering a *stale* Append of a leader's
/// earlier term told that node — leader again in a later term — its whole
/// last index, which the leader took as a match. Its heartbeats then let the
/// follower commit entries that are not the leader's. The answer to a stale
/// leader only carries the term now.
#[test]
fn an_answer_to_a_stale_append_is_never_taken_for_a_match() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    // 1 is cut off while leading term 1, and appends entries nobody else gets.
    net.isolate(1);
    for i in 0..5u8 {
        net.raw(1).propose(vec![b'x', i]).unwrap();
    }
    net.stabilize();
    // 2 leads term 2; one of its heartbeats to 1 stays in flight a long time.
    for _ in 0..200 {
        if [2, 3].iter().any(|id| role(&net, *id) == Role::Leader) {
            break;
        }
        net.tick_all();
        net.stabilize();
    }
    if role(&net, 3) == Role::Leader {
        net.raw(3).transfer_leader(2);
        net.stabilize();
    }
    assert_eq!(role(&net, 2), Role::Leader);
    net.tick(2);
    net.process_ready(2);
    let stale: Vec<Message> = net
        .in_flight
        .iter()
        .filter(|m| m.to == 1 && m.msg_type == MessageType::Heartbeat)
        .cloned()
        .collect();
    assert!(!stale.is_empty());
    // 2 hands leadership over and gets it back: it leads a later term.
    net.raw(2).transfer_leader(3);
    net.stabilize();
    net.raw(3).transfer_leader(2);
    net.stabilize();
    assert_eq!(role(&net, 2), Role::Leader);
    for i in 0..8u8 {
        net.propose(2, &[b'y', i]).unwrap();
    }
    let t = term(&net, 2);
    assert!(t >= 4);
    // 1 comes back: it learns the current term from a heartbeat (commit 0),
    // then the stale heartbeat of term 2 reaches it; only its answers and
    // heartbeats flow.
    net.heal();
    net.drop_in_flight();
    let mut current = Message::new(MessageType::Heartbeat, 2, 1, t);
    current.commit = 0;
    assert!(net.node(1).c.step(current, 2).unwrap());
    for m in stale {
        assert!(net.node(1).c.step(m, 2).unwrap());
    }
    net.process_ready(1);
    net.deliver_matching(|m| m.to == 2);
    net.drop_matching(|m| m.msg_type == MessageType::Append);
    net.tick(2);
    net.process_ready(2);
    net.deliver_matching(|m| m.to == 1 && m.msg_type == MessageType::Heartbeat);
    let leader_data = applied_data(&net, 2);
    for d in applied_data(&net, 1) {
        assert!(
            leader_data.contains(&d),
            "1 applied {d:?}, which 2 never committed"
        );
    }
    net.tick_and_stabilize(5);
    assert_eq!(net.node(1).sm, net.node(2).sm);
}
