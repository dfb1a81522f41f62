//! Scenarios from the Raft paper (Ongaro & Ousterhout, 2014), section by
//! section, plus the extensions of the thesis (pre-vote, check-quorum,
//! leadership transfer, ReadIndex, membership changes, snapshots).

mod common;

use bedrock_raft::{ConfChange, Error, Message, MessageType, NodeId, Role, INVALID_ID};
use bedrock_raft_harness::{test_config, Network};
use common::*;

// ----- 5.2 Leader election -----

/// Reference: section 5.2. A candidate that gets a majority becomes leader
/// and its no-op commits everywhere.
#[test]
fn leader_elected_in_one_round_and_noop_commits() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    assert_eq!(net.leader(), Some(1));
    for id in 1..=3 {
        assert_eq!(term(&net, id), 1);
        // Three bootstrap entries (the initial membership), then the no-op.
        assert_eq!(commit(&net, id), 4, "no-op committed on {id}");
        assert_eq!(leader_of(&net, id), 1);
    }
}

/// Reference: section 5.2. A single-node group elects itself at once.
#[test]
fn single_node_elects_itself_and_commits_alone() {
    let mut net = Network::new(&[1]);
    net.elect(1);
    assert_eq!(role(&net, 1), Role::Leader);
    let i = net.propose(1, b"x").unwrap();
    assert_eq!(commit(&net, 1), i);
    assert_eq!(applied_data(&net, 1), vec![b"x".to_vec()]);
}

/// Reference: section 5.2. Simultaneous candidates split the vote; the
/// randomized timeouts resolve it, and there is never more than one leader
/// per term (election safety).
#[test]
fn split_votes_resolve_with_one_leader_per_term() {
    let mut net = Network::new(&[1, 2, 3]);
    for id in 1..=3 {
        net.raw(id).campaign().unwrap();
    }
    net.stabilize();
    let leader = match net.leader() {
        Some(l) => l,
        None => tick_until_leader(&mut net, 100),
    };
    let t = term(&net, leader);
    for id in 1..=3 {
        if id != leader {
            assert!(role(&net, id) != Role::Leader || term(&net, id) != t);
        }
    }
    net.tick_and_stabilize(5);
    let leaders: Vec<NodeId> = (1..=3).filter(|i| role(&net, *i) == Role::Leader).collect();
    assert_eq!(leaders.len(), 1);
}

/// Reference: section 5.2. A node votes at most once per term.
#[test]
fn vote_granted_at_most_once_per_term() {
    let net = Network::with_config(&[1, 2, 3], plain_config);
    for (cand, expect_grant) in [(2, true), (3, false), (2, true)] {
        let mut m = Message::new(MessageType::RequestVote, cand, 1, 5);
        m.index = 3; // as long as the bootstrap log
        m.log_term = 0;
        net.raw(1).step(m).unwrap();
        let (msgs, hs, must_sync) = take_ready(&net, 1);
        let resp = msgs
            .iter()
            .find(|m| m.msg_type == MessageType::RequestVoteResponse)
            .unwrap();
        assert_eq!(!resp.reject, expect_grant, "vote for {cand}");
        // The vote is in the same Ready as the reply that depends on it.
        if let Some(hs) = hs {
            assert_eq!(hs.vote, 2);
            assert!(must_sync);
        }
    }
}

/// Reference: section 5.4.1. A candidate with a stale log loses.
#[test]
fn stale_log_cannot_win() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.isolate(3);
    net.propose(1, b"a").unwrap();
    net.crash(1);
    net.heal();
    for _ in 0..30 {
        net.tick(3);
        net.stabilize();
    }
    assert_ne!(role(&net, 3), Role::Leader);
    let l = tick_until_leader(&mut net, 100);
    assert_eq!(l, 2, "only node 2 has the committed entry");
}

// ----- 5.3 Log replication -----

