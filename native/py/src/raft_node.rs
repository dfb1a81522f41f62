//! `RaftNode` and `Ready`: the Python face of `bedrock_raft::raw_node`.
//!
//! The driver loop, in the order the core requires:
//!
//! ```text
//! rd = node.ready()
//! wal.save(rd)                      # persist BEFORE sending (GIL released, fsync)
//! for to, data in rd.messages: send(to, data)
//! for e in rd.committed_entries: apply(e)
//! node.advance(rd)
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};

use bedrock_raft::config::Config;
use bedrock_raft::raw_node::{RawNode, Ready};
use bedrock_raft::status::Role;
use bedrock_raft::{ConfChange, Message, PersistedState};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::errors::{panic_message, raft_err, MessageDecodeError, NativePanicError};
use crate::types::{PyEntry, PyHardState, PySnapshot};
use crate::wal::PyWal;

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Follower => "follower",
        Role::PreCandidate => "pre_candidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

/// What the core asks the driver to do next; see the module docs for the order.
#[pyclass(module = "bedrock_cp_native", name = "Ready")]
pub struct PyReady {
    /// The core's Ready; `None` once passed to `advance`.
    pub inner: Option<Ready>,
}

impl PyReady {
    /// The Ready, or an error if it was already advanced.
    pub fn get(&self) -> PyResult<&Ready> {
        self.inner
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("this Ready was already passed to advance()"))
    }
}

#[pymethods]
impl PyReady {
    /// Messages to send AFTER persisting: a list of (to, encoded bytes).
    #[getter]
    fn messages<'py>(&self, py: Python<'py>) -> PyResult<Vec<(u64, Bound<'py, PyBytes>)>> {
        Ok(self
            .get()?
            .messages
            .iter()
            .map(|m| (m.to, PyBytes::new(py, &m.encode())))
            .collect())
    }

    /// Entries to persist BEFORE sending messages.
    #[getter]
    fn entries(&self, py: Python<'_>) -> PyResult<Vec<PyEntry>> {
        Ok(self
            .get()?
            .entries
            .iter()
            .map(|e| PyEntry::from_entry(py, e))
            .collect())
    }

    /// Committed entries to apply, in order.
    #[getter]
    fn committed_entries(&self, py: Python<'_>) -> PyResult<Vec<PyEntry>> {
        Ok(self
            .get()?
            .committed_entries
            .iter()
            .map(|e| PyEntry::from_entry(py, e))
            .collect())
    }

    /// New hard state to persist, if it changed.
    #[getter]
    fn hard_state(&self) -> PyResult<Option<PyHardState>> {
        Ok(self.get()?.hard_state.map(PyHardState::from))
    }

    /// (leader_id, role) if either changed since the last Ready.
    #[getter]
    fn soft_state(&self) -> PyResult<Option<(u64, &'static str)>> {
        Ok(self
            .get()?
            .soft_state
            .as_ref()
            .map(|s| (s.leader_id, role_name(s.role))))
    }

    /// A snapshot received from the leader: persist it and restore from it.
    #[getter]
    fn snapshot(&self) -> PyResult<Option<PySnapshot>> {
        Ok(self
            .get()?
            .snapshot
            .as_ref()
            .map(|s| PySnapshot { inner: s.clone() }))
    }

    /// Confirmed reads: (read index, request context).
    #[getter]
    fn read_states<'py>(&self, py: Python<'py>) -> PyResult<Vec<(u64, Bound<'py, PyBytes>)>> {
        Ok(self
            .get()?
            .read_states
            .iter()
            .map(|r| (r.index, PyBytes::new(py, &r.request_ctx)))
            .collect())
    }

    /// True when this Ready carries anything to persist (entries, hard
    /// state or a snapshot); False lets a driver skip the WAL entirely.
    #[getter]
    fn persist_needed(&self) -> PyResult<bool> {
        let r = self.get()?;
        Ok(!r.entries.is_empty() || r.hard_state.is_some() || r.snapshot.is_some())
    }

    /// Number of committed entries to apply (without building them).
    #[getter]
    fn committed_count(&self) -> PyResult<usize> {
        Ok(self.get()?.committed_entries.len())
    }

    /// True when persisting this Ready needs an fsync.
    #[getter]
    fn must_sync(&self) -> PyResult<bool> {
        Ok(self.get()?.must_sync)
    }

    fn __repr__(&self) -> String {
        match &self.inner {
            None => "Ready(<advanced>)".to_string(),
            Some(r) => format!(
                "Ready(entries={}, committed={}, messages={}, hard_state={:?}, snapshot={}, must_sync={})",
                r.entries.len(),
                r.committed_entries.len(),
                r.messages.len(),
                r.hard_state,
                r.snapshot.is_some(),
                r.must_sync
            ),
        }
    }
}

