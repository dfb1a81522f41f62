//! Messages exchanged between Raft peers and their wire encoding.
//!
//! The core produces [`Message`]s in a `Ready`; the driver sends
//! [`Message::encode`]d bytes and feeds received bytes back through
//! [`Message::decode`]. Decoding is strict: an unknown version or type, a bad
//! boolean, a forged count or trailing bytes are all errors.

use crate::codec::{DecodeError, Reader, Writer};
use crate::types::{ConfState, Entry, NodeId, SnapshotMetadata};

/// Wire format version, the first byte of every encoded message.
/// Version 2: snapshots travel in chunks; memberships carry learners.
pub const WIRE_VERSION: u8 = 2;

/// One piece of a snapshot on its way from the leader to a follower.
///
/// A snapshot's data is sent in chunks of at most
/// [`Config::max_snapshot_chunk`](crate::Config::max_snapshot_chunk) bytes,
/// each carrying the snapshot's metadata, so a follower can tell chunks of
/// different snapshots apart and resume an interrupted transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The snapshot's position and membership.
    pub metadata: SnapshotMetadata,
    /// Size of the whole snapshot data.
    pub total_len: u64,
    /// Where `data` starts within the snapshot data.
    pub offset: u64,
    /// The bytes `[offset, offset + data.len())` of the snapshot data.
    pub data: Vec<u8>,
}

impl SnapshotChunk {
    /// True for the chunk that completes the snapshot.
    pub fn is_last(&self) -> bool {
        self.offset.saturating_add(self.data.len() as u64) >= self.total_len
    }
}

/// The kinds of message peers exchange. Local events (ticks, proposals,
/// campaigns) are methods on the node, never messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// Leader -> follower: entries to append after (`log_term`, `index`).
    Append,
    /// Follower -> leader: `index` is the last matching index, or a rejection
    /// with `reject_hint` (conflict index) and `log_term` (conflict term).
    AppendResponse,
    /// Candidate -> all: vote for me in `term`; my last entry is (`log_term`, `index`).
    RequestVote,
    /// Reply to [`MessageType::RequestVote`].
    RequestVoteResponse,
    /// Pre-candidate -> all: would you vote for me in `term` (not yet adopted)?
    RequestPreVote,
    /// Reply to [`MessageType::RequestPreVote`].
    RequestPreVoteResponse,
    /// Leader -> follower: one chunk of a snapshot (`chunk`).
    Snapshot,
    /// Leader -> follower: I am alive; `commit` is the commit index you may use.
    Heartbeat,
    /// Reply to [`MessageType::Heartbeat`] (carries `context` back for ReadIndex).
    HeartbeatResponse,
    /// Leader -> transferee: campaign now, ignoring your election timeout.
    TimeoutNow,
    /// Follower -> leader: a read request with `context` as its id.
    ReadIndex,
    /// Leader -> follower: the read index (`index`) for request `context`.
    ReadIndexResponse,
    /// Follower -> leader: please transfer leadership to `index` (to
    /// `from` when `index` is 0).
    TransferLeader,
    /// Follower -> leader: about the snapshot at (`index`, `log_term`), send
    /// the chunk at byte `reject_hint` next; with `reject`, the follower
    /// refuses the snapshot (too large for it).
    SnapshotResponse,
}

impl MessageType {
    const ALL: [MessageType; 14] = [
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
        MessageType::SnapshotResponse,
    ];

    fn to_u8(self) -> u8 {
        Self::ALL.iter().position(|t| *t == self).unwrap_or(0) as u8
    }

    fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }

    /// True for the replies to votes and pre-votes.
    pub fn is_vote_response(self) -> bool {
        matches!(
            self,
            MessageType::RequestVoteResponse | MessageType::RequestPreVoteResponse
        )
    }
}

/// One message between peers. Fields a type does not use are left at zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// What the message is.
    pub msg_type: MessageType,
    /// Recipient.
    pub to: NodeId,
    /// Sender.
    pub from: NodeId,
    /// Sender's term (for pre-votes: the term it would campaign in).
    pub term: u64,
    /// Term of the entry at `index` (meaning depends on the type).
    pub log_term: u64,
    /// A log index (meaning depends on the type).
    pub index: u64,
    /// Entries to append (Append only).
    pub entries: Vec<Entry>,
    /// Leader's commit index.
    pub commit: u64,
    /// True when the request is refused.
    pub reject: bool,
    /// On a rejected append: the follower's hint for where to retry.
    pub reject_hint: u64,
    /// A piece of a snapshot to install (Snapshot only).
    pub chunk: Option<SnapshotChunk>,
    /// Opaque request context (ReadIndex ids, transfer markers).
    pub context: Vec<u8>,
}

impl Message {
    /// A message of `msg_type` from `from` to `to` in `term`, other fields empty.
    pub fn new(msg_type: MessageType, from: NodeId, to: NodeId, term: u64) -> Self {
        Message {
            msg_type,
            to,
            from,
            term,
            log_term: 0,
            index: 0,
            entries: Vec::new(),
            commit: 0,
            reject: false,
            reject_hint: 0,
            chunk: None,
            context: Vec::new(),
        }
    }