/// Reference: section 5.3. Log matching: after a leader change, a
/// follower's conflicting uncommitted tail is replaced by the leader's.
#[test]
fn log_matching_overwrites_conflicting_tail() {
    let mut net = Network::with_config(&[1, 2, 3], plain_config);
    net.elect(1);
    net.propose(1, b"a").unwrap();
    net.isolate(1);
    for d in [b"x1", b"x2", b"x3"] {
        net.raw(1).propose(d.to_vec()).unwrap();
    }
    net.stabilize();
    net.elect(2);
    net.propose(2, b"b").unwrap();
    net.heal();
    net.tick_and_stabilize(3);
    assert_eq!(net.leader(), Some(2));
    let l2 = log(&net, 2);
    for id in [1, 3] {
        assert_eq!(log(&net, id), l2, "log of {id}");
        assert_eq!(applied_data(&net, id), vec![b"a".to_vec(), b"b".to_vec()]);
    }
}

/// Reference: section 5.3. Fast backtracking: a follower far behind with a
/// long conflicting tail converges in a few round trips, not one per entry.
#[test]
fn fast_backtracking_skips_whole_terms() {
    let mut net = Network::with_config(&[1, 2, 3], plain_config);
    net.elect(1);
    net.isolate(1);
    for i in 0..50u8 {
        net.raw(1).propose(vec![i]).unwrap();
    }
    net.stabilize();
    net.elect(2);
    for i in 0..50u8 {
        net.raw(2).propose(vec![100 + i]).unwrap();
    }
    net.stabilize();
    net.heal();
    net.tick(2);
    let mut rejections = 0;
    for _ in 0..100 {
        net.process_all();
        rejections += net
            .in_flight
            .iter()
            .filter(|m| m.msg_type == MessageType::AppendResponse && m.reject)
            .count();
        if net.in_flight.is_empty() {
            break;
        }
        let msgs: Vec<Message> = net.in_flight.drain(..).collect();
        for m in msgs {
            net.deliver(m);
        }
    }
    assert!(rejections <= 3, "{rejections} rejections");
    assert_eq!(log(&net, 1), log(&net, 2));
}

/// Reference: section 5.3. Batching and pipelining: with a small message
/// budget and window, a long backlog still replicates completely.
#[test]
fn batching_and_flow_control_replicate_everything() {
    let mut net = Network::with_config(&[1, 2, 3], |id| {
        let mut c = test_config(id, 0);
        c.max_size_per_msg = 100;
        c.max_inflight_msgs = 2;
        c
    });
    net.elect(1);
    net.isolate(3);
    for i in 0..200u32 {
        net.raw(1).propose(i.to_le_bytes().to_vec()).unwrap();
    }
    net.stabilize();
    net.heal();
    net.tick_and_stabilize(5);
    let st = net.node(1).status();
    assert_eq!(commit(&net, 3), st.hard_state.commit);
    assert_eq!(applied_data(&net, 3).len(), 200);
    let appends_sizes_ok = net.in_flight.iter().all(|m| m.entries.len() <= 5);
    assert!(appends_sizes_ok);
}

// ----- 5.4 Safety -----

