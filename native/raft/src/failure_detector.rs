//! When a follower stops trusting its leader: an adaptive failure detector
//! over the arrival times (in ticks) of periodic heartbeats.
//!
//! One rule decides both sides of leader stickiness. While the silence
//! since the leader's last message is shorter than [`LeaderDetector::window`]
//! the follower trusts the leader: it ignores vote and pre-vote requests
//! (the leader's lease). Once the silence reaches the window it considers
//! the leader lost: it stops honouring the lease and starts pre-voting (see
//! `Raft::leader_lost`). Because suspicion and lease are the same test, a
//! follower never suspects while a peer with the same view still refuses
//! it for longer, and never refuses while it would itself campaign.
//!
//! The window is learned from the last [`SAMPLES`] gaps between periodic
//! heartbeats: the larger of `mean + K * stddev` and twice the longest gap,
//! clamped to `[2 * heartbeat_tick, 2 * election_tick]` (the ceiling is the
//! longest randomized election timeout). On a quiet host (gaps of one
//! heartbeat interval, a tick of jitter) it is about two heartbeat intervals
//! and two ticks, so one late or lost heartbeat is tolerated; on a saturated
//! host, whose gaps are long and jittery, it widens up to the longest
//! election timeout instead of electing. The mean and deviation follow the
//! bulk of the gaps; the longest-gap term covers the bimodal gaps of a host
//! that stalls now and then (most heartbeats on time, a few very late),
//! which a deviation understates, and leaves room for the next stall to be
//! worse than the last (a host getting busier: measured on a saturated
//! 2-core host, successive stalls of an overloaded leader's event loop of
//! 100, 110, 257 and 370 ms).
//!
//! Both roles learn gaps. A follower times its leader's heartbeats; a
//! leader times each voter's answers to its own periodic heartbeats, and
//! once per heartbeat interval learns the longest gap between two answers of
//! one voter ([`LeaderDetector::learn`]; `Raft::learn_answer_gaps`). Those
//! voters' hosts and links are the ones whose heartbeats the node times when
//! it follows again; one gap per interval, as a follower learns, so the ring
//! covers as much time in either role. Answers to a read's heartbeats (they
//! carry its context) are not timed, as a follower does not time those
//! heartbeats. A gap of a whole ceiling or more between a voter's answers is
//! not learned (every follower would have given up on a leader that
//! silent: it is an outage of that voter, stopped, cut off or restarting),
//! nor is the one across a broken connection (the voter restarted); shorter
//! ones are, so a voter answering late widens the window as a late
//! heartbeat does. Without this, a node that had only led so far (the old
//! leader back after a failover) had the prior below as its lease; with one
//! voter of three silent its vote is needed, so the next silent-leader
//! failover waited 20 ticks instead of 10 (measured on loopback: 187-206 ms
//! instead of ~110 ms).
//!
//! Until [`MIN_SAMPLES`] gaps are known (a node just started) the window is
//! the election timeout, the fixed lease before this detector: the ceiling
//! there made every failover soon after a node rejoined wait 400 ms.
//!
//! Why a wrong suspicion is harmless: suspecting only starts a *pre*-vote,
//! which changes no term and disturbs no one. To win it, a majority must
//! suspect too; a voter that still hears the leader refuses (its lease
//! holds), the leader's next message makes the suspicious node a follower
//! again, and the long gap it just saw widens its window. An election
//! therefore needs a majority of voters to have missed the leader for
//! longer than their own windows: the leader really is silent to a quorum.
//! That holds whichever role the gaps were learned in: a window learned as
//! leader is an estimate like one learned following (of several voters'
//! timing rather than one leader's), and too narrow it only starts a
//! pre-vote, or grants one, sooner. Safety never depends on this timing:
//! votes, terms and ReadIndex reads are Raft's whatever the detector says;
//! only liveness and disruption do.
//!
//! Ticks, not wall time: the core stays deterministic, and a driver whose
//! ticks are late (a starved event loop drops ticks rather than bursting
//! them) sees shorter silences and gaps, never longer ones. Except at its
//! own stall: a driver that wakes late delivers the quiet ticks first (they
//! only count), so the gap then timed is as long as the window; a driver
//! that dropped ticks says so ([`LeaderDetector::restart_series`], through
//! `Raft::stalled`), and that gap is not learned.

