//! A silent leader (stopped, or partitioned without a reset) is detected by
//! the followers' failure detector over heartbeat arrivals, in ticks: fast on
//! a quiet network, patient when heartbeats arrive late and irregularly, and
//! never by a lone follower while another voter still hears the leader.
//! Timers as a node's defaults: heartbeat every 5 ticks, election timeout 20.

mod common;

use bedrock_raft::failure_detector::MIN_SAMPLES;
use bedrock_raft::raft::FAST_STAGGER_TICKS;
use bedrock_raft::{Config, MessageType, NodeId, Role};
use bedrock_raft_harness::{test_config, Network, Rng};
use common::*;

const HEARTBEAT: usize = 5;
const ELECTION: usize = 20;
/// The window of a follower whose leader's heartbeats arrive on time (one
/// tick of jitter at most).
const QUIET_WINDOW: usize = 2 * HEARTBEAT + 1;

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

fn window_of(net: &Network, id: NodeId) -> usize {
    net.node(id).status().leader_window
}

/// The leader goes silent (stopped: it neither ticks nor sends, and nothing
/// resets a connection). Returns the ticks until a survivor leads a higher
/// term and that survivor.
///
/// # Panics
/// If no survivor is elected within three election timeouts.
fn silence_until_replaced(net: &mut Network, leader: NodeId) -> (usize, NodeId) {
    let before = term(net, leader);
    let survivors: Vec<NodeId> = net
        .nodes
        .keys()
        .copied()
        .filter(|id| *id != leader)
        .collect();
    net.isolate(leader);
    for t in 1..=ELECTION * 3 {
        for id in &survivors {
            net.tick(*id);
        }
        net.stabilize();
        let elected = survivors
            .iter()
            .copied()
            .find(|id| role(net, *id) == Role::Leader && term(net, *id) > before);
        if let Some(l) = elected {
            return (t, l);
        }
    }
    panic!("no survivor was elected in {} ticks", ELECTION * 3);
}