/// Reference: section 5.4.2 and Figure 8. A leader never commits an entry
/// of an earlier term by counting replicas; it commits it only indirectly,
/// once an entry of its own term is on a majority.
#[test]
fn figure8_old_term_entries_not_committed_by_counting() {
    let mut net = Network::with_config(&[1, 2, 3], |id| {
        let mut c = plain_config(id);
        c.max_size_per_msg = 0; // one entry per Append
        c
    });
    net.elect(1);
    // Term 1: an entry only node 1 has.
    net.isolate(1);
    net.raw(1).propose(b"old".to_vec()).unwrap();
    net.stabilize();
    // Term 2: node 2 leads with 3's vote, but its no-op never leaves it.
    net.raw(2).campaign().unwrap();
    net.process_all();
    net.deliver_matching(is_type(MessageType::RequestVote));
    net.process_all();
    net.deliver_matching(is_type(MessageType::RequestVoteResponse));
    assert_eq!(role(&net, 2), Role::Leader);
    net.drop_in_flight();
    net.crash(2);
    net.heal();
    // Node 1 (still leader of term 1 without check-quorum) restarts as a
    // follower and wins term 3 with 3's vote: its log [.., 4:t1, 5:t1]
    // beats [.., 4:t1].
    net.crash(1);
    net.restart(1);
    // Node 3 only ever receives index 5 (term 1), never the term-3 no-op
    // at index 6.
    // The leader's first probe (prev index 5, which 3 lacks) carries it
    // too: let that one through, node 3 rejects it anyway.
    let seen = std::cell::Cell::new(0);
    let no_op_6 = |m: &Message| {
        let hit = m.to == 3
            && m.msg_type == MessageType::Append
            && m.entries.iter().any(|e| e.index == 6);
        if hit {
            seen.set(seen.get() + 1);
        }
        hit && seen.get() > 1
    };
    for _ in 0..2 {
        net.raw(1).campaign().unwrap();
        net.stabilize_filter_out(no_op_6);
    }
    assert_eq!(role(&net, 1), Role::Leader);
    assert_eq!(term(&net, 1), 3);
    assert_eq!(log(&net, 3).len(), 5);
    assert_eq!(log(&net, 3)[4].1, 1);
    assert_eq!(
        commit(&net, 1),
        4,
        "index 5 (term 1) is on a majority but must not commit"
    );
    // Once the term-3 no-op is on a majority, everything commits.
    net.stabilize();
    net.tick_and_stabilize(2);
    assert_eq!(commit(&net, 1), 6);
    assert_eq!(commit(&net, 3), 6);
    assert_eq!(applied_data(&net, 3), vec![b"old".to_vec()]);
}

/// Reference: section 5.4.1 (leader completeness). Every committed entry is
/// in the log of every later leader.
#[test]
fn leader_completeness_across_failovers() {
    let mut net = Network::new(&[1, 2, 3, 4, 5]);
    net.elect(1);
    let mut committed = Vec::new();
    for round in 0..4u8 {
        let l = net.leader().unwrap();
        let i = net.propose(l, &[round]).unwrap();
        committed.push((i, vec![round]));
        net.crash(l);
        let nl = tick_until_leader(&mut net, 200);
        let lg = log(&net, nl);
        for (i, d) in &committed {
            assert!(
                lg.iter().any(|(j, _, dd)| j == i && dd == d),
                "leader {nl} lacks {i}"
            );
        }
        net.restart(l);
        net.tick_and_stabilize(3);
    }
}

// ----- Check-quorum, pre-vote, stickiness (thesis 6.2, 9.6) -----

/// Reference: thesis section 6.2. A leader cut off from the quorum steps
/// down; the majority elects a new leader. Ours checks its quorum every
/// `2 * election_tick` ticks (no sooner than its followers give up on it,
/// see failure_detector), so it steps down within two such checks.
#[test]
fn isolated_leader_steps_down() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.isolate(1);
    for _ in 0..45 {
        net.tick_all();
        net.stabilize();
    }
    assert_eq!(role(&net, 1), Role::Follower);
    let l = net.leader().unwrap();
    assert_ne!(l, 1);
    assert!(net.raw(1).propose(b"x".to_vec()).is_err());
}

/// Reference: thesis section 9.6. A partitioned node cannot bump the term
/// while it is away (its pre-votes fail), so rejoining disrupts nothing.
#[test]
fn pre_vote_stops_disruptive_rejoiner() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.isolate(3);
    for _ in 0..100 {
        net.tick(3);
        net.stabilize();
    }
    assert_eq!(term(&net, 3), 1, "pre-vote never adopts the term");
    net.heal();
    net.tick_and_stabilize(3);
    assert_eq!(net.leader(), Some(1));
    for id in 1..=3 {
        assert_eq!(term(&net, id), 1);
    }
}