use crate::types::{NodeId, INVALID_ID};

/// Gaps remembered: a minute of heartbeats at the default 50 ms (one gap per
/// heartbeat interval, following or leading), so a host that stalls now and
/// then keeps its window wide between stalls (with 10 s, a saturated host
/// elected after a quiet spell had narrowed the window).
pub const SAMPLES: usize = 1200;

/// Gaps needed before the window adapts; until then it is the prior, the
/// election timeout.
pub const MIN_SAMPLES: usize = 8;

/// Standard deviations of margin above the mean gap.
pub const K: f64 = 4.0;

/// A node's view of its leader's liveness, and the heartbeat gaps it
/// learned (as follower or leader) that set its window.
///
/// Invariant: `floor <= window <= ceiling`; `len <= SAMPLES`.
#[derive(Debug, Clone)]
pub struct LeaderDetector {
    /// The window until enough gaps are known: the election timeout.
    prior: usize,
    floor: usize,
    ceiling: usize,
    /// Ring of the last gaps between periodic heartbeats (timed following
    /// or, as leader, between one voter's answers), in ticks.
    gaps: [u32; SAMPLES],
    len: usize,
    next: usize,
    window: usize,
    /// Whose messages are being timed ([`INVALID_ID`]: none yet).
    from: NodeId,
    /// Ticks since any message from `from`.
    silence: usize,
    /// Ticks since `from`'s last periodic heartbeat, if one was seen since
    /// timing started.
    since_heartbeat: Option<usize>,
}

impl LeaderDetector {
    /// A detector for a leader heartbeating every `heartbeat_tick` ticks and
    /// an election timeout randomized in `[election_tick, 2 * election_tick)`
    /// ticks (the ceiling is `2 * election_tick`).
    pub fn new(heartbeat_tick: usize, election_tick: usize) -> Self {
        let ceiling = election_tick.saturating_mul(2).max(1);
        let floor = heartbeat_tick.saturating_mul(2).clamp(1, ceiling);
        let prior = election_tick.clamp(floor, ceiling);
        LeaderDetector {
            prior,
            floor,
            ceiling,
            gaps: [0; SAMPLES],
            len: 0,
            next: 0,
            window: prior,
            from: INVALID_ID,
            silence: 0,
            since_heartbeat: None,
        }
    }

    /// One tick passed.
    pub fn tick(&mut self) {
        self.silence = self.silence.saturating_add(1);
        if let Some(t) = self.since_heartbeat.as_mut() {
            *t = t.saturating_add(1);
        }
    }

    /// A message from leader `from` arrived; `periodic` if it is one of the
    /// leader's regular heartbeats (the gaps between those are what the
    /// window learns from; every message proves the leader alive).
    pub fn heard(&mut self, from: NodeId, periodic: bool) {
        if from != self.from {
            // Another leader: the gap since the previous one's last message
            // is a failover, not a heartbeat gap.
            self.from = from;
            self.since_heartbeat = None;
        }
        self.silence = 0;
        if !periodic {
            return;
        }
        if let Some(gap) = self.since_heartbeat {
            self.record(gap);
        }
        self.since_heartbeat = Some(0);
    }

    /// Stop timing the current leader (this node leads now): the next
    /// message starts a new series. Learned gaps stay: they describe the
    /// hosts and network, not one leader (and as leader this node goes on
    /// learning, see [`LeaderDetector::learn`]). A leader that was merely
    /// suspected stays timed, so the long gap that fooled the detector is
    /// learned when its next heartbeat arrives.
    pub fn forget(&mut self) {
        self.from = INVALID_ID;
        self.since_heartbeat = None;
        self.silence = 0;
    }

