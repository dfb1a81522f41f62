//! [`Consensus`]: the Raft core and its WAL in one object, so the Ready loop
//! has one place where "persist before send" is enforced.
//!
//! The loop, for any driver (the Python runner, the test harness):
//!
//! ```text
//! rd = c.ready()          // a PendingReady
//! send rd.take_early_messages()  // the leader's Appends: may leave before the persist
//! p  = c.persist(rd)      // snapshot, entries, hard state written (fsync if needed)
//! send p.messages         // only now do the others exist for the driver
//! restore p.snapshot, apply p.committed_entries, in order
//! c.advance(p.marks())
//! serve p.read_states     // once applied up to their index
//! ```
//!
//! The core and the WAL sit behind separate locks: while `persist` runs on a
//! WAL thread (fsync included), the driver's thread keeps calling `step`,
//! `propose` and `tick`, which only take the core's lock; the core reads the
//! log through [`WalStorage`], which never waits for an fsync. What arrives
//! meanwhile goes into the next Ready, and shares its fsync (group commit).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bedrock_raft::{
    ConfChange, Config, Entry, HardState, Marks, Message, NodeId, RawNode, ReadState, Ready,
    Snapshot, SoftState, Status, TickDue,
};

use crate::error::WalError;
use crate::index::WalStorage;
use crate::vfs::Disk;
use crate::wal::{Wal, WalOptions};

/// A Ready taken from the core and not yet persisted: it says whether
/// persisting it needs an fsync and hands out the messages that may leave
/// before the persist ([`PendingReady::take_early_messages`]); all others
/// come out of [`Consensus::persist`].
#[derive(Debug)]
pub struct PendingReady {
    rd: Ready,
}

impl PendingReady {
    /// True when persisting needs an fsync (entries, a snapshot, or a term
    /// or vote change); a driver may persist others inline.
    pub fn must_sync(&self) -> bool {
        self.rd.must_sync
    }

    /// True when anything at all is written.
    pub fn persist_needed(&self) -> bool {
        !self.rd.entries.is_empty() || self.rd.hard_state.is_some() || self.rd.snapshot.is_some()
    }

    /// Takes the messages that may be sent before (or while) this Ready is
    /// persisted: the leader's Appends and heartbeats (see
    /// `Ready::early_messages`). Those not taken go out with the others,
    /// after the persist.
    pub fn take_early_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.rd.early_messages)
    }
}

/// What may happen once a Ready is durable, in this order: send `messages`;
/// restore `snapshot` (if any), then apply `committed_entries`; call
/// [`Consensus::advance`] with [`Persisted::marks`]; serve `read_states`.
#[derive(Debug)]
pub struct Persisted {
    /// Messages to send.
    pub messages: Vec<Message>,
    /// The leader or role changed.
    pub soft_state: Option<SoftState>,
    /// The hard state that was persisted, if it changed.
    pub hard_state: Option<HardState>,
    /// A snapshot from the leader, now durable: restore the state from it.
    pub snapshot: Option<Arc<Snapshot>>,
    /// Committed entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Confirmed reads.
    pub read_states: Vec<ReadState>,
    marks: Marks,
}

impl Persisted {
    /// What [`Consensus::advance`] needs.
    pub fn marks(&self) -> Marks {
        self.marks
    }
}

/// The Raft core of one node over its WAL. All methods take `&self`: the
/// object is shared between the driver's thread and a WAL thread.
#[derive(Debug)]
pub struct Consensus {
    id: NodeId,
    dir: PathBuf,
    core: Mutex<RawNode<WalStorage>>,
    /// None once closed.
    wal: Mutex<Option<Wal>>,
    /// A Ready was taken and not yet advanced. Invariant: at most one.
    ready_out: AtomicBool,
    closed: AtomicBool,
    /// Messages whose sender differed from the peer the transport
    /// authenticated, dropped.
    forged: AtomicU64,
    /// Messages for another node, dropped.
    misaddressed: AtomicU64,
    sync_count: Arc<AtomicU64>,
    recovered: Option<Arc<Snapshot>>,
}