/// Without pre-vote the same rejoiner forces a new election (contrast).
#[test]
fn without_pre_vote_rejoiner_bumps_term() {
    let mut net = Network::with_config(&[1, 2, 3], plain_config);
    net.elect(1);
    net.isolate(3);
    for _ in 0..30 {
        net.tick(3);
        net.stabilize();
    }
    assert!(term(&net, 3) > 1);
    net.heal();
    net.tick_and_stabilize(30);
    assert!(term(&net, 1) > 1);
}

/// Reference: thesis section 4.2.3. A node that hears from a live leader
/// ignores (pre-)vote requests of higher terms; a transfer campaign is the
/// exception.
#[test]
fn leader_stickiness_ignores_higher_term_votes() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    for t in [MessageType::RequestVote, MessageType::RequestPreVote] {
        let mut m = Message::new(t, 3, 2, 5);
        m.index = 10;
        m.log_term = 5;
        net.raw(2).step(m).unwrap();
        let (msgs, _, _) = take_ready(&net, 2);
        assert!(msgs.is_empty(), "{t:?} must be ignored");
        assert_eq!(term(&net, 2), 1);
    }
    let mut m = Message::new(MessageType::RequestVote, 3, 2, 5);
    m.index = 10;
    m.log_term = 5;
    m.context = bedrock_raft::raft::CAMPAIGN_TRANSFER.to_vec();
    net.raw(2).step(m).unwrap();
    assert_eq!(term(&net, 2), 5);
    assert_eq!(net.node(2).status().hard_state.vote, 3);
}

// ----- Fast failure detection -----

/// The transport reports the leader's connection reset: the follower
/// pre-votes at once; a node that still hears the leader refuses, so
/// nothing changes while the leader lives.
#[test]
fn peer_unreachable_pre_vote_refused_while_leader_alive() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.raw(2).peer_unreachable(1);
    assert_eq!(role(&net, 2), Role::PreCandidate);
    net.process_ready(2);
    let pre_votes = net
        .in_flight
        .iter()
        .filter(|m| m.msg_type == MessageType::RequestPreVote)
        .count();
    assert_eq!(pre_votes, 2, "pre-vote sent without waiting for a timeout");
    net.stabilize();
    net.tick_and_stabilize(2);
    assert_eq!(net.leader(), Some(1));
    for id in 1..=3 {
        assert_eq!(term(&net, id), 1);
    }
    assert_eq!(leader_of(&net, 2), 1);
}

/// When the leader really died and the others saw it too, a new leader is
/// elected without any election timeout elapsing.
#[test]
fn peer_unreachable_elects_without_timeout_when_leader_dead() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.crash(1);
    net.raw(3).peer_unreachable(1);
    net.stabilize();
    assert_eq!(net.leader(), None, "2 still protects 1's lease");
    net.raw(2).peer_unreachable(1);
    net.stabilize();
    let l = net.leader().expect("elected with no tick");
    assert!(l == 2 || l == 3);
    assert_eq!(term(&net, l), 2);
}

/// The other order: the first-ranked survivor learns of the loss first and
/// pre-votes while the other still holds the lease (and ignores it). When
/// that one learns of the loss too, it answers the pre-vote it ignored: a
/// leader without a tick, instead of a retry a whole period later.
#[test]
fn a_pre_vote_ignored_under_the_lease_is_answered_once_the_loss_is_seen() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.crash(1);
    net.raw(2).peer_unreachable(1);
    net.stabilize();
    assert_eq!(net.leader(), None, "3 still protects 1's lease");
    net.raw(3).peer_unreachable(1);
    net.stabilize();
    assert_eq!(net.leader(), Some(2), "elected with no tick");
    assert_eq!(term(&net, 2), 2);
}

/// An ignored pre-vote is kept only a few ticks: a loss reported much later
/// does not answer it (that node's own fast election runs then).
#[test]
fn an_ignored_pre_vote_expires_after_a_few_ticks() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.crash(1);
    net.raw(2).peer_unreachable(1);
    net.stabilize();
    // 2 leaves the fast path as a pre-candidate; 3 forgets what it ignored.
    for _ in 0..4 {
        net.tick(3);
    }
    net.raw(3).peer_unreachable(1);
    net.process_ready(3);
    assert!(
        !net.in_flight
            .iter()
            .any(|m| m.msg_type == MessageType::RequestPreVoteResponse),
        "the expired pre-vote got no answer"
    );
}