    /// This node's own loop stalled (its driver dropped ticks): the gap now
    /// running spans that stall, not the leader's silence, so it is not
    /// learned; the next heartbeat starts a new series.
    pub fn restart_series(&mut self) {
        self.since_heartbeat = None;
    }

    /// A gap timed by this node as leader: between two answers of one voter
    /// to its periodic heartbeats. Such a voter's host and link are the ones
    /// whose heartbeats this node times when it follows again. A gap of a
    /// whole ceiling or more is not learned: every follower would have given
    /// up on a leader that silent, so it is an outage of that voter (stopped,
    /// cut off, restarting), not a heartbeat gap.
    pub fn learn(&mut self, gap: usize) {
        if gap < self.ceiling {
            self.record(gap);
        }
    }

    /// The longest window: ticks of silence after which any leader is
    /// considered lost, whatever the gaps learned.
    pub fn ceiling(&self) -> usize {
        self.ceiling
    }

    /// Ticks of silence after which the leader is considered lost.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Ticks since the timed leader's last message.
    pub fn silence(&self) -> usize {
        self.silence
    }

    /// True once the timed leader has been silent for a whole window.
    pub fn expired(&self) -> bool {
        self.from != INVALID_ID && self.silence >= self.window
    }

    /// Ticks until [`LeaderDetector::expired`] turns true (0: it is), or None
    /// while no leader is timed.
    pub fn ticks_to_expiry(&self) -> Option<usize> {
        (self.from != INVALID_ID).then(|| self.window.saturating_sub(self.silence))
    }

    /// The gaps learned, oldest first (for tests and status).
    pub fn gaps(&self) -> Vec<u32> {
        let start = (self.next + SAMPLES - self.len) % SAMPLES;
        (0..self.len)
            .map(|i| self.gaps[(start + i) % SAMPLES])
            .collect()
    }

    fn record(&mut self, gap: usize) {
        // Bounded so that one enormous stall cannot overflow the sums; it
        // still pins the window to the ceiling while remembered.
        let cap = self.ceiling.saturating_mul(2);
        self.gaps[self.next] = u32::try_from(gap.min(cap)).unwrap_or(u32::MAX);
        self.next = (self.next + 1) % SAMPLES;
        self.len = (self.len + 1).min(SAMPLES);
        self.window = self.compute_window();
    }

