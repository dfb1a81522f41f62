//! `Consensus`, `Ready` and `Persisted`: the Python face of
//! `bedrock_wal::Consensus`, the Raft core and its WAL in one object.
//!
//! The driver loop, in the only order it allows:
//!
//! ```text
//! rd = c.ready()                 # nothing in it can be sent
//! out = c.persist(rd)            # WAL write + fsync, GIL released (a WAL thread)
//! for to, data in out.messages: send(to, data)
//! restore(out.snapshot); for e in out.committed_entries: apply(e)
//! c.advance(out)
//! for index, ctx in out.read_states: serve once applied up to index
//! ```
//!
//! Every method but `persist`, `create_snapshot` and `open` only takes the
//! core's lock, which a persist in flight does not hold: the event loop keeps
//! stepping messages and taking proposals during an fsync. A driver on an
//! event loop sends `rd.take_early_messages()` first and hands the Ready to
//! the node's own WAL thread (`persist_start`), which signals `persist_fd`
//! when `persist_done()` has the result: no executor, no GIL on that thread.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bedrock_raft::config::Config;
use bedrock_raft::status::Role;
use bedrock_raft::{ConfChange, Marks, Message};
use bedrock_wal::{Consensus, PendingReady, Persisted, WalError as WalErr, WalOptions};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::disk::{disk_of, PyMemDisk};
use crate::errors::{guarded, wal_err, MessageDecodeError, NativePanicError};
use crate::io_thread::IoThread;
use crate::types::{PyEntry, PyHardState, PySnapshot};

fn role_name(r: Role) -> &'static str {
    r.as_str()
}

/// A Ready taken from the core, not yet persisted. It only tells whether
/// persisting it needs an fsync; its messages come out of `persist`.
#[pyclass(module = "bedrock_cp_native", name = "Ready")]
pub struct PyReady {
    inner: Option<PendingReady>,
}

#[pymethods]
impl PyReady {
    /// True when persisting needs an fsync (run `persist` on a WAL thread).
    #[getter]
    fn must_sync(&self) -> PyResult<bool> {
        Ok(self.get()?.must_sync())
    }

    /// True when persisting writes anything at all.
    #[getter]
    fn persist_needed(&self) -> PyResult<bool> {
        Ok(self.get()?.persist_needed())
    }

    /// The messages that may be sent before (or while) this Ready is
    /// persisted, as (to, encoded bytes): the leader's Appends and
    /// heartbeats in a term already durable. Taken once; those not taken go
    /// out with `Persisted.messages`.
    fn take_early_messages<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<Vec<(u64, Bound<'py, PyBytes>)>> {
        let rd = self
            .inner
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("this Ready was already persisted"))?;
        Ok(rd
            .take_early_messages()
            .iter()
            .map(|m| (m.to, PyBytes::new(py, &m.encode())))
            .collect())
    }

    fn __repr__(&self) -> String {
        match &self.inner {
            None => "Ready(<persisted>)".to_string(),
            Some(r) => format!("Ready(must_sync={})", r.must_sync()),
        }
    }
}

impl PyReady {
    fn get(&self) -> PyResult<&PendingReady> {
        self.inner
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("this Ready was already persisted"))
    }
}

/// What a persisted Ready allows, in order: send `messages`; restore
/// `snapshot`, apply `committed_entries`; `advance`; serve `read_states`.
#[pyclass(module = "bedrock_cp_native", name = "Persisted")]
pub struct PyPersisted {
    inner: Persisted,
    /// Taken by `advance`.
    marks: Option<Marks>,
}