impl Consensus {
    /// Opens the WAL in `dir` on `disk` and the core over it. `config` is the
    /// core's; `initial_voters` bootstraps a fresh founding member (`[]` to
    /// join an existing group). The snapshot the log starts from (if any) is
    /// [`Consensus::recovered_snapshot`]: restore the state machine from it
    /// before applying anything.
    pub fn open(
        disk: Disk,
        dir: &Path,
        wal_opts: WalOptions,
        config: &Config,
        initial_voters: &[NodeId],
    ) -> Result<Consensus, WalError> {
        if wal_opts.node_id != config.id {
            return Err(WalError::InvalidArgument(format!(
                "WAL node id {} differs from the Raft node id {}",
                wal_opts.node_id, config.id
            )));
        }
        let wal = Wal::open(disk, dir, wal_opts)?;
        let snap = wal.snapshot();
        let recovered = (snap.metadata.index > 0).then_some(snap);
        let raw = RawNode::new(config, wal.storage(), initial_voters)?;
        Ok(Consensus {
            id: config.id,
            dir: dir.to_path_buf(),
            core: Mutex::new(raw),
            sync_count: wal.sync_counter(),
            wal: Mutex::new(Some(wal)),
            ready_out: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            forged: AtomicU64::new(0),
            misaddressed: AtomicU64::new(0),
            recovered,
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The snapshot the log started from when opened, if any.
    pub fn recovered_snapshot(&self) -> Option<Arc<Snapshot>> {
        self.recovered.clone()
    }

    fn core(&self) -> Result<MutexGuard<'_, RawNode<WalStorage>>, WalError> {
        self.core
            .lock()
            .map_err(|_| WalError::Poisoned("a call into the Raft core panicked".into()))
    }

    /// The core, for tests and inspection.
    ///
    /// # Panics
    /// If an earlier call into the core panicked.
    pub fn raw(&self) -> MutexGuard<'_, RawNode<WalStorage>> {
        self.core().expect("Raft core poisoned")
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&self) -> Result<(), WalError> {
        self.core()?.tick();
        Ok(())
    }

    /// The next tick that may do more than count (see [`bedrock_raft::TickDue`]).
    pub fn next_due(&self) -> Result<TickDue, WalError> {
        Ok(self.core()?.next_due())
    }

    /// Handles a message received from `from_peer`, the peer the transport
    /// authenticated. A message claiming another sender, or addressed to
    /// another node, is dropped and counted; returns whether it was stepped.
    pub fn step(&self, msg: Message, from_peer: NodeId) -> Result<bool, WalError> {
        if msg.from != from_peer {
            self.forged.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        if msg.to != self.id {
            self.misaddressed.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        self.core()?.step(msg)?;
        Ok(true)
    }

    /// Proposes `data` (leader only); returns its index.
    pub fn propose(&self, data: Vec<u8>) -> Result<u64, WalError> {
        Ok(self.core()?.propose(data)?)
    }

    /// Proposes a membership change (leader only, one pending at a time).
    pub fn propose_conf_change(&self, cc: ConfChange) -> Result<u64, WalError> {
        Ok(self.core()?.propose_conf_change(cc)?)
    }

    /// Starts an election now, if allowed.
    pub fn campaign(&self) -> Result<(), WalError> {
        Ok(self.core()?.campaign()?)
    }

    /// Transfers leadership to `to`.
    pub fn transfer_leader(&self, to: NodeId) -> Result<(), WalError> {
        self.core()?.transfer_leader(to);
        Ok(())
    }

    /// Asks for a linearizable read with id `ctx`.
    pub fn read_index(&self, ctx: Vec<u8>) -> Result<(), WalError> {
        self.core()?.read_index(ctx);
        Ok(())
    }

    /// This node's loop stalled and its driver dropped ticks.
    pub fn stalled(&self) -> Result<(), WalError> {
        self.core()?.stalled();
        Ok(())
    }

    /// Tells the followers the commit index now if no Append carried it yet.
    pub fn share_commit(&self) -> Result<(), WalError> {
        self.core()?.share_commit();
        Ok(())
    }

    /// The transport saw the connection to `peer` break.
    pub fn peer_unreachable(&self, peer: NodeId) -> Result<(), WalError> {
        self.core()?.peer_unreachable(peer);
        Ok(())
    }

    /// True when [`Consensus::ready`] would hand something out (false while
    /// a Ready is out).
    pub fn has_ready(&self) -> Result<bool, WalError> {
        Ok(!self.ready_out.load(Ordering::Acquire) && self.core()?.has_ready())
    }

    /// Takes the pending work. Persist it with [`Consensus::persist`], then
    /// advance, before taking another.
    pub fn ready(&self) -> Result<PendingReady, WalError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(WalError::Closed {
                path: self.dir.clone(),
            });
        }
        if self.ready_out.swap(true, Ordering::AcqRel) {
            return Err(WalError::ReadyOutstanding);
        }
        let rd = self.core()?.ready();
        Ok(PendingReady { rd })
    }

    /// Writes the Ready's snapshot, entries and hard state to the WAL (fsync
    /// when needed) and only then hands out what depends on them. Blocks for
    /// the I/O; call it on a WAL thread when [`PendingReady::must_sync`].
    /// An error is fatal: the node must stop.
    pub fn persist(&self, pending: PendingReady) -> Result<Persisted, WalError> {
        let rd = pending.rd;
        {
            let mut guard = self
                .wal
                .lock()
                .map_err(|_| WalError::Poisoned("a WAL write panicked".into()))?;
            let wal = guard.as_mut().ok_or_else(|| WalError::Closed {
                path: self.dir.clone(),
            })?;
            if let Some(s) = &rd.snapshot {
                wal.save_snapshot(s.clone())?;
            }
            if !rd.entries.is_empty() || rd.hard_state.is_some() {
                wal.save(rd.hard_state.as_ref(), &rd.entries)?;
            }
            if self.closed.load(Ordering::Acquire) {
                // Closed while this write ran: it finished; release the files.
                *guard = None;
            }
        }
        let marks = rd.marks();
        let mut messages = rd.early_messages;
        messages.extend(rd.messages);
        Ok(Persisted {
            messages,
            soft_state: rd.soft_state,
            hard_state: rd.hard_state,
            snapshot: rd.snapshot,
            committed_entries: rd.committed_entries,
            read_states: rd.read_states,
            marks,
        })
    }

    /// Tells the core that the Ready of `marks` was persisted and applied.
    pub fn advance(&self, marks: Marks) -> Result<(), WalError> {
        if !self.ready_out.load(Ordering::Acquire) {
            return Err(WalError::InvalidArgument(
                "advance without an outstanding Ready".into(),
            ));
        }
        self.core()?.advance_marks(marks);
        self.ready_out.store(false, Ordering::Release);
        Ok(())
    }

    /// Takes a snapshot of the application's state `data`, which reflects
    /// exactly the entries up to `applied`, and persists it (the log is
    /// compacted up to it). Refused — `WalError::Raft(SnapshotRefused)`,
    /// nothing changed — unless `applied` is the core's applied index and no
    /// snapshot from the leader is being installed. Blocks for the I/O.
    pub fn create_snapshot(&self, applied: u64, data: Vec<u8>) -> Result<Arc<Snapshot>, WalError> {
        let metadata = self.core()?.snapshot_metadata(applied)?;
        let snap = Arc::new(Snapshot { metadata, data });
        let refused = || -> WalError {
            bedrock_raft::Error::SnapshotRefused(
                "a newer snapshot from the leader was persisted meanwhile".into(),
            )
            .into()
        };
        let stager = {
            let mut guard = self.wal_guard()?;
            let wal = self.open_wal(&mut guard)?;
            if wal.snapshot().metadata.index >= applied {
                return Err(refused());
            }
            wal.snapshot_stager()?
        };
        // Written and synced without the WAL's lock: persists (appends and
        // their fsyncs) go on meanwhile; a large state's file held them for
        // its whole write and fsync. Only the rename and the compaction hold it.
        let staged = stager.stage(snap.clone());
        let mut guard = self.wal_guard()?;
        let wal = self.open_wal(&mut guard)?;
        let staged = match staged {
            Ok(staged) => staged,
            Err(e) => {
                wal.poison(&e);
                return Err(e);
            }
        };
        let installed = if wal.snapshot().metadata.index >= applied {
            wal.discard_staged(staged).and(Err(refused()))
        } else {
            wal.install_snapshot(staged)
        };
        if self.closed.load(Ordering::Acquire) {
            *guard = None;
        }
        installed?;
        Ok(snap)
    }

    fn wal_guard(&self) -> Result<MutexGuard<'_, Option<Wal>>, WalError> {
        self.wal
            .lock()
            .map_err(|_| WalError::Poisoned("a WAL write panicked".into()))
    }