    /// True for the leader's Appends and heartbeats: what a leader may send
    /// before its own persist (see `Ready::early_messages`).
    pub fn is_replication(&self) -> bool {
        matches!(self.msg_type, MessageType::Append | MessageType::Heartbeat)
    }

    /// Approximate encoded size in bytes (the entries' and chunk's payloads
    /// plus fixed framing), without encoding.
    pub fn approx_size(&self) -> usize {
        80 + self.entries.iter().map(Entry::size).sum::<usize>()
            + self.context.len()
            + self.chunk.as_ref().map_or(0, |c| c.data.len() + 64)
    }

    /// Encodes the message for the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.approx_size());
        w.put_u8(WIRE_VERSION);
        w.put_u8(self.msg_type.to_u8());
        w.put_u64(self.to);
        w.put_u64(self.from);
        w.put_u64(self.term);
        w.put_u64(self.log_term);
        w.put_u64(self.index);
        w.put_u64(self.commit);
        w.put_u8(self.reject as u8);
        w.put_u64(self.reject_hint);
        w.put_bytes(&self.context);
        w.put_u32(self.entries.len() as u32);
        for e in &self.entries {
            e.encode_into(&mut w);
        }
        match &self.chunk {
            None => w.put_u8(0),
            Some(c) => {
                w.put_u8(1);
                w.put_u64(c.metadata.index);
                w.put_u64(c.metadata.term);
                c.metadata.conf_state.encode_into(&mut w);
                w.put_u64(c.total_len);
                w.put_u64(c.offset);
                w.put_bytes(&c.data);
            }
        }
        w.into_vec()
    }

    /// Decodes a message received from a peer.
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Reader::new(buf);
        let version = r.get_u8("wire version")?;
        if version != WIRE_VERSION {
            return Err(DecodeError {
                what: "wire version",
                offset: 0,
                reason: format!("unsupported version {version}, expected {WIRE_VERSION}"),
            });
        }
        let t = r.get_u8("message type")?;
        let msg_type = MessageType::from_u8(t).ok_or_else(|| DecodeError {
            what: "message type",
            offset: 1,
            reason: format!("unknown message type {t}"),
        })?;
        let to = r.get_u64("to")?;
        let from = r.get_u64("from")?;
        let term = r.get_u64("term")?;
        let log_term = r.get_u64("log_term")?;
        let index = r.get_u64("index")?;
        let commit = r.get_u64("commit")?;
        let reject = r.get_bool("reject")?;
        let reject_hint = r.get_u64("reject_hint")?;
        let context = r.get_bytes("context")?.to_vec();
        let n = r.get_count("entries", Entry::MIN_ENCODED_SIZE)?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            entries.push(Entry::decode_from(&mut r)?);
        }
        let chunk = if r.get_bool("chunk flag")? {
            let index = r.get_u64("snapshot index")?;
            let term = r.get_u64("snapshot term")?;
            let conf_state = ConfState::decode_from(&mut r)?;
            let total_len = r.get_u64("snapshot length")?;
            let offset = r.get_u64("chunk offset")?;
            let data = r.get_bytes("chunk data")?.to_vec();
            Some(SnapshotChunk {
                metadata: SnapshotMetadata {
                    index,
                    term,
                    conf_state,
                },
                total_len,
                offset,
                data,
            })
        } else {
            None
        };
        r.finish("message")?;
        Ok(Message {
            msg_type,
            to,
            from,
            term,
            log_term,
            index,
            entries,
            commit,
            reject,
            reject_hint,
            chunk,
            context,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        let mut m = Message::new(MessageType::Append, 1, 2, 3);
        m.log_term = 2;
        m.index = 10;
        m.commit = 9;
        m.entries = vec![Entry::new(3, 11, b"x".to_vec()), Entry::new(3, 12, vec![])];
        m.context = b"ctx".to_vec();
        m.chunk = Some(SnapshotChunk {
            metadata: SnapshotMetadata {
                index: 4,
                term: 1,
                conf_state: ConfState::with_learners(vec![1, 2, 3], vec![4]),
            },
            total_len: 10,
            offset: 6,
            data: b"snap".to_vec(),
        });
        m
    }

    #[test]
    fn round_trip() {
        for t in MessageType::ALL {
            let mut m = sample();
            m.msg_type = t;
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(Message::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn bad_header_fields_are_errors() {
        let mut bytes = sample().encode();
        bytes[0] = 9;
        assert!(Message::decode(&bytes)
            .unwrap_err()
            .reason
            .contains("version"));
        let mut bytes = sample().encode();
        bytes[1] = 200;
        assert_eq!(Message::decode(&bytes).unwrap_err().what, "message type");
        let mut bytes = sample().encode();
        bytes.push(0);
        assert_eq!(Message::decode(&bytes).unwrap_err().what, "message");
    }
}