#[pymethods]
impl PyPersisted {
    /// Messages to send: a list of (to, encoded bytes).
    #[getter]
    fn messages<'py>(&self, py: Python<'py>) -> Vec<(u64, Bound<'py, PyBytes>)> {
        self.inner
            .messages
            .iter()
            .map(|m| (m.to, PyBytes::new(py, &m.encode())))
            .collect()
    }

    /// Committed entries to apply, in order.
    #[getter]
    fn committed_entries(&self, py: Python<'_>) -> Vec<PyEntry> {
        self.inner
            .committed_entries
            .iter()
            .map(|e| PyEntry::from_entry(py, e))
            .collect()
    }

    /// Number of committed entries (without building them).
    #[getter]
    fn committed_count(&self) -> usize {
        self.inner.committed_entries.len()
    }

    /// The hard state persisted, if it changed.
    #[getter]
    fn hard_state(&self) -> Option<PyHardState> {
        self.inner.hard_state.map(PyHardState::from)
    }

    /// (leader_id, role) if either changed.
    #[getter]
    fn soft_state(&self) -> Option<(u64, &'static str)> {
        self.inner
            .soft_state
            .as_ref()
            .map(|s| (s.leader_id, role_name(s.role)))
    }

    /// A snapshot received from the leader, now durable: restore from it
    /// before applying `committed_entries`.
    #[getter]
    fn snapshot(&self) -> Option<PySnapshot> {
        self.inner
            .snapshot
            .as_ref()
            .map(|s| PySnapshot { inner: s.clone() })
    }

    /// Confirmed reads: (read index, request context).
    #[getter]
    fn read_states<'py>(&self, py: Python<'py>) -> Vec<(u64, Bound<'py, PyBytes>)> {
        self.inner
            .read_states
            .iter()
            .map(|r| (r.index, PyBytes::new(py, &r.request_ctx)))
            .collect()
    }

    fn __repr__(&self) -> String {
        let p = &self.inner;
        format!(
            "Persisted(messages={}, committed={}, hard_state={:?}, snapshot={})",
            p.messages.len(),
            p.committed_entries.len(),
            p.hard_state,
            p.snapshot.is_some()
        )
    }
}

/// One member of a Raft group: the core over its WAL.
#[pyclass(module = "bedrock_cp_native", name = "Consensus", frozen)]
pub struct PyConsensus {
    c: Arc<Consensus>,
    path: PathBuf,
    /// The WAL thread, started by the first `persist_start` or `persist_fd`.
    persister: OnceLock<Persister>,
}

/// The WAL thread of a `Consensus`: persists one Ready at a time.
type Persister = IoThread<PendingReady, Result<Persisted, WalErr>>;

impl PyConsensus {
    fn persister(&self) -> PyResult<&Persister> {
        if let Some(p) = self.persister.get() {
            return Ok(p);
        }
        let c = self.c.clone();
        let p =
            Persister::start(format!("wal-{}", c.id()), move |rd| c.persist(rd)).map_err(|e| {
                crate::errors::WalError::new_err(format!("cannot start the WAL thread: {e}"))
            })?;
        Ok(self.persister.get_or_init(|| p))
    }
}