/// One Raft group member. Not thread-safe by design: one owner drives it.
#[pyclass(module = "bedrock_cp_native", name = "RaftNode")]
pub struct PyRaftNode {
    node: RawNode,
    /// Set when a call panicked inside the core: the node state is no longer trusted.
    poisoned: Option<String>,
    /// True between ready() and advance().
    outstanding: bool,
}

impl PyRaftNode {
    /// Runs `f` on the core, turning a panic into `NativePanicError` and
    /// refusing every later call (the core's invariants may be broken).
    fn run<T>(&mut self, f: impl FnOnce(&mut RawNode) -> PyResult<T>) -> PyResult<T> {
        if let Some(p) = &self.poisoned {
            return Err(NativePanicError::new_err(format!(
                "RaftNode is unusable after an internal error: {p}"
            )));
        }
        let node = &mut self.node;
        match catch_unwind(AssertUnwindSafe(|| f(node))) {
            Ok(r) => r,
            Err(payload) => {
                let msg = panic_message(payload);
                self.poisoned = Some(msg.clone());
                Err(NativePanicError::new_err(format!(
                    "internal error in the Raft core: {msg}"
                )))
            }
        }
    }
}

#[pymethods]
impl PyRaftNode {
    /// A node with id `id`. `voters` is the initial membership used when
    /// there is no snapshot (pass [] for a node joining an existing group).
    /// With `wal`, the node restarts from what that WAL recovered.
    #[new]
    #[pyo3(signature = (
        id, voters, wal = None, *, election_tick = 20, heartbeat_tick = 5,
        pre_vote = true, check_quorum = true, max_size_per_msg = 1 << 20,
        max_inflight_msgs = 256, max_committed_size_per_ready = 16 << 20, seed = 0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: u64,
        voters: Vec<u64>,
        wal: Option<PyRefMut<'_, PyWal>>,
        election_tick: usize,
        heartbeat_tick: usize,
        pre_vote: bool,
        check_quorum: bool,
        max_size_per_msg: u64,
        max_inflight_msgs: usize,
        max_committed_size_per_ready: u64,
        seed: u64,
    ) -> PyResult<Self> {
        let mut cfg = Config::new(id);
        cfg.election_tick = election_tick;
        cfg.heartbeat_tick = heartbeat_tick;
        cfg.pre_vote = pre_vote;
        cfg.check_quorum = check_quorum;
        cfg.max_size_per_msg = max_size_per_msg;
        cfg.max_inflight_msgs = max_inflight_msgs;
        cfg.max_committed_size_per_ready = max_committed_size_per_ready;
        cfg.seed = seed;
        let state = match wal {
            None => PersistedState::default(),
            Some(mut w) => w.take_state()?,
        };
        let node = catch_unwind(AssertUnwindSafe(|| RawNode::new(&cfg, state, &voters)))
            .map_err(|p| {
                NativePanicError::new_err(format!(
                    "internal error creating RaftNode: {}",
                    panic_message(p)
                ))
            })?
            .map_err(raft_err)?;
        Ok(PyRaftNode {
            node,
            poisoned: None,
            outstanding: false,
        })
    }

    /// Advance logical time by one tick.
    fn tick(&mut self) -> PyResult<()> {
        self.run(|n| {
            n.tick();
            Ok(())
        })
    }

    /// Feed one encoded message from a peer. Undecodable bytes raise
    /// `MessageDecodeError` and leave the node untouched.
    fn step(&mut self, data: &[u8]) -> PyResult<()> {
        let msg = Message::decode(data).map_err(|e| MessageDecodeError::new_err(e.to_string()))?;
        self.run(|n| n.step(msg).map_err(raft_err))
    }

    /// Propose `data`; returns the log index it was appended at (leader only).
    fn propose(&mut self, data: &[u8]) -> PyResult<u64> {
        let data = data.to_vec();
        self.run(|n| n.propose(data).map_err(raft_err))
    }

    /// Propose a membership change: kind is "add" or "remove".
    fn propose_conf_change(&mut self, kind: &str, node_id: u64) -> PyResult<u64> {
        let cc = match kind {
            "add" => ConfChange::AddNode(node_id),
            "remove" => ConfChange::RemoveNode(node_id),
            other => {
                return Err(PyValueError::new_err(format!(
                    "conf change kind must be 'add' or 'remove', not {other:?}"
                )))
            }
        };
        self.run(|n| n.propose_conf_change(cc).map_err(raft_err))
    }

    /// Start an election now.
    fn campaign(&mut self) -> PyResult<()> {
        self.run(|n| n.campaign().map_err(raft_err))
    }

    /// Ask the leader to hand leadership to `to`.
    fn transfer_leader(&mut self, to: u64) -> PyResult<()> {
        self.run(|n| {
            n.transfer_leader(to);
            Ok(())
        })
    }

    /// Request a linearizable read; the answer arrives in `Ready.read_states`.
    fn read_index(&mut self, ctx: &[u8]) -> PyResult<()> {
        let ctx = ctx.to_vec();
        self.run(|n| {
            n.read_index(ctx);
            Ok(())
        })
    }

    /// The transport saw the connection to `peer` break (EOF/RST). If `peer`
    /// is this follower's leader, a pre-vote starts at once.
    fn peer_unreachable(&mut self, peer: u64) -> PyResult<()> {
        self.run(|n| {
            n.peer_unreachable(peer);
            Ok(())
        })
    }

    /// True when `ready()` has something to hand out.
    fn has_ready(&mut self) -> PyResult<bool> {
        self.run(|n| Ok(n.has_ready()))
    }

    /// Take the pending work. Call `advance()` with it before the next `ready()`.
    fn ready(&mut self) -> PyResult<PyReady> {
        if self.outstanding {
            return Err(PyValueError::new_err(
                "call advance() with the previous Ready before taking another",
            ));
        }
        let rd = self.run(|n| Ok(n.ready()))?;
        self.outstanding = true;
        Ok(PyReady { inner: Some(rd) })
    }

    /// Tell the core that `ready` was persisted, sent and applied.
    fn advance(&mut self, ready: &mut PyReady) -> PyResult<()> {
        let rd = ready
            .inner
            .take()
            .ok_or_else(|| PyValueError::new_err("this Ready was already passed to advance()"))?;
        self.outstanding = false;
        self.run(|n| {
            n.advance(rd);
            Ok(())
        })
    }

    /// Snapshot at the applied index with `data` as the state; the in-memory
    /// log is compacted up to it. Persist it with `Wal.save_snapshot`.
    fn create_snapshot(&mut self, data: &[u8]) -> PyResult<PySnapshot> {
        let data = data.to_vec();
        self.run(|n| {
            n.create_snapshot(data)
                .map(|inner| PySnapshot { inner })
                .map_err(raft_err)
        })
    }

    /// A dict describing the node (term, role, leader, indexes, progress).
    fn status<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let st = self.run(|n| Ok(n.status()))?;
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
        d.set_item("voters", st.voters.clone())?;
        d.set_item("pending_conf_index", st.pending_conf_index)?;
        d.set_item("lead_transferee", st.lead_transferee)?;
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

    /// Test hook: panic inside the core's call boundary, to prove that a
    /// panic surfaces as `NativePanicError` and poisons the node.
    fn _inject_panic(&mut self) -> PyResult<()> {
        self.run(|_| panic!("injected panic (test hook)"))
    }

    /// This node's id.
    #[getter]
    fn id(&self) -> u64 {
        self.node.id()
    }

    /// Current term.
    #[getter]
    fn term(&mut self) -> PyResult<u64> {
        self.run(|n| Ok(n.status().hard_state.term))
    }

    /// Known leader id (0 if none).
    #[getter]
    fn leader_id(&mut self) -> PyResult<u64> {
        self.run(|n| Ok(n.status().soft_state.leader_id))
    }

    /// "follower", "pre_candidate", "candidate" or "leader".
    #[getter]
    fn role(&mut self) -> PyResult<&'static str> {
        self.run(|n| Ok(role_name(n.status().soft_state.role)))
    }

    fn __repr__(&mut self) -> String {
        match self.run(|n| Ok(n.status())) {
            Ok(st) => format!(
                "RaftNode(id={}, role={}, term={}, leader={}, commit={}, applied={})",
                st.id,
                role_name(st.soft_state.role),
                st.hard_state.term,
                st.soft_state.leader_id,
                st.hard_state.commit,
                st.applied
            ),
            Err(_) => format!("RaftNode(id={}, <poisoned>)", self.node.id()),
        }
    }
}
