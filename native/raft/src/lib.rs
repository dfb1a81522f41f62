//! # bedrock-raft
//!
//! The sans-I/O Raft core and write-ahead log of bedrock_cp. Pure Rust: no
//! sockets, clocks, threads or Python. The driver (the Python `raft/` package,
//! or the test harness) owns all I/O and calls into the core.
//!
//! ## The Ready loop
//!
//! 1. Feed the node events: `tick()` on a timer, `step(msg)` for each message
//!    received, `propose(data)`, `campaign()`, `read_index(ctx)`, ...
//! 2. When `has_ready()`, take a `Ready` and, **in this order**:
//!    1. persist `snapshot` (if any), then `entries` and `hard_state` — with an
//!       fsync when `must_sync` — **BEFORE** sending anything;
//!    2. send `messages`;
//!    3. apply `committed_entries` to the state machine, in order, and answer
//!       `read_states` once applied;
//! 3. call `advance(ready)` so the node knows what was persisted and applied.
//!
//! Term and vote are therefore durable before any vote or term-bearing reply
//! leaves the node, and nothing is acknowledged before a quorum has it on disk.
//!
//! ## Membership
//!
//! A founding member (fresh storage, non-empty `initial_voters`) writes the
//! initial membership into its log as committed `AddNode` entries of term 0
//! at indexes `1..=n` — identical on every founder — so a node added later
//! (started with no voters) learns the whole membership by replaying the
//! log. The first leader's no-op therefore lands at index `n + 1`. Later
//! changes are single-server `ConfChange` entries that take effect when
//! applied (in `advance`), one pending at a time.
//!
//! ## Example: a single-node group
//!
//! ```
//! use bedrock_raft::{Config, EntryType, PersistedState, RawNode};
//!
//! let mut node = RawNode::new(&Config::new(1), PersistedState::default(), &[1]).unwrap();
//! node.campaign().unwrap();
//! let index = node.propose(b"hello".to_vec()).unwrap();
//! let mut applied = Vec::new();
//! while node.has_ready() {
//!     let rd = node.ready();
//!     // 1. persist rd.snapshot, rd.entries, rd.hard_state (fsync if rd.must_sync)
//!     // 2. send rd.messages (none here: a single node)
//!     // 3. apply, in order
//!     for e in &rd.committed_entries {
//!         if e.entry_type == EntryType::Normal && !e.data.is_empty() {
//!             applied.push((e.index, e.data.clone()));
//!         }
//!     }
//!     node.advance(rd);
//! }
//! assert_eq!(applied, vec![(index, b"hello".to_vec())]);
//! ```

pub mod codec;
pub mod config;
pub mod errors;
pub mod message;
pub mod raft;
pub mod raft_log;
pub mod raw_node;
pub mod read_only;
pub mod status;
pub mod tracker;
pub mod types;
pub mod wal;

pub use codec::DecodeError;
pub use config::Config;
pub use errors::{Error, Result};
pub use message::{Message, MessageType};
pub use raw_node::{RawNode, Ready};
pub use read_only::ReadState;
pub use status::{ProgressStatus, Role, SoftState, Status};
pub use types::{
    ConfChange, ConfState, Entry, EntryType, HardState, NodeId, PersistedState, Snapshot,
    SnapshotMetadata, INVALID_ID,
};
