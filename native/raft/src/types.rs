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

/// The voting membership of the group. `voters` is kept sorted and unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfState {
    /// Ids of the voting members.
    pub voters: Vec<NodeId>,
}

impl ConfState {
    /// A membership from any list of ids (sorted and deduplicated here).
    pub fn new(mut voters: Vec<NodeId>) -> Self {
        voters.sort_unstable();
        voters.dedup();
        ConfState { voters }
    }

    /// Appends the encoding to `w`.
    pub fn encode_into(&self, w: &mut Writer) {
        w.put_u32(self.voters.len() as u32);
        for v in &self.voters {
            w.put_u64(*v);
        }
    }

    /// Decodes a membership from `r`.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.get_count("voters", 8)?;
        let mut voters = Vec::with_capacity(n);
        for _ in 0..n {
            voters.push(r.get_u64("voter id")?);
        }
        Ok(ConfState::new(voters))
    }
}

/// A single-server membership change, carried in a [`EntryType::ConfChange`] entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfChange {
    /// Add a voter.
    AddNode(NodeId),
    /// Remove a voter.
    RemoveNode(NodeId),
}

impl ConfChange {
    /// Encodes the change as entry data.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(9);
        match self {
            ConfChange::AddNode(id) => {
                w.put_u8(0);
                w.put_u64(*id);
            }
            ConfChange::RemoveNode(id) => {
                w.put_u8(1);
                w.put_u64(*id);
            }
        }
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
            ConfChange::AddNode(id) | ConfChange::RemoveNode(id) => *id,
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

/// Everything a node recovers from its durable storage on restart, handed to
/// the Raft core at construction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersistedState {
    /// Last durable hard state.
    pub hard_state: HardState,
    /// Latest durable snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// Durable entries after the snapshot, consecutive by index.
    pub entries: Vec<Entry>,
}

impl PersistedState {
    /// True for a node that has never persisted anything (a fresh node).
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_empty() && self.snapshot.is_none() && self.entries.is_empty()
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
                conf_state: ConfState::new(vec![3, 1, 2, 2]),
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
    }

    #[test]
    fn conf_change_round_trip() {
        for cc in [ConfChange::AddNode(4), ConfChange::RemoveNode(9)] {
            assert_eq!(ConfChange::decode(&cc.encode()).unwrap(), cc);
        }
        assert!(ConfChange::decode(&[7, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(ConfChange::decode(&[0, 1]).is_err());
    }
}
