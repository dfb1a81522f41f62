//! Python views of the core's plain data: entries, hard state, snapshots.

use std::sync::Arc;

use bedrock_raft::{
    ConfChange, ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// One log entry as Python sees it. `kind` is "normal" or "conf_change".
#[pyclass(module = "bedrock_cp_native", name = "Entry", frozen)]
pub struct PyEntry {
    /// Log index.
    #[pyo3(get)]
    pub index: u64,
    /// Term of the leader that created it.
    #[pyo3(get)]
    pub term: u64,
    /// True for a membership change.
    pub conf: bool,
    /// Payload.
    #[pyo3(get)]
    pub data: Py<PyBytes>,
}

impl PyEntry {
    /// Copies a core entry into a Python object.
    pub fn from_entry(py: Python<'_>, e: &Entry) -> PyEntry {
        PyEntry {
            index: e.index,
            term: e.term,
            conf: e.entry_type == EntryType::ConfChange,
            data: PyBytes::new(py, &e.data).unbind(),
        }
    }

    /// Copies this entry back into the core's type.
    pub fn to_entry(&self, py: Python<'_>) -> Entry {
        Entry {
            term: self.term,
            index: self.index,
            entry_type: if self.conf {
                EntryType::ConfChange
            } else {
                EntryType::Normal
            },
            data: self.data.as_bytes(py).to_vec(),
        }
    }
}

#[pymethods]
impl PyEntry {
    #[new]
    #[pyo3(signature = (index, term, data, kind = "normal"))]
    fn new(py: Python<'_>, index: u64, term: u64, data: &[u8], kind: &str) -> PyResult<Self> {
        let conf = match kind {
            "normal" => false,
            "conf_change" => true,
            other => {
                return Err(PyValueError::new_err(format!(
                    "entry kind must be 'normal' or 'conf_change', not {other:?}"
                )))
            }
        };
        Ok(PyEntry {
            index,
            term,
            conf,
            data: PyBytes::new(py, data).unbind(),
        })
    }

    /// "normal" or "conf_change".
    #[getter]
    fn kind(&self) -> &'static str {
        if self.conf {
            "conf_change"
        } else {
            "normal"
        }
    }

    /// For a membership change: ("add" | "add_learner" | "remove", node_id);
    /// otherwise None.
    #[getter]
    fn conf_change(&self, py: Python<'_>) -> PyResult<Option<(&'static str, u64)>> {
        if !self.conf {
            return Ok(None);
        }
        let cc = ConfChange::decode(self.data.as_bytes(py))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Some(match cc {
            ConfChange::AddNode(id) => ("add", id),
            ConfChange::RemoveNode(id) => ("remove", id),
            ConfChange::AddLearner(id) => ("add_learner", id),
        }))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Entry(index={}, term={}, kind={:?}, data=<{} bytes>)",
            self.index,
            self.term,
            self.kind(),
            self.data.as_bytes(py).len()
        )
    }
}

/// Term, vote and commit index: what must be durable before replying.
#[pyclass(module = "bedrock_cp_native", name = "HardState", frozen, eq)]
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct PyHardState {
    /// Current term.
    #[pyo3(get)]
    pub term: u64,
    /// Vote cast in `term` (0 = none).
    #[pyo3(get)]
    pub vote: u64,
    /// Commit index.
    #[pyo3(get)]
    pub commit: u64,
}

impl From<HardState> for PyHardState {
    fn from(h: HardState) -> Self {
        PyHardState {
            term: h.term,
            vote: h.vote,
            commit: h.commit,
        }
    }
}

impl From<PyHardState> for HardState {
    fn from(h: PyHardState) -> Self {
        HardState {
            term: h.term,
            vote: h.vote,
            commit: h.commit,
        }
    }
}

#[pymethods]
impl PyHardState {
    #[new]
    #[pyo3(signature = (term = 0, vote = 0, commit = 0))]
    fn new(term: u64, vote: u64, commit: u64) -> Self {
        PyHardState { term, vote, commit }
    }

    fn __repr__(&self) -> String {
        format!(
            "HardState(term={}, vote={}, commit={})",
            self.term, self.vote, self.commit
        )
    }
}

/// A state-machine snapshot with its log position and membership.
#[pyclass(module = "bedrock_cp_native", name = "Snapshot", frozen)]
pub struct PySnapshot {
    /// The core's snapshot (shared: it may be large).
    pub inner: Arc<Snapshot>,
}

#[pymethods]
impl PySnapshot {
    /// A snapshot of `data`, the state after applying everything up to
    /// `index` (whose entry has `term`), with that membership.
    #[new]
    #[pyo3(signature = (index, term, voters, data, learners = Vec::new()))]
    fn new(index: u64, term: u64, voters: Vec<u64>, data: &[u8], learners: Vec<u64>) -> Self {
        PySnapshot {
            inner: Arc::new(Snapshot {
                metadata: SnapshotMetadata {
                    index,
                    term,
                    conf_state: ConfState::with_learners(voters, learners),
                },
                data: data.to_vec(),
            }),
        }
    }

    /// Last log index the snapshot covers.
    #[getter]
    fn index(&self) -> u64 {
        self.inner.metadata.index
    }

    /// Term of the entry at `index`.
    #[getter]
    fn term(&self) -> u64 {
        self.inner.metadata.term
    }

    /// Voting members as of `index`.
    #[getter]
    fn voters(&self) -> Vec<u64> {
        self.inner.metadata.conf_state.voters.clone()
    }

    /// Learners as of `index`.
    #[getter]
    fn learners(&self) -> Vec<u64> {
        self.inner.metadata.conf_state.learners.clone()
    }

    /// The application's serialized state.
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.data)
    }

    fn __repr__(&self) -> String {
        let m = &self.inner.metadata;
        format!(
            "Snapshot(index={}, term={}, voters={:?}, learners={:?}, data=<{} bytes>)",
            m.index,
            m.term,
            m.conf_state.voters,
            m.conf_state.learners,
            self.inner.data.len()
        )
    }
}
