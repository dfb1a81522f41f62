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
