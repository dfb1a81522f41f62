//! # bedrock-wal
//!
//! The I/O half of bedrock_cp's consensus: the write-ahead log of one node,
//! the small file-system interface it runs on, and [`Consensus`], the object
//! that runs the Ready loop over the pure Raft core (`bedrock-raft`, which
//! does no I/O at all) and this log.
//!
//! ## Directory layout
//!
//! ```text
//! meta                    cluster id + node id + format version, written once
//! hardstate               term, vote, commit in two alternating slots
//! snapshot                the latest snapshot, replaced atomically
//! 0000000000000001.wal    segments, named by their first index (16 hex digits)
//! 0000000000004a31.wal
//! LOCK                    held while the WAL is open
//! *.tmp                   leftovers of an interrupted atomic replace, or a
//!                         compaction's snapshot file staged but never put in
//!                         place (snapshot-<index>.staged.tmp), removed on open
//! ```
//!
//! Any other file in the directory is refused on open. Segments hold batches
//! of records (see [`record`](crate::record) for the format): each write is
//! one batch with a sequence number and its extent, never overwriting synced
//! bytes; a batch that starts at or below the last index replaces the tail.
//! Format version 2; files of version 1 are refused with a clear error.
//!
//! ## Durability
//!
//! * [`Wal::save`] writes entries, then the hard state. One `fdatasync` covers
//!   all entries of the call (group commit); a term or vote change is synced
//!   too. A commit-only change is written but not synced: it survives a
//!   process crash through the page cache, and after a power loss the commit
//!   index may come back lower — safe, since commit is re-learned from the
//!   leader, and the membership comes from the log, not from the commit.
//! * A syncing WAL writes zeros ahead of the log's end (twice the batch,
//!   64 KiB to 1 MiB) and appends inside them: an `fdatasync` after a write
//!   past the end of a file must make its new length durable too (a journal
//!   commit on ext4), one inside it need not. Only the last segment ends in
//!   zeros: a segment is cut to its last batch before the next one starts,
//!   and on open the zeros are cut off.
//! * New files (segments, snapshot, meta) appear atomically: temporary file,
//!   sync, rename, directory sync. Removals are followed by a directory sync.
//! * Any failed sync poisons the WAL: that call and every later one return
//!   [`WalError::Fatal`]. A failed write poisons it too, since the file may
//!   then hold bytes the WAL does not know about.
//!
//! ## Recovery
//!
//! On open, damage in the last segment that no later batch follows lies in
//! the last write, which was never acknowledged (it was not synced): it is
//! cut off, however it was torn. Damage anywhere else is
//! [`WalError::Corrupt`] naming the file, the offset and the reason. For the
//! Raft log ([`WalOptions::commit_is_index`]) a hard-state commit above the
//! last intact entry proves those entries had been synced: open refuses
//! rather than truncate them. Nothing is ever truncated silently.
//!
//! Open loads an index of the log (offset and length of every record, terms
//! as runs) and the most recent entries up to [`WalOptions::cache_bytes`];
//! the core reads older entries back through [`WalStorage`] on demand, so a
//! large log is never held in memory whole.
//!
//! ## The file system
//!
//! Every file operation goes through [`vfs::Disk`]: the real file system, or
//! [`vfs::MemDisk`], an in-memory disk that can lose power (unsynced writes
//! lost or torn at sector boundaries, unsynced directory changes undone), on
//! which tests and simulations run this very code.

#![deny(missing_docs)]

mod consensus;
mod durable;
mod error;
mod hard_state;
mod index;
mod listing;
mod meta;
pub mod record;
mod segment;
mod snapshot_file;
pub mod vfs;
mod wal;

pub use consensus::{Consensus, PendingReady, Persisted};
pub use error::WalError;
pub use index::WalStorage;
pub use vfs::{Disk, Fault, MemDisk};
pub use wal::{
    SnapshotStager, StagedSnapshot, Wal, WalOptions, DEFAULT_CACHE_BYTES, DEFAULT_SEGMENT_BYTES,
};