    fn compute_window(&self) -> usize {
        if self.len < MIN_SAMPLES {
            return self.prior;
        }
        // The ring fills from slot 0, so its first `len` slots are the gaps.
        let gaps = &self.gaps[..self.len];
        let n = self.len as f64;
        let (sum, sum_sq, longest) = gaps.iter().fold((0.0, 0.0, 0), |(s, q, m), g| {
            let f = f64::from(*g);
            (s + f, q + f * f, m.max(*g))
        });
        let mean = sum / n;
        let var = (sum_sq / n - mean * mean).max(0.0);
        // Finite and non-negative; `as` saturates above usize::MAX.
        let spread = (mean + K * var.sqrt()).ceil() as usize;
        let twice_longest = (longest as usize).saturating_mul(2);
        spread.max(twice_longest).clamp(self.floor, self.ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick_n(d: &mut LeaderDetector, n: usize) {
        for _ in 0..n {
            d.tick();
        }
    }

    /// A detector fed heartbeats from leader 1 after each gap of `gaps`
    /// ticks (the first heartbeat at tick 0).
    fn fed(gaps: &[usize]) -> LeaderDetector {
        let mut d = LeaderDetector::new(5, 10);
        d.heard(1, true);
        for g in gaps {
            tick_n(&mut d, *g);
            d.heard(1, true);
        }
        d
    }

    #[test]
    fn the_election_timeout_until_enough_gaps_are_known() {
        let d = fed(&[5; MIN_SAMPLES - 1]);
        assert_eq!(d.window(), 10);
        let d = fed(&[9; MIN_SAMPLES - 1]);
        assert_eq!(d.window(), 10, "not yet learned, however long");
        let d = fed(&[5; MIN_SAMPLES]);
        assert_eq!(d.window(), 10);
    }

    #[test]
    fn a_quiet_host_waits_twice_its_longest_gap() {
        // Tick-grid jitter of one tick either way.
        let d = fed(&[5, 5, 4, 6, 5, 5, 5, 4, 6, 5, 5, 5]);
        assert_eq!(d.window(), 12);
        // Without jitter: the floor, two heartbeat intervals.
        assert_eq!(fed(&[5; 12]).window(), 10);
    }

    #[test]
    fn rare_long_gaps_count_more_than_their_share_of_the_deviation() {
        // One gap in ten is 9 ticks: mean 5.4, stddev 1.2, mean + 4 sd ~ 10.2;
        // twice the longest gap is 18.
        let mut gaps = vec![5; 9];
        gaps.push(9);
        let gaps: Vec<usize> = gaps.iter().cycle().take(40).copied().collect();
        assert_eq!(fed(&gaps).window(), 18);
    }

    #[test]
    fn jittery_gaps_widen_the_window_up_to_the_ceiling() {
        // mean 6, population stddev 2: 6 + 4 * 2 = 14, under twice the
        // longest gap, 16.
        let d = fed(&[4, 8, 4, 8, 4, 8, 4, 8]);
        assert_eq!(d.window(), 16);
        let d = fed(&[3, 15, 3, 15, 3, 15, 3, 15]);
        assert_eq!(d.window(), 20);
    }

    #[test]
    fn old_gaps_are_forgotten() {
        let mut gaps = vec![3, 15, 3, 15, 3, 15, 3, 15];
        gaps.extend([5; SAMPLES]);
        assert_eq!(fed(&gaps).window(), 10);
    }

    #[test]
    fn silence_expires_only_with_a_timed_leader() {
        let mut d = fed(&[5; MIN_SAMPLES]);
        tick_n(&mut d, 9);
        assert!(!d.expired());
        d.tick();
        assert!(d.expired());
        d.heard(1, false);
        assert!(!d.expired(), "any message from the leader proves it alive");
        d.forget();
        tick_n(&mut d, 100);
        assert!(!d.expired(), "no leader is timed after forget");
    }

    #[test]
    fn a_new_leader_starts_a_new_series_and_extra_heartbeats_are_not_gaps() {
        let mut d = fed(&[5; MIN_SAMPLES]);
        tick_n(&mut d, 40);
        d.heard(2, true);
        assert_eq!(d.gaps().len(), MIN_SAMPLES, "the failover is no gap");
        d.tick();
        d.heard(2, false);
        assert_eq!(d.gaps().len(), MIN_SAMPLES, "a read's heartbeat is no gap");
        tick_n(&mut d, 4);
        d.heard(2, true);
        assert_eq!(d.gaps().last(), Some(&5));
        assert_eq!(d.window(), 10);
    }

    #[test]
    fn one_huge_stall_pins_the_ceiling_without_overflow() {
        let mut d = fed(&[5; MIN_SAMPLES]);
        tick_n(&mut d, 1_000_000);
        d.heard(1, true);
        assert_eq!(d.gaps().last(), Some(&40));
        assert_eq!(d.window(), 20);
    }

    #[test]
    fn gaps_timed_as_leader_count_unless_they_span_the_ceiling() {
        let mut d = LeaderDetector::new(5, 10);
        for _ in 0..MIN_SAMPLES {
            d.learn(5);
        }
        assert_eq!(d.window(), 10);
        d.learn(20);
        assert_eq!(d.gaps().len(), MIN_SAMPLES, "an outage is no gap");
        d.learn(8);
        assert_eq!(d.window(), 16);
    }

    #[test]
    fn the_floor_never_exceeds_the_ceiling() {
        let d = LeaderDetector::new(9, 5);
        assert_eq!((d.floor, d.ceiling), (10, 10));
    }
}