/// The leader's heartbeats arrive on time: the window is about two
/// heartbeat intervals, well under the election timeout.
#[test]
fn a_quiet_network_detects_within_two_heartbeat_intervals() {
    let net = settled();
    for id in [2, 3] {
        let window = window_of(&net, id);
        assert!(
            (2 * HEARTBEAT..=QUIET_WINDOW).contains(&window),
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
        let window = window_of(&net, 2);
        let (t, _) = silence_until_replaced(&mut net, 1);
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
    let window = window_of(&net, 2);
    assert!(
        window > 2 * HEARTBEAT + 2,
        "seed {seed}: window {window} did not widen"
    );
    // The leader stalls just short of that window after its last heartbeat.
    net.tick_and_stabilize(HEARTBEAT);
    let before = terms(&net);
    let window = [2, 3]
        .map(|id| window_of(&net, id))
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

/// 1 led from the start, so as a follower it never timed a heartbeat. It is
/// cut off and replaced, comes back as a follower of the new leader, and a
/// few heartbeats later (fewer than [`MIN_SAMPLES`]) that leader goes
/// silent. With one voter of three silent, 1's vote is needed: the failover
/// waits for 1's window, which must be the one learned while it led (from
/// its followers' answers to its heartbeats), not the election timeout.
#[test]
fn a_former_leader_back_as_follower_detects_with_the_window_it_learned_leading() {
    for phase in 0..HEARTBEAT {
        let mut net = settled();
        let (_, new_leader) = silence_until_replaced(&mut net, 1);
        net.heal();
        let mut rejoin = 0;
        while leader_of(&net, 1) != new_leader {
            assert!(rejoin < ELECTION, "1 never followed {new_leader}");
            net.tick_and_stabilize(1);
            rejoin += 1;
        }
        net.tick_and_stabilize(HEARTBEAT * 2 + phase);
        let window = window_of(&net, 1);
        let (t, _) = silence_until_replaced(&mut net, new_leader);
        assert!(
            t <= QUIET_WINDOW,
            "phase {phase}: elected {t} ticks after the leader fell silent \
             (1's window {window}, a quiet host's {QUIET_WINDOW})"
        );
    }
}

/// The leader's latest entry reached 3 but not yet `behind` when the
/// leader fell silent.
fn latest_entry_misses(net: &mut Network, behind: NodeId) {
    let leader = net.leader().expect("a leader");
    net.raw(leader).propose(b"late".to_vec()).unwrap();
    net.stabilize_filter_out(|m| m.from == leader && m.to == behind && !m.entries.is_empty());
    assert!(
        net.node(behind).status().last_index < net.node(3).status().last_index,
        "{behind} got the entry"
    );
}

/// The leader's latest entry reached 3, not yet 2, when the leader fell
/// silent. 2 ranks first among the survivors, so it pre-votes first and 3
/// refuses it (2's log is behind); 2 must not refuse 3 in turn for ranking
/// after it, since only 3 can win. 3 leads once its window expires and its
/// rank's turn comes.
#[test]
fn a_survivor_ranked_first_but_behind_yields_to_the_one_ahead() {
    let mut net = settled();
    latest_entry_misses(&mut net, 2);
    let window = window_of(&net, 3);
    let (t, l) = silence_until_replaced(&mut net, 1);
    assert_eq!(l, 3);
    assert!(
        t <= window + FAST_STAGGER_TICKS,
        "elected {t} ticks after the leader fell silent (window {window})"
    );
}

/// 2 is restarted (killed: a fresh process, its detector empty) while 1
/// leads and 3's window is learned; 1's latest entry reached 3 but not yet
/// 2 (still catching up) when 1 falls silent, `after` ticks after the
/// restart: 50 (2 timed enough heartbeats), or 20 (a process still booting
/// had heard fewer than [`MIN_SAMPLES`]: its window is the election
/// timeout). 3 must win without waiting for more than 2's window.
#[test]
fn a_restarted_node_catching_up_does_not_hold_up_the_failover() {
    for after in [20, 50] {
        let mut net = settled();
        net.crash(2);
        net.tick_and_stabilize(ELECTION);
        net.restart(2);
        net.tick_and_stabilize(after);
        latest_entry_misses(&mut net, 2);
        let window = window_of(&net, 2).max(window_of(&net, 3));
        let (t, l) = silence_until_replaced(&mut net, 1);
        assert_eq!(l, 3, "{after} ticks after the restart");
        assert!(
            t <= window + FAST_STAGGER_TICKS,
            "{after} ticks after the restart: elected {t} ticks after the leader \
             fell silent (windows up to {window})"
        );
    }
}

/// A leader learns from its followers' answers to its heartbeats: answered
/// on time, its window is a quiet host's, though it never followed.
#[test]
fn a_leader_learns_a_window_from_its_followers_answers() {
    let net = settled();
    let window = window_of(&net, 1);
    assert!(
        (2 * HEARTBEAT..=QUIET_WINDOW).contains(&window),
        "window {window}"
    );
}

/// 3 answers nothing for a while, shorter than the longest window (a busy
/// host, a short cut): its heartbeats would be late too when it leads, so
/// the leader's window widens, as a follower's does after a late heartbeat.
#[test]
fn a_follower_answering_late_widens_the_leaders_window() {
    let mut net = settled();
    net.isolate(3);
    net.tick_and_stabilize(ELECTION);
    net.heal();
    net.tick_and_stabilize(HEARTBEAT * 2);
    assert_eq!(net.leader(), Some(1));
    let window = window_of(&net, 1);
    assert!(window >= 2 * ELECTION - 1, "window {window}");
}

/// 3 is stopped for longer than any window (or restarts: its connection
/// broke) and comes back: that silence is an outage of 3, not a heartbeat
/// gap, and the leader's window stays a quiet host's.
#[test]
fn a_follower_stopped_or_restarted_is_no_heartbeat_gap_for_the_leader() {
    let mut net = settled();
    net.isolate(3);
    for _ in 0..ELECTION * 3 {
        net.tick(1);
        net.tick(2);
        net.stabilize();
    }
    net.heal();
    net.tick_and_stabilize(HEARTBEAT * 2);
    let window = window_of(&net, 1);
    assert!(window <= QUIET_WINDOW, "stopped: window {window}");

    net.crash(3);
    net.raw(1).peer_unreachable(3);
    net.tick_and_stabilize(ELECTION);
    net.restart(3);
    net.tick_and_stabilize(HEARTBEAT * 2);
    assert_eq!(net.leader(), Some(1));
    let window = window_of(&net, 1);
    assert!(window <= QUIET_WINDOW, "restarted: window {window}");
}

#[test]
fn an_idle_cluster_is_due_only_at_heartbeats_and_at_the_followers_windows() {
    // What lets a driver sleep between events instead of ticking every tick:
    // the leader's next act is its heartbeat (not giving up on anyone), a
    // follower's the end of its window (giving up on the leader).
    let mut net = settled();
    net.tick(1);
    net.stabilize();
    let leader = net.raw(1).next_due();
    assert!(!leader.gives_up);
    assert!((1..=HEARTBEAT).contains(&leader.ticks), "{leader:?}");
    let follower = net.raw(2).next_due();
    assert!(follower.gives_up);
    assert!(follower.ticks > HEARTBEAT, "{follower:?}");
    assert!(follower.ticks <= window_of(&net, 2), "{follower:?}");
    // Silent for those ticks (the harness checks each one only counts),
    // the follower's due tick is the next one, and it acts on it.
    net.isolate(1);
    for _ in 1..follower.ticks {
        net.tick(2);
    }
    assert_eq!(net.raw(2).next_due().ticks, 1);
    let term_before = term(&net, 2);
    net.tick(2);
    net.process_ready(2);
    assert!(
        net.raw(2).raft().role != Role::Follower
            || term(&net, 2) > term_before
            || net.raw(2).raft().lead == bedrock_raft::INVALID_ID,
        "the due tick gave up on the leader"
    );
}

/// A follower whose own loop stalled delivers its window's quiet ticks, then
/// the heartbeats queued meanwhile: the gap it would time is its own pause,
/// as long as its window. Learned, twice the longest gap doubled the window
/// with each pause (found in the availability bench: windows at the ceiling
/// after a few pauses). Told it stalled, it learns nothing from that gap.
#[test]
fn a_followers_own_stall_is_not_learned_as_a_heartbeat_gap() {
    for told in [false, true] {
        let mut net = settled();
        let before = window_of(&net, 2);
        assert!(before <= QUIET_WINDOW, "settled: {before}");
        // 2's loop stalls: heartbeats queue up, its quiet ticks come first.
        for _ in 0..before - 1 {
            net.tick(1);
            net.tick(2);
            net.drop_matching(|m| m.to == 2);
        }
        if told {
            net.node(2).c.stalled().unwrap();
        }
        net.tick_and_stabilize(HEARTBEAT * 2);
        let after = window_of(&net, 2);
        if told {
            assert!(
                after <= QUIET_WINDOW,
                "its own stall widened its window: {before} -> {after}"
            );
        } else {
            assert!(
                after >= 2 * (before - 2),
                "learned as a gap: {before} -> {after}"
            );
        }
    }
}
