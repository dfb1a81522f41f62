//! Static configuration of one Raft node.

use crate::errors::{Error, Result};
use crate::types::{NodeId, INVALID_ID};

/// How a node behaves: timeouts in ticks, flow-control limits, optional
/// protocol extensions. Build with [`Config::new`], adjust fields, then
/// [`Config::validate`] (done by `RawNode::new` too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This node's id; never [`INVALID_ID`].
    pub id: NodeId,
    /// Minimum election timeout in ticks; each timeout is drawn at random in
    /// `[election_tick, 2 * election_tick)`. Must exceed `heartbeat_tick`.
    pub election_tick: usize,
    /// Ticks between leader heartbeats. At least 1.
    pub heartbeat_tick: usize,
    /// Byte budget of the entries in one Append message; at least one entry
    /// is always sent, whatever its size.
    pub max_size_per_msg: u64,
    /// How many Append messages may be in flight to one follower in the
    /// replicate state (pipelining window). At least 1.
    pub max_inflight_msgs: usize,
    /// Cap on the bytes of `committed_entries` in one Ready (at least one
    /// entry is always handed out).
    pub max_committed_size_per_ready: u64,
    /// Run a pre-vote round before a real election, so a node that cannot win
    /// never bumps the term (a rejoining partitioned node stays harmless).
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout
    /// steps down; followers then honour the leader's lease (stickiness).
    pub check_quorum: bool,
    /// Seed of the pseudo-random generator behind election timeouts, mixed
    /// with `id` so that nodes sharing a seed still differ.
    pub seed: u64,
    /// Largest snapshot chunk sent in one message. Far below the transport's
    /// frame cap, so a snapshot of any size can be delivered. At least 1.
    pub max_snapshot_chunk: u64,
    /// Largest snapshot a follower accepts (it assembles chunks in memory).
    pub max_snapshot_bytes: u64,
    /// Largest entry a leader accepts in a proposal, so every Append fits in
    /// one transport frame (one entry always goes out, whatever its size).
    pub max_entry_bytes: u64,
}

impl Config {
    /// Defaults for node `id`: election 20 ticks, heartbeat 5, 1 MiB per
    /// message, 256 in flight, 16 MiB per Ready, pre-vote and check-quorum
    /// on, 1 MiB snapshot chunks, snapshots up to 1 GiB, entries up to 12 MiB
    /// (under a 16 MiB frame cap).
    pub fn new(id: NodeId) -> Self {
        Config {
            id,
            election_tick: 20,
            heartbeat_tick: 5,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            max_committed_size_per_ready: 16 << 20,
            pre_vote: true,
            check_quorum: true,
            seed: 0,
            max_snapshot_chunk: 1 << 20,
            max_snapshot_bytes: 1 << 30,
            max_entry_bytes: 12 << 20,
        }
    }

    /// Checks the fields against each other.
    pub fn validate(&self) -> Result<()> {
        if self.id == INVALID_ID {
            return Err(Error::InvalidConfig("id must not be 0".into()));
        }
        if self.heartbeat_tick == 0 {
            return Err(Error::InvalidConfig("heartbeat_tick must be > 0".into()));
        }
        if self.election_tick <= self.heartbeat_tick {
            return Err(Error::InvalidConfig(
                "election_tick must be greater than heartbeat_tick".into(),
            ));
        }
        if self.max_inflight_msgs == 0 {
            return Err(Error::InvalidConfig("max_inflight_msgs must be > 0".into()));
        }
        if self.max_snapshot_chunk == 0 {
            return Err(Error::InvalidConfig(
                "max_snapshot_chunk must be > 0".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_fields_rejected() {
        assert!(Config::new(1).validate().is_ok());
        assert!(Config::new(0).validate().is_err());
        let mut c = Config::new(1);
        c.election_tick = c.heartbeat_tick;
        assert!(c.validate().is_err());
        let mut c = Config::new(1);
        c.max_inflight_msgs = 0;
        assert!(c.validate().is_err());
    }
}
