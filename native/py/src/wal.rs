//! `Wal`: the Python face of `bedrock_raft::wal`. Every method that touches
//! the disk releases the GIL, so other Python threads (and an asyncio loop
//! calling through an executor) keep running during an fsync.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use bedrock_raft::wal::{Wal, WalError as WalErr, WalOptions};
use bedrock_raft::{Entry, HardState, PersistedState};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::{panic_message, wal_err, NativePanicError, WalError};
use crate::raft_node::PyReady;
use crate::types::{PyEntry, PyHardState, PySnapshot};

/// A write-ahead log directory for one node of one cluster.
#[pyclass(module = "bedrock_cp_native", name = "Wal")]
pub struct PyWal {
    wal: Option<Wal>,
    /// What `open` found on disk, until a RaftNode (or `take_recovered`) takes it.
    recovered: Option<PersistedState>,
    path: PathBuf,
}

/// Runs a WAL operation, mapping its error, and turning a panic into
/// `NativePanicError` rather than letting it unwind into Python.
fn guarded<T>(f: impl FnOnce() -> Result<T, WalErr>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(wal_err),
        Err(p) => Err(NativePanicError::new_err(format!(
            "internal error in the WAL: {}",
            panic_message(p)
        ))),
    }
}

impl PyWal {
    fn wal(&mut self) -> PyResult<&mut Wal> {
        let path = &self.path;
        self.wal
            .as_mut()
            .ok_or_else(|| WalError::new_err(format!("WAL at {} is closed", path.display())))
    }

    /// Hands the recovered state to a new RaftNode (once).
    pub fn take_state(&mut self) -> PyResult<PersistedState> {
        self.recovered.take().ok_or_else(|| {
            PyValueError::new_err(
                "this Wal's recovered state was already taken (one RaftNode per opened Wal)",
            )
        })
    }
}

#[pymethods]
impl PyWal {
    /// Open (or create) the WAL in `path`. Refuses a WAL of another cluster
    /// or node (`WalForeignError`) and a corrupt one (`WalCorruptError`);
    /// a torn final record is truncated (it was never acknowledged).
    #[staticmethod]
    #[pyo3(signature = (path, cluster_id, node_id, *, sync = true, segment_bytes = 64 << 20))]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        cluster_id: String,
        node_id: u64,
        sync: bool,
        segment_bytes: u64,
    ) -> PyResult<Self> {
        let mut opts = WalOptions::new(cluster_id, node_id);
        opts.sync = sync;
        opts.segment_bytes = segment_bytes;
        let dir = path.clone();
        let (wal, state) = py.detach(|| guarded(|| Wal::open(&dir, opts)))?;
        Ok(PyWal {
            wal: Some(wal),
            recovered: Some(state),
            path,
        })
    }

    /// Persist a Ready: its snapshot (if any), then its entries and hard
    /// state, with one fsync when the Ready needs one.
    fn save(&mut self, py: Python<'_>, ready: PyRef<'_, PyReady>) -> PyResult<()> {
        let rd = ready.get()?;
        let wal = self.wal()?;
        py.detach(|| {
            guarded(|| {
                if let Some(s) = &rd.snapshot {
                    wal.save_snapshot(s)?;
                }
                if rd.hard_state.is_some() || !rd.entries.is_empty() {
                    wal.save(rd.hard_state.as_ref(), &rd.entries)?;
                }
                Ok(())
            })
        })
    }

    /// Append entries (consecutive; a lower first index replaces the tail)
    /// and optionally a hard state, with one fsync for the batch.
    #[pyo3(signature = (entries, hard_state = None))]
    fn append(
        &mut self,
        py: Python<'_>,
        entries: Vec<PyRef<'_, PyEntry>>,
        hard_state: Option<PyHardState>,
    ) -> PyResult<()> {
        let entries: Vec<Entry> = entries.iter().map(|e| e.to_entry(py)).collect();
        let hs: Option<HardState> = hard_state.map(HardState::from);
        let wal = self.wal()?;
        py.detach(|| guarded(|| wal.save(hs.as_ref(), &entries)))
    }

    /// Durably replace the snapshot and drop the log up to its index.
    fn save_snapshot(&mut self, py: Python<'_>, snapshot: PyRef<'_, PySnapshot>) -> PyResult<()> {
        let snap = &snapshot.inner;
        let wal = self.wal()?;
        py.detach(|| guarded(|| wal.save_snapshot(snap)))
    }

    /// What open() recovered: (hard_state, snapshot or None, entries). Taken once.
    fn take_recovered(
        &mut self,
        py: Python<'_>,
    ) -> PyResult<(PyHardState, Option<PySnapshot>, Vec<PyEntry>)> {
        let st = self.take_state()?;
        Ok((
            st.hard_state.into(),
            st.snapshot.map(|inner| PySnapshot { inner }),
            st.entries
                .iter()
                .map(|e| PyEntry::from_entry(py, e))
                .collect(),
        ))
    }

    /// The snapshot open() found, without taking the recovered state: a node
    /// restores its state machine from it before building its RaftNode.
    #[getter]
    fn recovered_snapshot(&self) -> Option<PySnapshot> {
        self.recovered
            .as_ref()
            .and_then(|st| st.snapshot.clone())
            .map(|inner| PySnapshot { inner })
    }

    /// First entry index held.
    #[getter]
    fn first_index(&mut self) -> PyResult<u64> {
        Ok(self.wal()?.first_index())
    }

    /// Last entry index held.
    #[getter]
    fn last_index(&mut self) -> PyResult<u64> {
        Ok(self.wal()?.last_index())
    }

    /// Last saved hard state.
    #[getter]
    fn hard_state(&mut self) -> PyResult<PyHardState> {
        Ok(self.wal()?.hard_state().into())
    }

    /// Number of fdatasync calls so far.
    #[getter]
    fn sync_count(&mut self) -> PyResult<u64> {
        Ok(self.wal()?.sync_count())
    }

    /// The WAL directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Close the files; later calls raise `WalError`.
    fn close(&mut self) {
        self.wal = None;
    }

    /// Test hook: make the next fsync fail as a disk error would.
    fn _inject_sync_failure(&mut self) -> PyResult<()> {
        self.wal()?.inject_sync_failure();
        Ok(())
    }

    fn __repr__(&self) -> String {
        match &self.wal {
            Some(w) => format!(
                "Wal(path={:?}, first_index={}, last_index={})",
                self.path,
                w.first_index(),
                w.last_index()
            ),
            None => format!("Wal(path={:?}, <closed>)", self.path),
        }
    }
}