/// Every survivor sees the dead leader's connection break at the same
/// moment. They must not all campaign at once (a split vote would cost an
/// election timeout): the lowest-ranked survivor campaigns, the others wait.
#[test]
fn peer_unreachable_on_all_survivors_at_once_elects_one_leader_without_ticks() {
    for size in [3u64, 5] {
        let ids: Vec<NodeId> = (1..=size).collect();
        let mut net = Network::new(&ids);
        net.elect(1);
        net.crash(1);
        for id in 2..=size {
            net.raw(id).peer_unreachable(1);
        }
        net.stabilize();
        assert_eq!(
            net.leader(),
            Some(2),
            "{size} nodes: rank 0 (node 2) wins at once"
        );
        for id in 2..=size {
            assert_eq!(
                term(&net, id),
                2,
                "{size} nodes: one election, no split vote"
            );
        }
    }
}

/// If the first-ranked survivor cannot win (here it is cut off too), the
/// next one takes over after a couple of ticks, well inside an election
/// timeout.
#[test]
fn peer_unreachable_falls_back_to_the_next_rank_quickly() {
    let mut net = Network::new(&[1, 2, 3, 4, 5]);
    net.elect(1);
    net.crash(1);
    net.isolate(2);
    for id in 2..=5 {
        net.raw(id).peer_unreachable(1);
    }
    net.stabilize();
    assert_eq!(net.leader(), None);
    let mut ticks = 0;
    while net.leader().is_none() && ticks < 10 {
        for id in 2..=5 {
            net.tick(id);
        }
        net.stabilize();
        ticks += 1;
    }
    assert_eq!(net.leader(), Some(3));
    assert!(ticks <= 4, "took {ticks} ticks; the election timeout is 10");
}

/// On the leader, an unreachable follower goes back to probing.
#[test]
fn peer_unreachable_on_leader_probes_follower() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.propose(1, b"a").unwrap();
    let st = |net: &Network| {
        net.node(1)
            .status()
            .progress
            .into_iter()
            .find(|p| p.id == 2)
            .unwrap()
            .state
    };
    assert_eq!(st(&net), "replicate");
    net.raw(1).peer_unreachable(2);
    assert_eq!(st(&net), "probe");
    net.raw(1).peer_unreachable(99); // unknown: no-op
}

// ----- ReadIndex (thesis 6.4) -----

/// Reference: thesis section 6.4. The leader confirms a read with a
/// heartbeat round; a follower's read is forwarded and answered.
#[test]
fn read_index_on_leader_and_follower() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    let i = net.propose(1, b"a").unwrap();
    net.raw(1).read_index(b"r1".to_vec());
    net.process_ready(1);
    assert!(
        net.node(1).read_states.is_empty(),
        "needs a heartbeat round"
    );
    net.stabilize();
    let rs = &net.node(1).read_states;
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].request_ctx, b"r1");
    assert_eq!(rs[0].index, i);
    net.raw(3).read_index(b"r2".to_vec());
    net.stabilize();
    let rs = &net.node(3).read_states;
    assert_eq!(rs.len(), 1);
    assert_eq!(
        (rs[0].index, rs[0].request_ctx.clone()),
        (i, b"r2".to_vec())
    );
}

/// A leader without quorum contact cannot confirm a read.
#[test]
fn read_index_needs_quorum() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.isolate(1);
    net.raw(1).read_index(b"r".to_vec());
    net.stabilize();
    assert!(net.node(1).read_states.is_empty());
    net.heal();
    net.tick_and_stabilize(1);
    assert!(
        net.node(1).read_states.is_empty(),
        "a lost round is not retried"
    );
}

