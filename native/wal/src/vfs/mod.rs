//! The file system under the WAL, behind a small trait with two
//! implementations:
//!
//! - [`OsFs`]: the real one (`std::fs`, `pread`/`pwrite`, `fdatasync`,
//!   directory `fsync`, `flock`);
//! - [`MemDisk`]: an in-memory disk that remembers, per file and per
//!   directory entry, what was written and what was synced, and can lose
//!   power ([`MemDisk::power_loss`]): writes not yet synced are lost wholly or
//!   torn at a 512-byte sector boundary, and directory changes not yet synced
//!   are undone. Tests and simulations run the real WAL on it, so a missing
//!   fsync loses data there exactly as it would on a real disk.
//!
//! The WAL uses [`Disk`], an enum over both: one branch per call, nothing
//! dynamic on the real path.

mod mem;
mod os;

use std::io;
use std::path::Path;

pub use self::mem::{Fault, MemDisk, MemFile, MemLock};
pub use self::os::{OsFs, LOCK_FILE_NAME};

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenMode {
    /// Create the file if it does not exist.
    pub create: bool,
    /// Truncate it to zero length.
    pub truncate: bool,
    /// Open it for writing too.
    pub write: bool,
}

impl OpenMode {
    /// Read only.
    pub const READ: OpenMode = OpenMode {
        create: false,
        truncate: false,
        write: false,
    };
    /// Read and write an existing file.
    pub const WRITE: OpenMode = OpenMode {
        create: false,
        truncate: false,
        write: true,
    };
    /// Create (or truncate) and write.
    pub const CREATE: OpenMode = OpenMode {
        create: true,
        truncate: true,
        write: true,
    };
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// File name (not the path).
    pub name: String,
    /// False for directories and anything else that is not a regular file.
    pub is_file: bool,
}

/// The operations the WAL needs from a file system.
pub trait Vfs {
    /// An open file.
    type File: VfsFile;
    /// An exclusive lock on a directory, released on drop.
    type Lock;

    /// Creates `dir` and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The entries of `dir`.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>>;
    /// Opens `path`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File>;
    /// Renames `from` to `to` atomically, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the creates, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes the exclusive lock of `dir`: `Ok(None)` when someone holds it.
    fn try_lock_dir(&self, dir: &Path) -> io::Result<Option<Self::Lock>>;

    /// Reads the whole file at `path`.
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let f = self.open(path, OpenMode::READ)?;
        let len = f.len()?;
        let len = usize::try_from(len).map_err(|_| io::Error::other("file too large"))?;
        let mut buf = vec![0; len];
        f.read_at(&mut buf, 0)?;
        Ok(buf)
    }
}

/// The operations the WAL needs on an open file. Positional reads and
/// writes only, so one handle can be shared by a writer and readers.
pub trait VfsFile: Send + Sync {
    /// Fills `buf` from offset `off` (an error if the file is shorter).
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()>;
    /// Writes all of `buf` at offset `off`, extending the file if needed.
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// True when the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// `fdatasync`: the data, and what is needed to read it back, durable.
    fn sync_data(&self) -> io::Result<()>;
    /// `fsync`: data and all metadata durable.
    fn sync_all(&self) -> io::Result<()>;
}

/// The disk a WAL lives on: the real file system or an in-memory one.
#[derive(Debug, Clone, Default)]
pub enum Disk {
    /// The operating system's file system.
    #[default]
    Os,
    /// An in-memory disk with a power-loss model.
    Mem(MemDisk),
}

/// A file on a [`Disk`].
#[derive(Debug)]
pub enum DiskFile {
    /// A real file.
    Os(std::fs::File),
    /// A file of a [`MemDisk`].
    Mem(MemFile),
}

/// A directory lock on a [`Disk`].
#[derive(Debug)]
pub enum DiskLock {
    /// A `flock` held on the directory's lock file.
    Os(std::fs::File),
    /// A lock of a [`MemDisk`].
    Mem(MemLock),
}

impl Vfs for Disk {
    type File = DiskFile;
    type Lock = DiskLock;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        match self {
            Disk::Os => OsFs.create_dir_all(dir),
            Disk::Mem(m) => m.create_dir_all(dir),
        }
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        match self {
            Disk::Os => OsFs.read_dir(dir),
            Disk::Mem(m) => m.read_dir(dir),
        }
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<DiskFile> {
        match self {
            Disk::Os => OsFs.open(path, mode).map(DiskFile::Os),
            Disk::Mem(m) => m.open(path, mode).map(DiskFile::Mem),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self {
            Disk::Os => OsFs.rename(from, to),
            Disk::Mem(m) => m.rename(from, to),
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        match self {
            Disk::Os => OsFs.remove_file(path),
            Disk::Mem(m) => m.remove_file(path),
        }
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        match self {
            Disk::Os => OsFs.sync_dir(dir),
            Disk::Mem(m) => m.sync_dir(dir),
        }
    }

    fn try_lock_dir(&self, dir: &Path) -> io::Result<Option<DiskLock>> {
        match self {
            Disk::Os => Ok(OsFs.try_lock_dir(dir)?.map(DiskLock::Os)),
            Disk::Mem(m) => Ok(m.try_lock_dir(dir)?.map(DiskLock::Mem)),
        }
    }
}

impl VfsFile for DiskFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        match self {
            DiskFile::Os(f) => VfsFile::read_at(f, buf, off),
            DiskFile::Mem(f) => f.read_at(buf, off),
        }
    }

    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        match self {
            DiskFile::Os(f) => VfsFile::write_at(f, buf, off),
            DiskFile::Mem(f) => f.write_at(buf, off),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        match self {
            DiskFile::Os(f) => VfsFile::set_len(f, len),
            DiskFile::Mem(f) => f.set_len(len),
        }
    }

    fn len(&self) -> io::Result<u64> {
        match self {
            DiskFile::Os(f) => VfsFile::len(f),
            DiskFile::Mem(f) => f.len(),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        match self {
            DiskFile::Os(f) => VfsFile::sync_data(f),
            DiskFile::Mem(f) => f.sync_data(),
        }
    }

    fn sync_all(&self) -> io::Result<()> {
        match self {
            DiskFile::Os(f) => VfsFile::sync_all(f),
            DiskFile::Mem(f) => f.sync_all(),
        }
    }
}
