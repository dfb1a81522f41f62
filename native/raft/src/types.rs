//! Plain data shared by the Raft core, the WAL and the Python binding:
//! log entries, hard state, membership and snapshots, with their encodings.

use crate::codec::{DecodeError, Reader, Writer};

/// A node id. `0` ([`INVALID_ID`]) means "none".
pub type NodeId = u64;

/// The id that names no node (no leader, no vote).
pub const INVALID_ID: NodeId = 0;

/// What a log entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryType {
    /// Application data (or an empty no-op appended by a new leader).
    Normal,
    /// A membership change; `data` is an encoded [`ConfChange`].
    ConfChange,
}

impl EntryType {
    fn to_u8(self) -> u8 {
        match self {
            EntryType::Normal => 0,
            EntryType::ConfChange => 1,
        }
    }

    fn from_u8(v: u8, r: &Reader<'_>) -> Result<Self, DecodeError> {
        match v {
            0 => Ok(EntryType::Normal),
            1 => Ok(EntryType::ConfChange),
            _ => Err(r.error("entry type", format!("unknown entry type {v}"))),
        }
    }
}

/// One entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Term of the leader that created the entry.
    pub term: u64,
    /// Position in the log (first entry is 1).
    pub index: u64,
    /// Kind of payload.
    pub entry_type: EntryType,
    /// Payload; empty for a leader's no-op.
    pub data: Vec<u8>,
}

impl Entry {
    /// Smallest possible encoded size, used to bound forged counts.
    pub const MIN_ENCODED_SIZE: usize = 8 + 8 + 1 + 4;

    /// A normal entry.
    pub fn new(term: u64, index: u64, data: Vec<u8>) -> Self {
        Entry {
            term,
            index,
            entry_type: EntryType::Normal,
            data,
        }
    }

    /// Approximate size in bytes, for batching limits.
    pub fn size(&self) -> usize {
        Self::MIN_ENCODED_SIZE + self.data.len()
    }

    /// Appends the encoding of this entry to `w`.
    pub fn encode_into(&self, w: &mut Writer) {
        w.put_u64(self.term);
        w.put_u64(self.index);
        w.put_u8(self.entry_type.to_u8());
        w.put_bytes(&self.data);
    }

    /// Decodes one entry from `r`.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let term = r.get_u64("entry term")?;
        let index = r.get_u64("entry index")?;
        let t = r.get_u8("entry type")?;
        let entry_type = EntryType::from_u8(t, r)?;
        let data = r.get_bytes("entry data")?.to_vec();
        Ok(Entry {
            term,
            index,
            entry_type,
            data,
        })
    }
}

/// State that must be durable before a node replies to anything that depends
/// on it: the current term, the vote cast in it, and the commit index.
///
/// Invariant (I4): none of the three ever decreases on a node, across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardState {
    /// Latest term this node has seen.
    pub term: u64,
    /// Candidate voted for in `term`, or [`INVALID_ID`].
    pub vote: NodeId,
    /// Highest log index known to be committed.
    pub commit: u64,
}

impl HardState {
    /// Encoded size in bytes.
    pub const ENCODED_SIZE: usize = 24;

    /// Appends the encoding to `w`.
    pub fn encode_into(&self, w: &mut Writer) {
        w.put_u64(self.term);
        w.put_u64(self.vote);
        w.put_u64(self.commit);
    }

    /// Decodes a hard state from `r`.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(HardState {
            term: r.get_u64("hard state term")?,
            vote: r.get_u64("hard state vote")?,
            commit: r.get_u64("hard state commit")?,
        })
    }

    /// True when nothing has ever been recorded.
    pub fn is_empty(&self) -> bool {
        *self == HardState::default()
    }
}

/// The membership of the group: who votes, and who only receives the log.
///
/// Invariant: `voters` and `learners` are each sorted and unique, and
/// disjoint (a node is a voter or a learner, never both).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ConfState {
    /// Ids of the voting members.
    pub voters: Vec<NodeId>,
    /// Ids of the learners: they receive the log but neither vote nor count
    /// toward a commit quorum.
    pub learners: Vec<NodeId>,
}

impl ConfState {
    /// A membership of voters only (sorted and deduplicated here).
    pub fn new(voters: Vec<NodeId>) -> Self {
        Self::with_learners(voters, Vec::new())
    }

    /// A membership from any lists (sorted and deduplicated; a learner that
    /// is also listed as a voter is a voter).
    pub fn with_learners(mut voters: Vec<NodeId>, mut learners: Vec<NodeId>) -> Self {
        voters.sort_unstable();
        voters.dedup();
        learners.sort_unstable();
        learners.dedup();
        learners.retain(|l| voters.binary_search(l).is_err());
        ConfState { voters, learners }
    }

    /// True if `id` votes.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok()
    }

    /// True if `id` is a learner.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.binary_search(&id).is_ok()
    }

    /// The membership after `cc`. Changes that make no sense here (adding a
    /// voter twice, demoting a voter, removing a stranger) change nothing:
    /// the leader validates proposals, so a log never holds them, but a
    /// forged or replayed entry must not break the invariant.
    pub fn apply(&self, cc: ConfChange) -> ConfState {
        let mut voters = self.voters.clone();
        let mut learners = self.learners.clone();
        match cc {
            ConfChange::AddNode(id) if id != INVALID_ID => {
                learners.retain(|l| *l != id);
                voters.push(id);
            }
            ConfChange::AddLearner(id) if id != INVALID_ID && !self.is_voter(id) => {
                learners.push(id);
            }
            ConfChange::RemoveNode(id) => {
                voters.retain(|v| *v != id);
                learners.retain(|l| *l != id);
            }
            _ => {}
        }
        ConfState::with_learners(voters, learners)
    }

    /// Appends the encoding to `w`.
    pub fn encode_into(&self, w: &mut Writer) {
        for ids in [&self.voters, &self.learners] {
            w.put_u32(ids.len() as u32);
            for v in ids {
                w.put_u64(*v);
            }
        }
    }

    /// Decodes a membership from `r`.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut lists = [Vec::new(), Vec::new()];
        for (list, what) in lists.iter_mut().zip(["voters", "learners"]) {
            let n = r.get_count(what, 8)?;
            list.reserve(n);
            for _ in 0..n {
                list.push(r.get_u64("member id")?);
            }
        }
        let [voters, learners] = lists;
        Ok(ConfState::with_learners(voters, learners))
    }
}