/// A single voter answers at once; a fresh leader waits for its no-op.
#[test]
fn read_index_single_voter_and_new_leader() {
    let mut net = Network::new(&[1]);
    net.elect(1);
    net.raw(1).read_index(b"x".to_vec());
    net.process_ready(1);
    assert_eq!(net.node(1).read_states[0].index, 2);

    let mut net = Network::new(&[1, 2, 3]);
    net.raw(1).campaign().unwrap();
    net.process_all();
    net.deliver_matching(is_type(MessageType::RequestPreVote));
    net.process_all();
    net.deliver_matching(is_type(MessageType::RequestPreVoteResponse));
    net.process_all();
    net.deliver_matching(is_type(MessageType::RequestVote));
    net.process_all();
    net.deliver_matching(is_type(MessageType::RequestVoteResponse));
    assert_eq!(role(&net, 1), Role::Leader);
    net.raw(1).read_index(b"early".to_vec());
    net.process_ready(1);
    assert!(net.node(1).read_states.is_empty());
    net.stabilize();
    assert_eq!(net.node(1).read_states.len(), 1);
    assert_eq!(net.node(1).read_states[0].index, 4);
}

// ----- Leadership transfer (thesis 3.10) -----

/// Reference: thesis section 3.10. Transfer to an up-to-date follower.
#[test]
fn transfer_to_caught_up_follower() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.raw(1).transfer_leader(2);
    net.stabilize();
    assert_eq!(net.leader(), Some(2));
    assert_eq!(term(&net, 2), 2);
    assert_eq!(role(&net, 1), Role::Follower);
}

/// A lagging transferee is caught up first; proposals are refused meanwhile.
#[test]
fn transfer_to_lagging_follower_and_proposals_dropped() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.isolate(3);
    net.propose(1, b"a").unwrap();
    net.heal();
    net.raw(1).transfer_leader(3);
    assert!(matches!(
        net.raw(1).propose(b"b".to_vec()),
        Err(Error::ProposalDropped(_))
    ));
    assert_eq!(net.node(1).status().lead_transferee, 3);
    net.stabilize();
    assert_eq!(net.leader(), Some(3));
    assert_eq!(applied_data(&net, 3), vec![b"a".to_vec()]);
}

/// A follower's transfer request is forwarded to the leader.
#[test]
fn transfer_requested_by_follower() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.raw(3).transfer_leader(3);
    net.stabilize();
    assert_eq!(net.leader(), Some(3));
}

/// A transfer to an unreachable node is abandoned after an election timeout.
#[test]
fn transfer_aborts_after_election_timeout() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.isolate(3);
    net.raw(1).transfer_leader(3);
    net.stabilize();
    assert!(net.raw(1).propose(b"x".to_vec()).is_err());
    for _ in 0..10 {
        net.tick(1);
        net.stabilize();
    }
    assert_eq!(role(&net, 1), Role::Leader);
    assert_eq!(net.node(1).status().lead_transferee, INVALID_ID);
    assert!(net.propose(1, b"y").is_ok());
}

// ----- Membership changes (thesis 4.1) -----

/// Reference: thesis section 4.1. A fresh node is added, catches up and
/// votes; then a node is removed.
#[test]
fn add_then_remove_node() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.propose(1, b"a").unwrap();
    net.start_node(4, test_config(4, 0), vec![]);
    net.raw(1)
        .propose_conf_change(ConfChange::AddNode(4))
        .unwrap();
    net.stabilize();
    net.tick_and_stabilize(3);
    assert_eq!(net.node(4).status().voters, vec![1, 2, 3, 4]);
    assert_eq!(applied_data(&net, 4), vec![b"a".to_vec()]);
    // Four voters: two failures now block commits.
    net.crash(2);
    net.crash(3);
    let i = net.raw(1).propose(b"b".to_vec()).unwrap();
    net.stabilize();
    assert!(commit(&net, 1) < i);
    net.restart(2);
    net.tick_and_stabilize(2);
    assert!(commit(&net, 1) >= i);
    net.raw(1)
        .propose_conf_change(ConfChange::RemoveNode(3))
        .unwrap();
    net.stabilize();
    net.tick_and_stabilize(2);
    assert_eq!(net.node(1).status().voters, vec![1, 2, 4]);
}

