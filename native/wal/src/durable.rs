//! Making bytes durable: fsync of files and directories, atomic replacement,
//! and the poisoning rule for fsync failures.
//!
//! After a failed fsync the kernel may already have dropped the dirty pages and
//! cleared the error, so a retry can "succeed" without the data being on disk.
//! The only safe reaction is to stop: the first failure poisons the WAL and
//! every later call reports [`WalError::Fatal`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::WalError;
use crate::vfs::{Disk, DiskFile, OpenMode, Vfs, VfsFile};

/// `EIO`, the error an injected sync failure imitates (same value on every Unix).
const EIO: i32 = 5;

/// Issues (or, when disabled, skips) syncs, counts them, and remembers the
/// first fatal failure.
#[derive(Debug)]
pub(crate) struct Durability {
    /// Whether syncs are issued at all (false only in tests and simulation).
    enabled: bool,
    /// Number of fsync/fdatasync calls issued, on files and directories;
    /// shared so it can be read without the WAL's lock.
    count: Arc<AtomicU64>,
    /// Test hook: the next sync point fails with `EIO`, even when disabled.
    fail_next: bool,
    /// Set by the first fatal failure. Invariant: once set, never cleared.
    poisoned: Option<String>,
}

impl Durability {
    pub(crate) fn new(enabled: bool) -> Self {
        Durability {
            enabled,
            count: Arc::new(AtomicU64::new(0)),
            fail_next: false,
            poisoned: None,
        }
    }

    /// Whether syncs are issued (what allocating ahead is for).
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    pub(crate) fn counter(&self) -> Arc<AtomicU64> {
        self.count.clone()
    }

    /// The same policy and counter for work done without the WAL (staging a
    /// snapshot file); its failures poison only it: the caller poisons the WAL.
    pub(crate) fn detached(&self) -> Durability {
        Durability {
            enabled: self.enabled,
            count: self.count.clone(),
            fail_next: false,
            poisoned: None,
        }
    }

    pub(crate) fn inject_failure(&mut self) {
        self.fail_next = true;
    }

    /// Fails with [`WalError::Fatal`] once poisoned.
    pub(crate) fn check(&self) -> Result<(), WalError> {
        match &self.poisoned {
            Some(reason) => Err(WalError::Fatal {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Poisons the WAL after a failed write: the file may now hold a partial
    /// record the in-memory view does not know about.
    pub(crate) fn poison_after(&mut self, err: &WalError) {
        if self.poisoned.is_none() {
            self.poisoned = Some(format!(
                "WAL write failed ({err}); on-disk state is uncertain — the node must stop"
            ));
        }
    }

    /// `fdatasync` of a file's data (and the metadata needed to read it back).
    pub(crate) fn sync_data(&mut self, file: &DiskFile, path: &Path) -> Result<(), WalError> {
        self.sync_with("fdatasync", path, || file.sync_data())
    }

    /// `fsync` of a file, including all its metadata (used for new files).
    pub(crate) fn sync_all(&mut self, file: &DiskFile, path: &Path) -> Result<(), WalError> {
        self.sync_with("fsync", path, || file.sync_all())
    }

    /// `fsync` of a directory, making creates, renames and removals in it durable.
    pub(crate) fn sync_dir(&mut self, disk: &Disk, dir: &Path) -> Result<(), WalError> {
        self.sync_with("fsync directory", dir, || disk.sync_dir(dir))
    }

    fn sync_with(
        &mut self,
        op: &str,
        path: &Path,
        f: impl FnOnce() -> io::Result<()>,
    ) -> Result<(), WalError> {
        self.check()?;
        let result = if self.fail_next {
            self.fail_next = false;
            Err(io::Error::from_raw_os_error(EIO))
        } else if self.enabled {
            self.count.fetch_add(1, Ordering::Relaxed);
            f()
        } else {
            Ok(())
        };
        result.map_err(|e| {
            let reason = format!(
                "fsync failed: {op} {}: {e} — the node must stop",
                path.display()
            );
            self.poisoned = Some(reason.clone());
            WalError::Fatal { reason }
        })
    }
}

/// The temporary name used while `name` is being written.
pub(crate) fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.tmp"))
}

/// Atomically creates or replaces `dir/name` with `bytes`: write a temporary
/// file, sync it, rename it over the target, sync the directory. A crash
/// leaves either the old file or the new one, plus perhaps a `.tmp` file
/// that the next open removes.
///
/// Returns the new file, open for reading and writing.
pub(crate) fn replace_file(
    disk: &Disk,
    dir: &Path,
    name: &str,
    bytes: &[u8],
    durable: &mut Durability,
) -> Result<DiskFile, WalError> {
    let tmp = tmp_path(dir, name);
    let file = write_synced(disk, &tmp, bytes, durable)?;
    rename_synced(disk, dir, &tmp, name, durable)?;
    Ok(file)
}

/// Creates (or truncates) `path` with `bytes` and syncs it: the first half of
/// [`replace_file`].
pub(crate) fn write_synced(
    disk: &Disk,
    path: &Path,
    bytes: &[u8],
    durable: &mut Durability,
) -> Result<DiskFile, WalError> {
    let file = disk
        .open(path, OpenMode::CREATE)
        .map_err(|e| WalError::io("create", path, e))?;
    file.write_at(bytes, 0)
        .map_err(|e| WalError::io("write", path, e))?;
    durable.sync_all(&file, path)?;
    Ok(file)
}

/// Renames the synced file `from` to `dir/name` and syncs `dir`: the second
/// half of [`replace_file`].
pub(crate) fn rename_synced(
    disk: &Disk,
    dir: &Path,
    from: &Path,
    name: &str,
    durable: &mut Durability,
) -> Result<(), WalError> {
    disk.rename(from, &dir.join(name))
        .map_err(|e| WalError::io("rename", from, e))?;
    durable.sync_dir(disk, dir)
}

/// Removes `path`, mapping the error.
pub(crate) fn remove_file(disk: &Disk, path: &Path) -> Result<(), WalError> {
    disk.remove_file(path)
        .map_err(|e| WalError::io("remove", path, e))
}

/// Reads a whole file, mapping the error.
pub(crate) fn read_file(disk: &Disk, path: &Path) -> Result<Vec<u8>, WalError> {
    disk.read_all(path)
        .map_err(|e| WalError::io("read", path, e))
}