/// A single-server membership change, carried in a [`EntryType::ConfChange`]
/// entry. It takes effect as soon as it is in a node's log, committed or not
/// (Raft thesis, section 4.1), and is undone if that entry is truncated away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfChange {
    /// Add a voter, or promote a learner to voter.
    AddNode(NodeId),
    /// Remove a voter or a learner.
    RemoveNode(NodeId),
    /// Add a learner: it receives the log, but does not vote or count toward
    /// a quorum until promoted with [`ConfChange::AddNode`].
    AddLearner(NodeId),
}

impl ConfChange {
    /// Encodes the change as entry data.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(9);
        let (kind, id) = match self {
            ConfChange::AddNode(id) => (0, id),
            ConfChange::RemoveNode(id) => (1, id),
            ConfChange::AddLearner(id) => (2, id),
        };
        w.put_u8(kind);
        w.put_u64(*id);
        w.into_vec()
    }

    /// Decodes entry data into a change.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let kind = r.get_u8("conf change kind")?;
        let id = r.get_u64("conf change node")?;
        r.finish("conf change")?;
        match kind {
            0 => Ok(ConfChange::AddNode(id)),
            1 => Ok(ConfChange::RemoveNode(id)),
            2 => Ok(ConfChange::AddLearner(id)),
            _ => Err(DecodeError {
                what: "conf change kind",
                offset: 0,
                reason: format!("unknown kind {kind}"),
            }),
        }
    }

    /// The node the change is about.
    pub fn node_id(&self) -> NodeId {
        match self {
            ConfChange::AddNode(id) | ConfChange::RemoveNode(id) | ConfChange::AddLearner(id) => {
                *id
            }
        }
    }
}

/// Where a snapshot sits in the log, and the membership at that point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotMetadata {
    /// Last log index covered by the snapshot.
    pub index: u64,
    /// Term of the entry at `index`.
    pub term: u64,
    /// Membership as of `index`.
    pub conf_state: ConfState,
}

/// A state-machine snapshot: everything in the log up to `metadata.index`,
/// in the application's own encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Position and membership.
    pub metadata: SnapshotMetadata,
    /// The application's serialized state.
    pub data: Vec<u8>,
}

impl Snapshot {
    /// Appends the encoding to `w`.
    pub fn encode_into(&self, w: &mut Writer) {
        w.put_u64(self.metadata.index);
        w.put_u64(self.metadata.term);
        self.metadata.conf_state.encode_into(w);
        w.put_bytes(&self.data);
    }

    /// Decodes a snapshot from `r`.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let index = r.get_u64("snapshot index")?;
        let term = r.get_u64("snapshot term")?;
        let conf_state = ConfState::decode_from(r)?;
        let data = r.get_bytes("snapshot data")?.to_vec();
        Ok(Snapshot {
            metadata: SnapshotMetadata {
                index,
                term,
                conf_state,
            },
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trip() {
        let s = Snapshot {
            metadata: SnapshotMetadata {
                index: 5,
                term: 2,
                conf_state: ConfState::with_learners(vec![3, 1, 2, 2], vec![7, 2]),
            },
            data: b"state".to_vec(),
        };
        let mut w = Writer::default();
        s.encode_into(&mut w);
        let v = w.into_vec();
        let mut r = Reader::new(&v);
        let d = Snapshot::decode_from(&mut r).unwrap();
        r.finish("snapshot").unwrap();
        assert_eq!(d, s);
        assert_eq!(d.metadata.conf_state.voters, vec![1, 2, 3]);
        assert_eq!(d.metadata.conf_state.learners, vec![7]);
    }

    #[test]
    fn conf_changes_keep_voters_and_learners_apart() {
        let c = ConfState::new(vec![1, 2, 3]);
        let c = c.apply(ConfChange::AddLearner(4));
        assert_eq!(
            (c.voters.clone(), c.learners.clone()),
            (vec![1, 2, 3], vec![4])
        );
        // A voter is never demoted by AddLearner; a learner is promoted by AddNode.
        assert_eq!(c.apply(ConfChange::AddLearner(2)), c);
        let c = c.apply(ConfChange::AddNode(4));
        assert_eq!(
            (c.voters.clone(), c.learners.clone()),
            (vec![1, 2, 3, 4], vec![])
        );
        let c = c
            .apply(ConfChange::RemoveNode(1))
            .apply(ConfChange::RemoveNode(9));
        assert_eq!(c.voters, vec![2, 3, 4]);
        assert_eq!(c.apply(ConfChange::AddNode(INVALID_ID)), c);
    }

    #[test]
    fn conf_change_round_trip() {
        for cc in [
            ConfChange::AddNode(4),
            ConfChange::RemoveNode(9),
            ConfChange::AddLearner(5),
        ] {
            assert_eq!(ConfChange::decode(&cc.encode()).unwrap(), cc);
        }
        assert!(ConfChange::decode(&[7, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(ConfChange::decode(&[0, 1]).is_err());
    }
}