/// One change at a time; invalid changes are refused.
#[test]
fn one_pending_conf_change_and_invalid_changes() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    let mut r = net.raw(1);
    assert!(matches!(
        r.propose_conf_change(ConfChange::AddNode(2)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        r.propose_conf_change(ConfChange::RemoveNode(9)),
        Err(Error::InvalidArgument(_))
    ));
    let i = r.propose_conf_change(ConfChange::AddNode(4)).unwrap();
    assert_eq!(
        r.propose_conf_change(ConfChange::RemoveNode(3)),
        Err(Error::ConfChangePending { index: i })
    );
    drop(r);
    assert!(matches!(
        net.raw(2).propose_conf_change(ConfChange::AddNode(5)),
        Err(Error::NotLeader { leader: 1 })
    ));
    net.stabilize();
    assert!(net
        .raw(1)
        .propose_conf_change(ConfChange::RemoveNode(4))
        .is_ok());
    assert_eq!(count_conf_changes(&net, 1), 3 + 2);

    let mut single = Network::new(&[1]);
    single.elect(1);
    assert!(matches!(
        single.raw(1).propose_conf_change(ConfChange::RemoveNode(1)),
        Err(Error::InvalidArgument(_))
    ));
}

/// A new leader cannot propose a change before its no-op commits.
#[test]
fn new_leader_waits_for_noop_before_conf_change() {
    let mut net = Network::new(&[1, 2, 3]);
    net.isolate(2);
    net.isolate(3);
    net.heal();
    net.raw(1).campaign().unwrap();
    for t in [
        MessageType::RequestPreVote,
        MessageType::RequestPreVoteResponse,
        MessageType::RequestVote,
        MessageType::RequestVoteResponse,
    ] {
        net.process_all();
        net.deliver_matching(is_type(t));
    }
    assert_eq!(role(&net, 1), Role::Leader);
    assert!(matches!(
        net.raw(1).propose_conf_change(ConfChange::AddNode(4)),
        Err(Error::ConfChangePending { .. })
    ));
    net.stabilize();
    assert!(net
        .raw(1)
        .propose_conf_change(ConfChange::AddNode(4))
        .is_ok());
}

/// Removing the leader: it steps down once the change applies and the rest
/// elect a leader among themselves.
#[test]
fn remove_leader() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.raw(1)
        .propose_conf_change(ConfChange::RemoveNode(1))
        .unwrap();
    net.stabilize();
    assert_ne!(role(&net, 1), Role::Leader);
    let l = tick_until_leader(&mut net, 200);
    assert_ne!(l, 1);
    net.tick_and_stabilize(3);
    assert_eq!(net.node(l).status().voters, vec![2, 3]);
    let i = net.propose(l, b"after").unwrap();
    assert!(commit(&net, l) >= i);
    // The removed node never campaigns.
    for _ in 0..50 {
        net.tick(1);
        net.stabilize();
    }
    assert_eq!(net.leader(), Some(l));
}

// ----- Snapshots and compaction (section 7) -----

/// Reference: section 7. A follower behind the leader's compacted log gets
/// the snapshot, then the entries after it.
#[test]
fn lagging_follower_catches_up_by_snapshot() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.isolate(3);
    for i in 0..20u8 {
        net.propose(1, &[i]).unwrap();
    }
    let snap = net.compact(1).unwrap();
    assert_eq!(snap.metadata.conf_state.voters, vec![1, 2, 3]);
    assert!(net.node(1).status().first_index > 2);
    net.propose(1, b"after").unwrap();
    net.heal();
    net.tick_and_stabilize(3);
    assert_eq!(net.node(3).sm, net.node(1).sm);
    assert_eq!(applied_data(&net, 3).len(), 21);
    // The restored node restarts from its persisted snapshot.
    net.crash(3);
    net.restart(3);
    net.tick_and_stabilize(3);
    assert_eq!(net.node(3).sm, net.node(1).sm);
}