    fn open_wal<'g>(&self, guard: &'g mut Option<Wal>) -> Result<&'g mut Wal, WalError> {
        guard.as_mut().ok_or_else(|| WalError::Closed {
            path: self.dir.clone(),
        })
    }

    /// Closes the WAL. When a persist is running on another thread, the
    /// files are released as soon as it finishes (its write completes);
    /// never blocks. Later calls that need the WAL fail with `Closed`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Ok(mut guard) = self.wal.try_lock() {
            *guard = None;
        }
    }

    /// True once the WAL's files are released (see [`Consensus::close`]).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
            && self.wal.try_lock().is_ok_and(|guard| guard.is_none())
    }

    /// The core's state.
    pub fn status(&self) -> Result<Status, WalError> {
        Ok(self.core()?.status())
    }

    /// Messages dropped because their sender was not the authenticated peer.
    pub fn forged_dropped(&self) -> u64 {
        self.forged.load(Ordering::Relaxed)
    }

    /// Messages dropped because they were addressed to another node.
    pub fn misaddressed_dropped(&self) -> u64 {
        self.misaddressed.load(Ordering::Relaxed)
    }

    /// fsync/fdatasync calls issued by the WAL so far.
    pub fn sync_count(&self) -> u64 {
        self.sync_count.load(Ordering::Relaxed)
    }

    /// Test hook: the WAL's next sync fails as a disk error would.
    #[doc(hidden)]
    pub fn inject_sync_failure(&self) -> Result<(), WalError> {
        let mut guard = self
            .wal
            .lock()
            .map_err(|_| WalError::Poisoned("a WAL write panicked".into()))?;
        if let Some(w) = guard.as_mut() {
            w.inject_sync_failure();
        }
        Ok(())
    }
}
