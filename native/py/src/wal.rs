//! `Wal`: the write-ahead log as a plain append log (the data plane's log
//! and storage workers use it directly; the Raft log goes through
//! `Consensus`). Every method that touches the disk releases the GIL, and
//! appends can also run on the WAL's own thread (`append_start`), which
//! signals `append_fd` when `append_done()` has the outcome.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bedrock_raft::{Entry, HardState, Snapshot};
use bedrock_wal::{Wal, WalError as WalErr, WalOptions};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::disk::{disk_of, PyMemDisk};
use crate::errors::{guarded, wal_err, NativePanicError};
use crate::io_thread::IoThread;
use crate::types::{PyEntry, PyHardState, PySnapshot};

/// What `open` found, until `take_recovered` takes it.
struct Recovered {
    hard_state: HardState,
    snapshot: Option<Arc<Snapshot>>,
    entries: Vec<Entry>,
}

/// The open WAL, shared by the Python object and its append thread.
struct Shared {
    /// None once closed.
    wal: Mutex<Option<Wal>>,
    closed: AtomicBool,
    path: PathBuf,
}

impl Shared {
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

/// One append: entries (consecutive) and optionally a hard state.
struct Append {
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
}

impl Append {
    fn from_py(py: Python<'_>, entries: &[PyRef<'_, PyEntry>], hs: Option<PyHardState>) -> Self {
        Append {
            entries: entries.iter().map(|e| e.to_entry(py)).collect(),
            hard_state: hs.map(HardState::from),
        }
    }

    fn save(&self, wal: &mut Wal) -> Result<(), WalErr> {
        wal.save(self.hard_state.as_ref(), &self.entries)
    }
}

type Appender = IoThread<Append, Result<(), WalErr>>;

/// A write-ahead log directory used as an append log.
#[pyclass(module = "bedrock_cp_native", name = "Wal", frozen)]
pub struct PyWal {
    shared: Arc<Shared>,
    recovered: Mutex<Option<Recovered>>,
    syncs: Arc<AtomicU64>,
    /// The append thread, started by the first `append_start` or `append_fd`.
    appender: OnceLock<Appender>,
}

impl PyWal {
    fn with<T>(&self, f: impl FnOnce(&mut Wal) -> Result<T, WalErr>) -> Result<T, WalErr> {
        self.shared.with(f)
    }

    fn appender(&self) -> PyResult<&Appender> {
        if let Some(a) = self.appender.get() {
            return Ok(a);
        }
        let shared = self.shared.clone();
        let a = Appender::start("wal-append".to_string(), move |job: Append| {
            shared.with(|w| job.save(w))
        })
        .map_err(|e| {
            crate::errors::WalError::new_err(format!("cannot start the WAL's append thread: {e}"))
        })?;
        Ok(self.appender.get_or_init(|| a))
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
            shared: Arc::new(Shared {
                wal: Mutex::new(Some(wal)),
                closed: AtomicBool::new(false),
                path,
            }),
            recovered: Mutex::new(Some(recovered)),
            appender: OnceLock::new(),
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
        let job = Append::from_py(py, &entries, hard_state);
        py.detach(|| guarded("the WAL", || self.with(|w| job.save(w))))
    }

    /// Hand the same append to this WAL's own thread, which writes and
    /// fsyncs it without the GIL; the caller goes on meanwhile. Appends run
    /// in the order started. When one is done, `append_fd` becomes readable
    /// and `append_done()` reports it.
    #[pyo3(signature = (entries, hard_state = None))]
    fn append_start(
        &self,
        py: Python<'_>,
        entries: Vec<PyRef<'_, PyEntry>>,
        hard_state: Option<PyHardState>,
    ) -> PyResult<()> {
        let job = Append::from_py(py, &entries, hard_state);
        if !self.appender()?.submit(job) {
            return Err(crate::errors::WalError::new_err(format!(
                "the WAL of {} is closed",
                self.shared.path.display()
            )));
        }
        Ok(())
    }

    /// A file descriptor that becomes readable when an append started with
    /// `append_start` finished (watch it with `loop.add_reader`). Valid for
    /// the life of this object.
    #[getter]
    fn append_fd(&self) -> PyResult<i32> {
        Ok(self.appender()?.fd())
    }

    /// Whether the oldest append started and not yet reported finished:
    /// True once it is durable, False while none finished. A failed append
    /// raises here (`WalFatalError` and the like: the WAL is poisoned).
    fn append_done(&self) -> PyResult<bool> {
        let Some(a) = self.appender.get() else {
            return Ok(false);
        };
        match a.take() {
            None => Ok(false),
            Some(Ok(Ok(()))) => Ok(true),
            Some(Ok(Err(e))) => Err(wal_err(e)),
            Some(Err(m)) => Err(NativePanicError::new_err(format!(
                "internal error in the WAL: {m}"
            ))),
        }
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
        self.shared.path.clone()
    }

    /// Close the files (once a write running on another thread finished);
    /// later calls raise `WalError`. Never blocks.
    fn close(&self) {
        if let Some(a) = self.appender.get() {
            a.close();
        }
        self.shared.closed.store(true, Ordering::Release);
        if let Ok(mut g) = self.shared.wal.try_lock() {
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
            .shared
            .wal
            .try_lock()
            .ok()
            .and_then(|g| g.as_ref().map(|w| (w.first_index(), w.last_index())))
        {
            Some((first, last)) => format!(
                "Wal(path={:?}, first_index={first}, last_index={last})",
                self.shared.path
            ),
            None => format!("Wal(path={:?})", self.shared.path),
        }
    }
}