#[pymethods]
impl PyConsensus {
    /// Open the WAL in `path` (on `disk` when given) and the core over it.
    /// `voters` bootstraps a fresh founding member (pass [] to join an
    /// existing group); a recovered node's membership comes from its log.
    /// Restore the state machine from `recovered_snapshot` first.
    #[staticmethod]
    #[pyo3(signature = (
        path, cluster_id, node_id, voters, *, disk = None, sync = true,
        segment_bytes = 64 << 20, election_tick = 20, heartbeat_tick = 5,
        pre_vote = true, check_quorum = true, max_size_per_msg = 1 << 20,
        max_inflight_msgs = 256, max_committed_size_per_ready = 16 << 20,
        max_snapshot_chunk = 1 << 20, max_entry_bytes = 12 << 20, seed = 0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        cluster_id: String,
        node_id: u64,
        voters: Vec<u64>,
        disk: Option<PyRef<'_, PyMemDisk>>,
        sync: bool,
        segment_bytes: u64,
        election_tick: usize,
        heartbeat_tick: usize,
        pre_vote: bool,
        check_quorum: bool,
        max_size_per_msg: u64,
        max_inflight_msgs: usize,
        max_committed_size_per_ready: u64,
        max_snapshot_chunk: u64,
        max_entry_bytes: u64,
        seed: u64,
    ) -> PyResult<Self> {
        let mut cfg = Config::new(node_id);
        cfg.election_tick = election_tick;
        cfg.heartbeat_tick = heartbeat_tick;
        cfg.pre_vote = pre_vote;
        cfg.check_quorum = check_quorum;
        cfg.max_size_per_msg = max_size_per_msg;
        cfg.max_inflight_msgs = max_inflight_msgs;
        cfg.max_committed_size_per_ready = max_committed_size_per_ready;
        cfg.max_snapshot_chunk = max_snapshot_chunk;
        cfg.max_entry_bytes = max_entry_bytes;
        cfg.seed = seed;
        let mut opts = WalOptions::new(cluster_id, node_id);
        opts.sync = sync;
        opts.segment_bytes = segment_bytes;
        let disk = disk_of(disk.as_deref());
        let dir = path.clone();
        let c = py.detach(|| {
            guarded("the Raft core", || {
                Consensus::open(disk, &dir, opts, &cfg, &voters)
            })
        })?;
        Ok(PyConsensus {
            c: Arc::new(c),
            path,
            persister: OnceLock::new(),
        })
    }

    /// The snapshot the log started from when opened, if any.
    #[getter]
    fn recovered_snapshot(&self) -> Option<PySnapshot> {
        self.c
            .recovered_snapshot()
            .map(|inner| PySnapshot { inner })
    }

    /// Advance logical time by one tick.
    fn tick(&self) -> PyResult<()> {
        guarded("the Raft core", || self.c.tick())
    }

    /// The next tick that may do more than count: `(ticks, gives_up)`. The
    /// `ticks - 1` ticks before it only advance counters, so a driver may
    /// sleep until then and deliver them late, before its next input;
    /// `gives_up` when that tick may give up on the peers (see the runner).
    fn next_due(&self) -> PyResult<(usize, bool)> {
        let due = guarded("the Raft core", || self.c.next_due())?;
        Ok((due.ticks, due.gives_up))
    }

    /// Feed one encoded message received on `from_peer`'s authenticated
    /// connection. Returns False when it was dropped (its sender is not
    /// `from_peer`, or it is for another node; counted in `status()`).
    /// Undecodable bytes raise `MessageDecodeError`.
    fn step(&self, data: &[u8], from_peer: u64) -> PyResult<bool> {
        let msg = Message::decode(data).map_err(|e| MessageDecodeError::new_err(e.to_string()))?;
        guarded("the Raft core", || self.c.step(msg, from_peer))
    }

    /// Propose `data`; returns the log index it was appended at (leader only).
    fn propose(&self, data: &[u8]) -> PyResult<u64> {
        let data = data.to_vec();
        guarded("the Raft core", || self.c.propose(data))
    }

    /// Propose a membership change: kind is "add" (a voter, or promote a
    /// learner), "add_learner" or "remove".
    fn propose_conf_change(&self, kind: &str, node_id: u64) -> PyResult<u64> {
        let cc = match kind {
            "add" => ConfChange::AddNode(node_id),
            "add_learner" => ConfChange::AddLearner(node_id),
            "remove" => ConfChange::RemoveNode(node_id),
            other => {
                return Err(PyValueError::new_err(format!(
                    "conf change kind must be 'add', 'add_learner' or 'remove', not {other:?}"
                )))
            }
        };
        guarded("the Raft core", || self.c.propose_conf_change(cc))
    }

    /// Start an election now (if allowed).
    fn campaign(&self) -> PyResult<()> {
        guarded("the Raft core", || self.c.campaign())
    }

    /// Ask the leader to hand leadership to `to`.
    fn transfer_leader(&self, to: u64) -> PyResult<()> {
        guarded("the Raft core", || self.c.transfer_leader(to))
    }

    /// Request a linearizable read; the answer arrives in `Persisted.read_states`.
    fn read_index(&self, ctx: &[u8]) -> PyResult<()> {
        let ctx = ctx.to_vec();
        guarded("the Raft core", || self.c.read_index(ctx))
    }

    /// This node's loop stalled and the driver dropped ticks: the heartbeat
    /// gaps running now span the stall and are not learned.
    fn stalled(&self) -> PyResult<()> {
        guarded("the Raft core", || self.c.stalled())
    }

    /// As leader, tell the followers the commit index now rather than with the
    /// next Append or tick (an entry their own readers wait for committed).
    fn share_commit(&self) -> PyResult<()> {
        guarded("the Raft core", || self.c.share_commit())
    }

    /// The transport saw the connection to `peer` break (EOF/RST).
    fn peer_unreachable(&self, peer: u64) -> PyResult<()> {
        guarded("the Raft core", || self.c.peer_unreachable(peer))
    }

    /// True when `ready()` has something to hand out.
    fn has_ready(&self) -> PyResult<bool> {
        guarded("the Raft core", || self.c.has_ready())
    }

    /// Take the pending work. Persist it, then advance, before the next one.
    fn ready(&self) -> PyResult<PyReady> {
        let rd = guarded("the Raft core", || self.c.ready())?;
        Ok(PyReady { inner: Some(rd) })
    }

    /// Write `ready`'s snapshot, entries and hard state (fsync when
    /// `ready.must_sync`), with the GIL released; then hand out what may
    /// happen after persisting. An error is fatal for the node.
    fn persist(&self, py: Python<'_>, ready: &Bound<'_, PyReady>) -> PyResult<PyPersisted> {
        let rd = ready
            .borrow_mut()
            .inner
            .take()
            .ok_or_else(|| PyValueError::new_err("this Ready was already persisted"))?;
        let p = py.detach(|| guarded("the WAL", || self.c.persist(rd)))?;
        let marks = Some(p.marks());
        Ok(PyPersisted { inner: p, marks })
    }

    /// Hand `ready` to this node's WAL thread, which persists it (fsync
    /// included) without the GIL; the event loop keeps stepping and
    /// proposing meanwhile. When it is done, `persist_fd` becomes readable
    /// and `persist_done()` returns the `Persisted`.
    fn persist_start(&self, ready: &Bound<'_, PyReady>) -> PyResult<()> {
        let persister = self.persister()?;
        let rd = ready
            .borrow_mut()
            .inner
            .take()
            .ok_or_else(|| PyValueError::new_err("this Ready was already persisted"))?;
        if !persister.submit(rd) {
            return Err(crate::errors::WalError::new_err(format!(
                "the WAL of {} is closed",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// A file descriptor that becomes readable when a persist started with
    /// `persist_start` finished (watch it with `loop.add_reader`). Valid
    /// for the life of this object.
    #[getter]
    fn persist_fd(&self) -> PyResult<i32> {
        Ok(self.persister()?.fd())
    }

    /// The `Persisted` of the Ready handed to `persist_start`, or None while
    /// it is still being written. A WAL failure is raised here (fatal for
    /// the node).
    fn persist_done(&self) -> PyResult<Option<PyPersisted>> {
        let Some(p) = self.persister.get() else {
            return Ok(None);
        };
        match p.take() {
            None => Ok(None),
            Some(Ok(Ok(p))) => {
                let marks = Some(p.marks());
                Ok(Some(PyPersisted { inner: p, marks }))
            }
            Some(Ok(Err(e))) => Err(wal_err(e)),
            Some(Err(m)) => Err(NativePanicError::new_err(format!(
                "internal error in the WAL: {m}"
            ))),
        }
    }

    /// Tell the core that `persisted` was sent and applied.
    fn advance(&self, persisted: &Bound<'_, PyPersisted>) -> PyResult<()> {
        let marks = persisted
            .borrow_mut()
            .marks
            .take()
            .ok_or_else(|| PyValueError::new_err("this Persisted was already advanced"))?;
        guarded("the Raft core", || self.c.advance(marks))
    }

    /// Snapshot `data`, the state machine after applying exactly the entries
    /// up to `applied_index`, and persist it (GIL released); the log is
    /// compacted up to it. Raises `SnapshotRefusedError` (nothing changed)
    /// unless `applied_index` is what the core handed out and was advanced
    /// to, and no snapshot from the leader is being installed.
    fn create_snapshot(
        &self,
        py: Python<'_>,
        applied_index: u64,
        data: &[u8],
    ) -> PyResult<PySnapshot> {
        let data = data.to_vec();
        let snap =
            py.detach(|| guarded("the WAL", || self.c.create_snapshot(applied_index, data)))?;
        Ok(PySnapshot { inner: snap })
    }

    /// A dict describing the node (term, role, leader, indexes, membership,
    /// progress, counters).
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let st = guarded("the Raft core", || self.c.status())?;
        let d = PyDict::new(py);
        d.set_item("id", st.id)?;
        d.set_item("term", st.hard_state.term)?;
        d.set_item("vote", st.hard_state.vote)?;
        d.set_item("commit", st.hard_state.commit)?;
        d.set_item("leader_id", st.soft_state.leader_id)?;
        d.set_item("role", role_name(st.soft_state.role))?;
        d.set_item("applied", st.applied)?;
        d.set_item("first_index", st.first_index)?;
        d.set_item("last_index", st.last_index)?;
        d.set_item("persisted", st.persisted)?;
        d.set_item("voters", st.voters.clone())?;
        d.set_item("learners", st.learners.clone())?;
        d.set_item("pending_conf_index", st.pending_conf_index)?;
        d.set_item("lead_transferee", st.lead_transferee)?;
        d.set_item("incoming_snapshot_bytes", st.incoming_snapshot_bytes)?;
        d.set_item("leader_window", st.leader_window)?;
        d.set_item("forged_dropped", self.c.forged_dropped())?;
        d.set_item("misaddressed_dropped", self.c.misaddressed_dropped())?;
        d.set_item("sync_count", self.c.sync_count())?;
        let progress = PyList::empty(py);
        for p in &st.progress {
            let pd = PyDict::new(py);
            pd.set_item("id", p.id)?;
            pd.set_item("match", p.matched)?;
            pd.set_item("next", p.next)?;
            pd.set_item("state", p.state)?;
            pd.set_item("recent_active", p.recent_active)?;
            progress.append(pd)?;
        }
        d.set_item("progress", progress)?;
        Ok(d)
    }

    /// This node's id.
    #[getter]
    fn id(&self) -> u64 {
        self.c.id()
    }

    /// Current term.
    #[getter]
    fn term(&self) -> PyResult<u64> {
        guarded("the Raft core", || Ok(self.c.status()?.hard_state.term))
    }

    /// Known leader id (0 if none).
    #[getter]
    fn leader_id(&self) -> PyResult<u64> {
        guarded("the Raft core", || {
            Ok(self.c.status()?.soft_state.leader_id)
        })
    }

    /// "follower", "pre_candidate", "candidate" or "leader".
    #[getter]
    fn role(&self) -> PyResult<&'static str> {
        guarded("the Raft core", || {
            Ok(role_name(self.c.status()?.soft_state.role))
        })
    }

    /// Number of fsync/fdatasync calls the WAL issued.
    #[getter]
    fn sync_count(&self) -> u64 {
        self.c.sync_count()
    }

    /// The WAL directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Close the WAL; never blocks. When a `persist` runs on another thread
    /// it finishes its write and then releases the files (see `closed`).
    fn close(&self) {
        if let Some(p) = self.persister.get() {
            p.close();
        }
        self.c.close();
    }

    /// True once the WAL's files are released.
    #[getter]
    fn closed(&self) -> bool {
        self.c.is_closed()
    }

    /// Test hook: panic inside the core's lock, to prove that a panic
    /// surfaces as `NativePanicError` and poisons the object.
    fn _inject_panic(&self) -> PyResult<()> {
        guarded("the Raft core", || {
            let _core = self.c.raw();
            panic!("injected panic (test hook)")
        })
    }

    /// Test hook: make the WAL's next fsync fail as a disk error would.
    fn _inject_sync_failure(&self) -> PyResult<()> {
        guarded("the WAL", || self.c.inject_sync_failure())
    }

    fn __repr__(&self) -> String {
        match self.c.status() {
            Ok(st) => format!(
                "Consensus(id={}, role={}, term={}, leader={}, commit={}, applied={})",
                st.id,
                role_name(st.soft_state.role),
                st.hard_state.term,
                st.soft_state.leader_id,
                st.hard_state.commit,
                st.applied
            ),
            Err(_) => format!("Consensus(id={}, <poisoned>)", self.c.id()),
        }
    }
}
