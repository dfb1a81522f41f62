//! A silent leader (stopped, or partitioned without a reset) is detected by
//! the followers' failure detector over heartbeat arrivals, in ticks: fast on
//! a quiet network, patient when heartbeats arrive late and irregularly, and
//! never by a lone follower while another voter still hears the leader.
//! Timers as a node's defaults: heartbeat every 5 ticks, election timeout 20.

mod common;

use bedrock_raft::failure_detector::MIN_SAMPLES;
use bedrock_raft::{Config, MessageType, NodeId, Role};
use bedrock_raft_harness::{test_config, Network, Rng};
use common::*;

const HEARTBEAT: usize = 5;
const ELECTION: usize = 20;

fn node_config(id: NodeId) -> Config {
    let mut c = test_config(id, 7);
    c.heartbeat_tick = HEARTBEAT;
    c.election_tick = ELECTION;
    c
}

/// Three nodes, 1 leading, followers that have timed enough heartbeats for
/// their windows to adapt.
fn settled() -> Network {
    let mut net = Network::with_config(&[1, 2, 3], node_config);
    net.elect(1);
    net.tick_and_stabilize(HEARTBEAT * (MIN_SAMPLES + 2));
    assert_eq!(net.leader(), Some(1));
    net
}

fn terms(net: &Network) -> Vec<u64> {
    net.nodes.keys().map(|id| term(net, *id)).collect()
}

/// The leader's heartbeats arrive on time: the window is about two
/// heartbeat intervals, well under the election timeout.
#[test]
fn a_quiet_network_detects_within_two_heartbeat_intervals() {
    let net = settled();
    for id in [2, 3] {
        let window = net.node(id).status().leader_window;
        assert!(
            (2 * HEARTBEAT..=2 * HEARTBEAT + 1).contains(&window),
            "window {window}"
        );
    }
}

/// The leader goes silent (no reset: nothing tells the transport). A
/// survivor leads a higher term within the detector's window, counted from
/// the leader's last message, far sooner than the election timeout.
#[test]
fn a_silent_leader_is_replaced_within_the_detectors_window() {
    for phase in 0..HEARTBEAT {
        let mut net = settled();
        net.tick_and_stabilize(phase);
        let before = term(&net, 2);
        let window = net.node(2).status().leader_window;
        net.isolate(1);
        let mut elected_after = None;
        for t in 1..=ELECTION * 2 {
            net.tick(2);
            net.tick(3);
            net.stabilize();
            let survivor = [2, 3]
                .into_iter()
                .find(|id| role(&net, *id) == Role::Leader);
            if let Some(l) = survivor {
                assert!(term(&net, l) > before);
                elected_after = Some(t);
                break;
            }
        }
        let t = elected_after.expect("no survivor was elected");
        assert!(
            t <= window,
            "phase {phase}: elected {t} ticks after the leader fell silent (window {window})"
        );
    }
}

/// Messages from the leader to 2 are lost for three election timeouts (2
/// is starved: its window expires and it pre-votes again and again) while 3
/// still hears the leader. 3 refuses, so no term changes anywhere and 1
/// keeps leading; once heard again, 2 follows 1 as before.
#[test]
fn a_starved_follower_changes_no_term_while_its_peer_hears_the_leader() {
    let mut net = settled();
    let before = terms(&net);
    let pre_votes_from_2 = std::cell::Cell::new(0);
    for _ in 0..ELECTION * 3 {
        net.tick_all();
        net.stabilize_filter_out(|m| {
            if m.from == 2 && m.msg_type == MessageType::RequestPreVote {
                pre_votes_from_2.set(pre_votes_from_2.get() + 1);
            }
            m.from == 1 && m.to == 2
        });
        assert_eq!(terms(&net), before);
        assert_eq!(role(&net, 1), Role::Leader);
    }
    assert!(
        pre_votes_from_2.get() > 0,
        "2 never suspected the leader: the test starved nothing"
    );
    net.tick_and_stabilize(HEARTBEAT * 2);
    assert_eq!(terms(&net), before);
    assert_eq!(leader_of(&net, 2), 1);
}

/// The leader's ticks are irregular (a starved process: its heartbeats leave
/// late, some gaps more than twice the interval). The followers widen their
/// windows to match, and a silence longer than two heartbeat intervals but
/// within the widened window starts no pre-vote at all.
#[test]
fn late_irregular_heartbeats_widen_the_window() {
    let mut net = settled();
    let seed = 0x51E7;
    let mut rng = Rng::new(seed);
    let mut stalled = 0;
    for i in 0..HEARTBEAT * 60 {
        // Now and then the leader gets no tick for a few ticks of its
        // followers (2 at first, up to 8 later: a host getting busier), then
        // a burst of two (as the tick driver delivers).
        let leader_ticks = if stalled > 0 {
            stalled -= 1;
            if stalled == 0 {
                2
            } else {
                0
            }
        } else if rng.chance(10) {
            stalled = 2 + rng.below(1 + (i as u64 / 40).min(6));
            0
        } else {
            1
        };
        for _ in 0..leader_ticks {
            net.tick(1);
        }
        net.tick(2);
        net.tick(3);
        net.stabilize();
    }
    assert_eq!(net.leader(), Some(1), "seed {seed}");
    let window = net.node(2).status().leader_window;
    assert!(
        window > 2 * HEARTBEAT + 2,
        "seed {seed}: window {window} did not widen"
    );
    // The leader stalls just short of that window after its last heartbeat.
    net.tick_and_stabilize(HEARTBEAT);
    let before = terms(&net);
    let window = [2, 3]
        .map(|id| net.node(id).status().leader_window)
        .into_iter()
        .min()
        .unwrap();
    for _ in 0..window - HEARTBEAT - 1 {
        net.tick(2);
        net.tick(3);
        net.process_all();
        assert_eq!(
            net.in_flight
                .iter()
                .filter(|m| m.msg_type == MessageType::RequestPreVote)
                .count(),
            0,
            "seed {seed}: a follower suspected a leader silent for less than its window"
        );
        net.stabilize();
    }
    net.tick_and_stabilize(HEARTBEAT);
    assert_eq!(terms(&net), before);
    assert_eq!(net.leader(), Some(1));
}

/// The followers' answers to the leader are lost for longer than an
/// election timeout (the leader's host is starved: what they send waits)
/// while the followers still hear the leader. Check-quorum gives up no
/// sooner than the followers' longest window, so the leader keeps leading
/// and no term changes.
#[test]
fn a_leader_hearing_its_followers_late_keeps_leading() {
    let mut net = settled();
    let before = terms(&net);
    for _ in 0..ELECTION * 3 / 2 {
        net.tick_all();
        net.stabilize_filter_out(|m| m.to == 1);
        assert_eq!(role(&net, 1), Role::Leader);
    }
    net.tick_and_stabilize(HEARTBEAT * 2);
    assert_eq!(terms(&net), before);
    assert_eq!(net.leader(), Some(1));
}
