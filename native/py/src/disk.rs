//! `MemDisk`: the in-memory, power-losing disk of `bedrock_wal::vfs`, for
//! tests and simulations. A `Wal` or `Consensus` opened with `disk=` runs
//! the real WAL code on it.

use bedrock_wal::{Disk, Fault, MemDisk};
use std::path::PathBuf;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

/// An in-memory disk that remembers what was synced and can lose power.
#[pyclass(module = "bedrock_cp_native", name = "MemDisk", frozen)]
pub struct PyMemDisk {
    /// The disk (clones share it).
    pub disk: MemDisk,
}

/// The disk a `disk=` argument names: the real one when None.
pub fn disk_of(disk: Option<&PyMemDisk>) -> Disk {
    match disk {
        Some(d) => Disk::Mem(d.disk.clone()),
        None => Disk::Os,
    }
}

#[pymethods]
impl PyMemDisk {
    /// An empty disk.
    #[new]
    fn new() -> Self {
        PyMemDisk {
            disk: MemDisk::new(),
        }
    }

    /// The power fails and comes back: writes and directory changes that
    /// were not synced are lost, wholly or torn at 512-byte sectors, as
    /// `seed` decides. Handles opened before become invalid: close and
    /// reopen every WAL on this disk.
    fn power_loss(&self, seed: u64) {
        self.disk.power_loss(seed);
    }

    /// The process using the disk dies: its open files and locks become
    /// invalid (the WALs it had open can no longer write), and nothing is
    /// lost — unsynced writes stay at risk until the next `power_loss`.
    fn crash(&self) {
        self.disk.crash();
    }

    /// Until called with None, fail operations as `fault` says: `"full"`
    /// (`ENOSPC` for every write, extension and create) or `"failing"`
    /// (`EIO` for every write and sync).
    #[pyo3(signature = (fault))]
    fn set_fault(&self, fault: Option<&str>) -> PyResult<()> {
        let fault = match fault {
            None => None,
            Some("full") => Some(Fault::Full),
            Some("failing") => Some(Fault::Failing),
            Some(other) => {
                return Err(PyValueError::new_err(format!(
                    "no disk fault {other:?} (full, failing)"
                )))
            }
        };
        self.disk.set_fault(fault);
        Ok(())
    }

    /// After `ops` more disk operations, every write fails (a power cut in
    /// the middle of a write); `power_loss` then decides what survived.
    fn cut_power_after(&self, ops: u64) {
        self.disk.cut_power_after(ops);
    }

    /// Whether the directory `path` exists on this disk.
    fn exists(&self, path: PathBuf) -> bool {
        self.disk.dir_exists(&path)
    }

    /// Removes the directory `path` and everything under it, durably at once
    /// (nothing if it does not exist); `OSError` if the disk fails.
    fn remove_tree(&self, path: PathBuf) -> PyResult<()> {
        self.disk
            .remove_tree(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(errno) => PyOSError::new_err((errno, e.to_string())),
                None => PyOSError::new_err(e.to_string()),
            })
    }

    /// Number of file and directory syncs so far.
    #[getter]
    fn sync_count(&self) -> u64 {
        self.disk.sync_count()
    }

    /// Test hook: while set, every sync waits (its thread stays inside the
    /// sync) until cleared.
    fn _block_syncs(&self, blocked: bool) {
        self.disk.block_syncs(blocked);
    }

    /// Test hook: how many syncs `_block_syncs` holds right now.
    #[getter]
    fn _syncs_waiting(&self) -> usize {
        self.disk.syncs_waiting()
    }

    fn __repr__(&self) -> String {
        format!("MemDisk(syncs={})", self.disk.sync_count())
    }
}
