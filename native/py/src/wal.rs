//! `Wal`: the write-ahead log as a plain append log (the data plane's log
//! and storage workers use it directly; the Raft log goes through
//! `Consensus`). Every method that touches the disk releases the GIL.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bedrock_raft::{Entry, HardState, Snapshot};
use bedrock_wal::{Wal, WalError as WalErr, WalOptions};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::disk::{disk_of, PyMemDisk};
use crate::errors::guarded;
use crate::types::{PyEntry, PyHardState, PySnapshot};

/// What `open` found, until `take_recovered` takes it.
struct Recovered {
    hard_state: HardState,
    snapshot: Option<Arc<Snapshot>>,
    entries: Vec<Entry>,
}

/// A write-ahead log directory used as an append log.
#[pyclass(module = "bedrock_cp_native", name = "Wal", frozen)]
pub struct PyWal {
    /// None once closed.
    wal: Mutex<Option<Wal>>,
    recovered: Mutex<Option<Recovered>>,
    closed: AtomicBool,
    syncs: Arc<AtomicU64>,
    path: PathBuf,
}

impl PyWal {
    fn with<T>(&self, f: impl FnOnce(&mut Wal) -> Result<T, WalErr>) -> Result<T, WalErr> {
        let mut g = self.wal.lock().unwrap_or_else(PoisonError::into_inner);
        let wal = g.as_mut().ok_or_else(|| WalErr::Closed {
            path: self.path.clone(),
        })?;
        let r = f(wal);
        if self.closed.load(Ordering::Acquire) {
            *g = None;
        }
        r
    }
}

#[pymethods]
impl PyWal {
    /// Open (or create) the WAL in `path` (on `disk` when given). Refuses a
    /// WAL of another cluster or node (`WalForeignError`) and a corrupt one
    /// (`WalCorruptError`); a torn, unacknowledged last write is cut off.
    /// The hard state's commit is not taken for a log index here.
    #[staticmethod]
    #[pyo3(signature = (path, cluster_id, node_id, *, sync = true, segment_bytes = 64 << 20, disk = None))]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        cluster_id: String,
        node_id: u64,
        sync: bool,
        segment_bytes: u64,
        disk: Option<PyRef<'_, PyMemDisk>>,
    ) -> PyResult<Self> {
        let mut opts = WalOptions::new(cluster_id, node_id);
        opts.sync = sync;
        opts.segment_bytes = segment_bytes;
        opts.commit_is_index = false;
        let disk = disk_of(disk.as_deref());
        let dir = path.clone();
        let (wal, recovered) = py.detach(|| {
            guarded("the WAL", || {
                let wal = Wal::open(disk, &dir, opts)?;
                let snap = wal.snapshot();
                let rec = Recovered {
                    hard_state: wal.hard_state(),
                    snapshot: (snap.metadata.index > 0).then_some(snap),
                    entries: wal.read_all(),
                };
                Ok((wal, rec))
            })
        })?;
        Ok(PyWal {
            syncs: wal.sync_counter(),
            wal: Mutex::new(Some(wal)),
            recovered: Mutex::new(Some(recovered)),
            closed: AtomicBool::new(false),
            path,
        })
    }

    /// Append entries (consecutive; a lower first index replaces the tail)
    /// and optionally a hard state, with one fsync for the batch.
    #[pyo3(signature = (entries, hard_state = None))]
    fn append(
        &self,
        py: Python<'_>,
        entries: Vec<PyRef<'_, PyEntry>>,
        hard_state: Option<PyHardState>,
    ) -> PyResult<()> {
        let entries: Vec<Entry> = entries.iter().map(|e| e.to_entry(py)).collect();
        let hs: Option<HardState> = hard_state.map(HardState::from);
        py.detach(|| guarded("the WAL", || self.with(|w| w.save(hs.as_ref(), &entries))))
    }

    /// Durably replace the snapshot and drop the log up to its index.
    fn save_snapshot(&self, py: Python<'_>, snapshot: PyRef<'_, PySnapshot>) -> PyResult<()> {
        let snap = snapshot.inner.clone();
        py.detach(|| guarded("the WAL", || self.with(|w| w.save_snapshot(snap))))
    }

    /// What open() recovered: (hard_state, snapshot or None, entries). Taken once.
    fn take_recovered(
        &self,
        py: Python<'_>,
    ) -> PyResult<(PyHardState, Option<PySnapshot>, Vec<PyEntry>)> {
        let st = self
            .recovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| PyValueError::new_err("this Wal's recovered state was already taken"))?;
        Ok((
            st.hard_state.into(),
            st.snapshot.map(|inner| PySnapshot { inner }),
            st.entries
                .iter()
                .map(|e| PyEntry::from_entry(py, e))
                .collect(),
        ))
    }

    /// The snapshot open() found, if any (without taking the recovered state).
    #[getter]
    fn recovered_snapshot(&self) -> Option<PySnapshot> {
        self.recovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|st| st.snapshot.clone())
            .map(|inner| PySnapshot { inner })
    }

    /// First entry index held.
    #[getter]
    fn first_index(&self) -> PyResult<u64> {
        guarded("the WAL", || self.with(|w| Ok(w.first_index())))
    }

    /// Last entry index held.
    #[getter]
    fn last_index(&self) -> PyResult<u64> {
        guarded("the WAL", || self.with(|w| Ok(w.last_index())))
    }

    /// Last saved hard state.
    #[getter]
    fn hard_state(&self) -> PyResult<PyHardState> {
        guarded("the WAL", || self.with(|w| Ok(w.hard_state().into())))
    }

    /// Number of fdatasync/fsync calls so far.
    #[getter]
    fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// The WAL directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Close the files (once a write running on another thread finished);
    /// later calls raise `WalError`. Never blocks.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Ok(mut g) = self.wal.try_lock() {
            *g = None;
        }
    }

    /// Test hook: make the next fsync fail as a disk error would.
    fn _inject_sync_failure(&self) -> PyResult<()> {
        guarded("the WAL", || {
            self.with(|w| {
                w.inject_sync_failure();
                Ok(())
            })
        })
    }

    fn __repr__(&self) -> String {
        match self
            .wal
            .try_lock()
            .ok()
            .and_then(|g| g.as_ref().map(|w| (w.first_index(), w.last_index())))
        {
            Some((first, last)) => format!(
                "Wal(path={:?}, first_index={first}, last_index={last})",
                self.path
            ),
            None => format!("Wal(path={:?})", self.path),
        }
    }
}
