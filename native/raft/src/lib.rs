//! # bedrock-raft
//!
//! The sans-I/O Raft core of bedrock_cp. Pure Rust: no files, sockets,
//! clocks, threads or Python. The driver owns all I/O and calls into the
//! core; the durable log is read through the [`Storage`] trait. The
//! write-ahead log that implements it, and the object that runs the Ready
//! loop over the core and that log, live in the `bedrock-wal` crate.
//!
//! ## The Ready loop
//!
//! 1. Feed the node events: `tick()` on a timer, `step(msg)` for each message
//!    received, `propose(data)`, `campaign()`, `read_index(ctx)`, ...
//! 2. When `has_ready()`, take a `Ready` and, **in this order**:
//!    1. persist `snapshot` (if any), then `entries` and `hard_state` — with an
//!       fsync when `must_sync` — **BEFORE** sending anything;
//!    2. send `messages`;
//!    3. restore `snapshot` (if any), apply `committed_entries` in order, and
//!       answer `read_states` once applied;
//! 3. call `advance` so the node knows what was persisted and applied.
//!
//! Term and vote are therefore durable before any vote or term-bearing reply
//! leaves the node, and nothing is acknowledged before a quorum has it on disk.
//!
//! ## Membership
//!
//! A founding member (fresh storage, non-empty `initial_voters`) writes the
//! initial membership into its log as committed `AddNode` entries of term 0
//! at indexes `1..=n` — identical on every founder — so a node added later
//! (started with no voters) learns the whole membership from the log. The
//! first leader's no-op therefore lands at index `n + 1`.
//!
//! Later changes are single-server [`ConfChange`] entries, one pending at a
//! time. As the Raft thesis prescribes (§4.1), a node uses the latest
//! configuration in its log, committed or not: a change takes effect when
//! appended and is undone if a new leader truncates it. On restart the
//! configuration is the snapshot's plus every conf change in the log, so it
//! never goes backwards, whatever happened to the commit index. New members
//! may join as learners ([`ConfChange::AddLearner`]): they receive the log but
//! neither vote nor count toward a quorum until promoted.
//!
//! ## Snapshots
//!
//! The application takes a snapshot of its state at the index it applied
//! ([`RawNode::snapshot_metadata`] checks that index against the core's and
//! refuses while a snapshot from the leader is being installed). A leader
//! sends a snapshot in chunks of at most `max_snapshot_chunk` bytes; the
//! follower assembles them in order and resumes an interrupted transfer.
//!
//! ## Example: a single-node group
//!
//! ```
//! use bedrock_raft::{Config, EntryType, MemStorage, RawNode};
//!
//! let storage = MemStorage::new();
//! let mut node = RawNode::new(&Config::new(1), storage.clone(), &[1]).unwrap();
//! let mut applied = Vec::new();
//! let mut run = |node: &mut RawNode<MemStorage>| {
//!     while node.has_ready() {
//!         let rd = node.ready();
//!         // 1. persist (in memory here; a real driver fsyncs when rd.must_sync)
//!         storage.append(&rd.entries);
//!         if let Some(hs) = rd.hard_state {
//!             storage.set_hard_state(hs);
//!         }
//!         // 2. send rd.messages (none here: a single node)
//!         // 3. apply, in order
//!         for e in &rd.committed_entries {
//!             if e.entry_type == EntryType::Normal && !e.data.is_empty() {
//!                 applied.push((e.index, e.data.clone()));
//!             }
//!         }
//!         node.advance(rd);
//!     }
//! };
//! run(&mut node); // the bootstrap membership is persisted and applied first
//! node.campaign().unwrap();
//! let index = node.propose(b"hello".to_vec()).unwrap();
//! run(&mut node);
//! assert_eq!(applied, vec![(index, b"hello".to_vec())]);
//! ```

#![deny(missing_docs)]

pub mod codec;
pub mod conf_log;
pub mod config;
pub mod errors;
pub mod failure_detector;
pub mod log_unstable;
pub mod message;
pub mod raft;
pub mod raft_log;
pub mod raw_node;
pub mod read_only;
pub mod status;
pub mod storage;
pub mod tracker;
pub mod types;

pub use codec::DecodeError;
pub use config::Config;
pub use errors::{Error, Result};
pub use message::{Message, MessageType, SnapshotChunk};
pub use raft::TickDue;
pub use raw_node::{Marks, RawNode, Ready};
pub use read_only::ReadState;
pub use status::{ProgressStatus, Role, SoftState, Status};
pub use storage::{MemStorage, RaftState, Storage};
pub use types::{
    ConfChange, ConfState, Entry, EntryType, HardState, NodeId, Snapshot, SnapshotMetadata,
    INVALID_ID,
};