/// A restarted node re-applies committed entries after its snapshot.
#[test]
fn restart_redelivers_committed_entries() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.propose(1, b"a").unwrap();
    net.propose(1, b"b").unwrap();
    net.compact(2).unwrap();
    net.propose(1, b"c").unwrap();
    net.tick_and_stabilize(1);
    let before = net.node(2).sm.clone();
    net.crash(2);
    net.restart(2);
    net.process_ready(2);
    assert_eq!(net.node(2).sm, before);
}

// ----- Robustness -----

/// Stale, misaddressed, forged or out-of-place messages never panic.
#[test]
fn odd_messages_never_panic() {
    let types = [
        MessageType::Append,
        MessageType::AppendResponse,
        MessageType::RequestVote,
        MessageType::RequestVoteResponse,
        MessageType::RequestPreVote,
        MessageType::RequestPreVoteResponse,
        MessageType::Snapshot,
        MessageType::Heartbeat,
        MessageType::HeartbeatResponse,
        MessageType::TimeoutNow,
        MessageType::ReadIndex,
        MessageType::ReadIndexResponse,
        MessageType::TransferLeader,
    ];
    let mut rng = bedrock_raft_harness::Rng::new(7);
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.propose(1, b"a").unwrap();
    for round in 0..3000 {
        let to = 1 + rng.below(3);
        let t = types[rng.below(types.len() as u64) as usize];
        let mut m = Message::new(t, rng.below(6), to, rng.below(4));
        let big = |rng: &mut bedrock_raft_harness::Rng| match rng.below(4) {
            0 => u64::MAX,
            1 => rng.below(1 << 40),
            _ => rng.below(8),
        };
        m.index = big(&mut rng);
        m.log_term = big(&mut rng);
        m.commit = big(&mut rng);
        m.reject = rng.chance(50);
        m.reject_hint = big(&mut rng);
        if rng.chance(30) {
            let start = m.index.wrapping_add(1);
            m.entries = (0..rng.below(3))
                .map(|i| bedrock_raft::Entry::new(rng.below(4), start.wrapping_add(i), vec![]))
                .collect();
        }
        if t == MessageType::Snapshot && rng.chance(50) {
            let data = bedrock_raft_harness::StateMachine::default().encode(0);
            let total = data.len() as u64;
            m.chunk = Some(bedrock_raft::SnapshotChunk {
                metadata: bedrock_raft::SnapshotMetadata {
                    index: big(&mut rng),
                    term: rng.below(4),
                    conf_state: bedrock_raft::ConfState::new(vec![rng.below(5)]),
                },
                total_len: if rng.chance(20) { big(&mut rng) } else { total },
                offset: if rng.chance(20) { big(&mut rng) } else { 0 },
                data,
            });
        }
        let from = m.from;
        let _ = net.node(to).c.step(m, from);
        net.process_ready(to);
        net.drop_in_flight();
        if round % 500 == 0 {
            net.tick(to);
        }
    }
}

/// Reference: section 5.1. A request with a stale term is refused with the
/// current term, so the stale candidate catches up (found by the
/// randomized test: a candidate whose membership reaches no node with a
/// higher term could otherwise never learn it).
#[test]
fn stale_vote_request_is_refused_with_current_term() {
    let mut net = Network::with_config(&[1, 2, 3], plain_config);
    net.elect(1);
    net.elect(2);
    assert_eq!(term(&net, 2), 2);
    let mut m = Message::new(MessageType::RequestVote, 3, 2, 1);
    m.index = 100;
    m.log_term = 9;
    net.raw(2).step(m).unwrap();
    let (msgs, _, _) = take_ready(&net, 2);
    let r = &msgs[0];
    assert_eq!(
        (r.msg_type, r.reject, r.term),
        (MessageType::RequestVoteResponse, true, 2)
    );
}
