//! An in-memory disk that can lose power.
//!
//! The model, per file: every write and length change is applied at once to
//! what reads see, and remembered as *pending* until the file is synced
//! (`sync_data`/`sync_all`), which makes it durable. Per directory: creates,
//! renames and removals are visible at once and pending until the directory
//! is synced. [`MemDisk::power_loss`] then decides, from a seed, what reached
//! the platter:
//!
//! - each pending write survives whole, is lost whole, or is torn at 512-byte
//!   sector boundaries (a prefix of its sectors, or any subset of them —
//!   the kernel writes pages back in any order); length changes survive or not;
//! - of each directory's pending changes, a prefix survives (a journaling file
//!   system commits them in order; a rename is atomic).
//!
//! Durable data always survives. Handles opened before a power loss fail
//! afterwards, and every lock is released. Directories themselves are durable
//! as soon as they are created.
//!
//! [`MemDisk::crash`] is the death of the process using the disk: handles and
//! locks become invalid, but nothing is lost (the kernel still holds what was
//! written, synced or not).
//!
//! Test hooks: [`MemDisk::cut_power_after`] makes the disk fail every
//! write after a number of operations (a power cut in the middle of a
//! persist: the node sees an I/O error, then [`MemDisk::power_loss`] decides
//! what survived); [`MemDisk::set_fault`] makes it answer with an error until
//! cleared (a full disk: `ENOSPC` for every write; a failing device: `EIO`
//! for every write and sync); [`MemDisk::block_syncs`] holds every sync until
//! released (to act while a WAL thread is inside an fsync).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::{DirEntry, OpenMode, Vfs, VfsFile};

/// Sector size of the model: the unit in which unsynced writes tear.
pub const SECTOR: u64 = 512;

/// `EIO`, what a write on a disk that lost power returns (same on every Unix).
const EIO: i32 = 5;
/// `ENOSPC`: no space left on the device.
const ENOSPC: i32 = 28;

/// An error the disk answers with until cleared ([`MemDisk::set_fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The disk is full: every write, extension and create fails with
    /// `ENOSPC`; syncs, renames and removals still work.
    Full,
    /// The device fails: every mutating operation, syncs included, fails
    /// with `EIO`.
    Failing,
}

/// What a mutating operation does, for [`Fault`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Writes data or creates a file: needs space.
    Grow,
    /// Syncs, renames, removals, truncations.
    Other,
}

/// A directory change not yet durable.
#[derive(Debug, Clone)]
enum DirOp {
    Link(PathBuf, u64),
    Rename(PathBuf, PathBuf, u64),
    Unlink(PathBuf),
}

/// A file change not yet durable.
#[derive(Debug, Clone)]
enum FileOp {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Debug, Default)]
struct Inode {
    /// What reads see.
    data: Vec<u8>,
    /// What survives a power loss. Invariant: `durable` with every op of
    /// `pending` applied in order equals `data`.
    durable: Vec<u8>,
    pending: Vec<FileOp>,
}

fn apply(image: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write(off, bytes) => write_into(image, *off, bytes),
        FileOp::SetLen(len) => image.resize(*len as usize, 0),
    }
}

fn write_into(image: &mut Vec<u8>, off: u64, bytes: &[u8]) {
    let off = off as usize;
    let end = off + bytes.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[off..end].copy_from_slice(bytes);
}

/// splitmix64, for power-loss decisions.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Default)]
struct State {
    /// Bumped by every power loss: older handles and locks are void.
    generation: u64,
    dirs: BTreeSet<PathBuf>,
    /// Path -> inode, as reads see it.
    names: BTreeMap<PathBuf, u64>,
    /// Path -> inode, as it would survive a power loss.
    durable_names: BTreeMap<PathBuf, u64>,
    /// Directory -> changes in it not yet durable, in order.
    pending_dir_ops: BTreeMap<PathBuf, Vec<DirOp>>,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    locks: BTreeSet<PathBuf>,
    /// Mutating operations left before the power fails, if a cut is armed.
    power_after: Option<u64>,
    /// The power failed: every mutating operation errors until `power_loss`.
    power_failed: bool,
    /// An injected error, until cleared.
    fault: Option<Fault>,
    syncs: u64,
}

impl State {
    /// Counts one mutating operation against an armed power cut, and
    /// fails it if an injected fault says so.
    fn spend(&mut self, op: Op) -> io::Result<()> {
        match (self.fault, op) {
            (Some(Fault::Failing), _) => return Err(io::Error::from_raw_os_error(EIO)),
            (Some(Fault::Full), Op::Grow) => return Err(io::Error::from_raw_os_error(ENOSPC)),
            _ => {}
        }
        if self.power_failed {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        if let Some(n) = self.power_after {
            if n == 0 {
                self.power_failed = true;
                return Err(io::Error::from_raw_os_error(EIO));
            }
            self.power_after = Some(n - 1);
        }
        Ok(())
    }

    fn dir_op(&mut self, path: &Path, op: DirOp) {
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        self.pending_dir_ops.entry(dir).or_default().push(op);
    }

    fn check_parent(&self, path: &Path) -> io::Result<()> {
        let parent = path.parent().unwrap_or(Path::new(""));
        if self.dirs.contains(parent) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", parent.display()),
            ))
        }
    }
}

#[derive(Debug, Default)]
struct Gate {
    blocked: bool,
    waiting: usize,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    gate: Mutex<Gate>,
    gate_cv: Condvar,
}

/// An in-memory disk with a power-loss model (see the module docs). Clones
/// share the same disk.
#[derive(Debug, Clone, Default)]
pub struct MemDisk {
    shared: Arc<Shared>,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("no file {}", path.display()),
    )
}

impl MemDisk {
    /// An empty disk.
    pub fn new() -> Self {
        MemDisk::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The power fails and comes back: what was not durable is lost, wholly
    /// or torn, as `seed` decides (see the module docs). Every open handle
    /// and lock becomes invalid.
    pub fn power_loss(&self, seed: u64) {
        let mut rng = Rng(seed ^ 0x00C0_FFEE);
        let mut s = self.state();
        let ops = std::mem::take(&mut s.pending_dir_ops);
        for (_, ops) in ops {
            let keep = rng.below(ops.len() as u64 + 1) as usize;
            for op in &ops[..keep] {
                match op {
                    DirOp::Link(p, ino) => {
                        s.durable_names.insert(p.clone(), *ino);
                    }
                    DirOp::Rename(from, to, ino) => {
                        s.durable_names.remove(from);
                        s.durable_names.insert(to.clone(), *ino);
                    }
                    DirOp::Unlink(p) => {
                        s.durable_names.remove(p);
                    }
                }
            }
        }
        s.names = s.durable_names.clone();
        let live: BTreeSet<u64> = s.names.values().copied().collect();
        s.inodes.retain(|ino, _| live.contains(ino));
        for inode in s.inodes.values_mut() {
            let mut image = std::mem::take(&mut inode.durable);
            for op in std::mem::take(&mut inode.pending) {
                match (&op, rng.below(10)) {
                    (_, 0..=3) => apply(&mut image, &op),
                    (_, 4..=6) | (FileOp::SetLen(_), _) => {}
                    (FileOp::Write(off, bytes), _) => tear(&mut rng, &mut image, *off, bytes),
                }
            }
            inode.data = image.clone();
            inode.durable = image;
        }
        s.generation += 1;
        s.locks.clear();
        s.power_after = None;
        s.power_failed = false;
    }

    /// The process using the disk dies: every open handle and lock becomes
    /// invalid, and nothing is lost (unsynced writes stay pending, as in the
    /// kernel's cache: only [`MemDisk::power_loss`] can lose them).
    pub fn crash(&self) {
        let mut s = self.state();
        s.generation += 1;
        s.locks.clear();
    }

    /// Makes every later operation the fault covers fail (see [`Fault`]),
    /// until called with `None`.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.state().fault = fault;
    }

    /// Arms a power cut: after `ops` more mutating operations (writes,
    /// syncs, creates, renames, removals), every mutating operation fails
    /// with `EIO` until [`MemDisk::power_loss`].
    pub fn cut_power_after(&self, ops: u64) {
        self.state().power_after = Some(ops);
    }

    /// Disarms a power cut armed by [`MemDisk::cut_power_after`] that has
    /// not happened yet.
    pub fn cancel_power_cut(&self) {
        self.state().power_after = None;
    }

    /// True once an armed power cut has happened.
    pub fn power_failed(&self) -> bool {
        self.state().power_failed
    }

    /// While `blocked`, every sync waits (the caller's thread is inside the
    /// sync); unblocking lets them all proceed.
    pub fn block_syncs(&self, blocked: bool) {
        let mut g = self
            .shared
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        g.blocked = blocked;
        self.shared.gate_cv.notify_all();
    }

    /// Number of syncs currently held by [`MemDisk::block_syncs`].
    pub fn syncs_waiting(&self) -> usize {
        self.shared
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting
    }

    /// Number of file and directory syncs so far.
    pub fn sync_count(&self) -> u64 {
        self.state().syncs
    }

    /// Whether the directory `dir` exists.
    pub fn dir_exists(&self, dir: &Path) -> bool {
        self.state().dirs.contains(dir)
    }

    /// Removes `dir` with every file and directory under it, durably at
    /// once (`rm -r`, then a sync of every directory involved).
    pub fn remove_tree(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.spend(Op::Other)?;
        s.names.retain(|p, _| !p.starts_with(dir));
        s.durable_names.retain(|p, _| !p.starts_with(dir));
        s.pending_dir_ops.retain(|p, _| !p.starts_with(dir));
        s.dirs.retain(|p| !p.starts_with(dir));
        let live: BTreeSet<u64> = s
            .names
            .values()
            .chain(s.durable_names.values())
            .copied()
            .collect();
        s.inodes.retain(|ino, _| live.contains(ino));
        Ok(())
    }

    /// The current bytes of `path` (tests use it to look at or damage files).
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.state();
        let ino = s.names.get(path)?;
        s.inodes.get(ino).map(|i| i.data.clone())
    }

    /// Replaces the bytes of `path` durably, as if damaged at rest.
    pub fn set_file_bytes(&self, path: &Path, bytes: Vec<u8>) -> io::Result<()> {
        let mut s = self.state();
        let ino = *s.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = s.inodes.get_mut(&ino).ok_or_else(|| not_found(path))?;
        inode.data = bytes.clone();
        inode.durable = bytes;
        inode.pending.clear();
        Ok(())
    }

    fn wait_gate(&self) {
        let mut g = self
            .shared
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !g.blocked {
            return;
        }
        g.waiting += 1;
        while g.blocked {
            g = self
                .shared
                .gate_cv
                .wait(g)
                .unwrap_or_else(PoisonError::into_inner);
        }
        g.waiting -= 1;
    }
}

/// Applies the sectors of a torn write that made it: a prefix of them, or
/// any subset.
fn tear(rng: &mut Rng, image: &mut Vec<u8>, off: u64, bytes: &[u8]) {
    let end = off + bytes.len() as u64;
    let mut sectors = Vec::new();
    let mut at = off;
    while at < end {
        let next = ((at / SECTOR) + 1) * SECTOR;
        sectors.push((at, next.min(end)));
        at = next;
    }
    let prefix = rng.below(2) == 0;
    let cut = rng.below(sectors.len() as u64 + 1) as usize;
    for (i, (lo, hi)) in sectors.into_iter().enumerate() {
        let keep = if prefix { i < cut } else { rng.below(2) == 0 };
        if keep {
            let part = &bytes[(lo - off) as usize..(hi - off) as usize];
            write_into(image, lo, part);
        }
    }
}

impl Vfs for MemDisk {
    type File = MemFile;
    type Lock = MemLock;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state();
        let mut d = Some(dir);
        while let Some(p) = d {
            s.dirs.insert(p.to_path_buf());
            d = p.parent();
        }
        Ok(())
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let s = self.state();
        if !s.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let name_of = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
        let files = s
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| name_of(p))
            .map(|name| DirEntry {
                name,
                is_file: true,
            });
        let subdirs = s
            .dirs
            .iter()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| name_of(p))
            .map(|name| DirEntry {
                name,
                is_file: false,
            });
        Ok(files.chain(subdirs).collect())
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<MemFile> {
        let mut s = self.state();
        s.check_parent(path)?;
        let ino = match s.names.get(path).copied() {
            Some(ino) => {
                if mode.truncate {
                    s.spend(Op::Other)?;
                    let inode = s.inodes.entry(ino).or_default();
                    inode.data.clear();
                    inode.pending.push(FileOp::SetLen(0));
                }
                ino
            }
            None if mode.create => {
                s.spend(Op::Grow)?;
                s.next_inode += 1;
                let ino = s.next_inode;
                s.inodes.insert(ino, Inode::default());
                s.names.insert(path.to_path_buf(), ino);
                s.dir_op(path, DirOp::Link(path.to_path_buf(), ino));
                ino
            }
            None => return Err(not_found(path)),
        };
        Ok(MemFile {
            disk: self.clone(),
            ino,
            generation: s.generation,
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.check_parent(to)?;
        if !s.names.contains_key(from) {
            return Err(not_found(from));
        }
        s.spend(Op::Other)?;
        let ino = s.names.remove(from).expect("checked above");
        s.names.insert(to.to_path_buf(), ino);
        s.dir_op(to, DirOp::Rename(from.to_path_buf(), to.to_path_buf(), ino));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state();
        if !s.names.contains_key(path) {
            return Err(not_found(path));
        }
        s.spend(Op::Other)?;
        s.names.remove(path);
        s.dir_op(path, DirOp::Unlink(path.to_path_buf()));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.wait_gate();
        let mut s = self.state();
        s.spend(Op::Other)?;
        s.syncs += 1;
        for op in s.pending_dir_ops.remove(dir).unwrap_or_default() {
            match op {
                DirOp::Link(p, ino) => {
                    s.durable_names.insert(p, ino);
                }
                DirOp::Rename(from, to, ino) => {
                    s.durable_names.remove(&from);
                    s.durable_names.insert(to, ino);
                }
                DirOp::Unlink(p) => {
                    s.durable_names.remove(&p);
                }
            }
        }
        Ok(())
    }

    fn try_lock_dir(&self, dir: &Path) -> io::Result<Option<MemLock>> {
        let mut s = self.state();
        if !s.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        if !s.locks.insert(dir.to_path_buf()) {
            return Ok(None);
        }
        Ok(Some(MemLock {
            disk: self.clone(),
            dir: dir.to_path_buf(),
            generation: s.generation,
        }))
    }
}

/// An open file of a [`MemDisk`].
#[derive(Debug)]
pub struct MemFile {
    disk: MemDisk,
    ino: u64,
    generation: u64,
}

impl MemFile {
    /// The disk state, if this handle is still valid (no power loss since it
    /// was opened).
    fn state(&self) -> io::Result<MutexGuard<'_, State>> {
        let s = self.disk.state();
        if s.generation != self.generation {
            return Err(io::Error::other(
                "stale file handle: the disk lost power since it was opened",
            ));
        }
        Ok(s)
    }

    fn sync(&self) -> io::Result<()> {
        self.disk.wait_gate();
        let mut s = self.state()?;
        s.spend(Op::Other)?;
        s.syncs += 1;
        let inode = s.inodes.entry(self.ino).or_default();
        for op in std::mem::take(&mut inode.pending) {
            apply(&mut inode.durable, &op);
        }
        Ok(())
    }
}

impl VfsFile for MemFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let s = self.state()?;
        let data = s.inodes.get(&self.ino).map_or(&[][..], |i| &i.data[..]);
        let start = off as usize;
        let end = start.saturating_add(buf.len());
        if end > data.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the file",
            ));
        }
        buf.copy_from_slice(&data[start..end]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        let mut s = self.state()?;
        s.spend(Op::Grow)?;
        let inode = s.inodes.entry(self.ino).or_default();
        write_into(&mut inode.data, off, buf);
        inode.pending.push(FileOp::Write(off, buf.to_vec()));
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.state()?;
        let grows = s
            .inodes
            .get(&self.ino)
            .is_some_and(|i| len > i.data.len() as u64);
        s.spend(if grows { Op::Grow } else { Op::Other })?;
        let inode = s.inodes.entry(self.ino).or_default();
        inode.data.resize(len as usize, 0);
        inode.pending.push(FileOp::SetLen(len));
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let s = self.state()?;
        Ok(s.inodes.get(&self.ino).map_or(0, |i| i.data.len() as u64))
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync()
    }
}

/// The lock of a directory of a [`MemDisk`], released on drop.
#[derive(Debug)]
pub struct MemLock {
    disk: MemDisk,
    dir: PathBuf,
    generation: u64,
}

impl Drop for MemLock {
    fn drop(&mut self) {
        let mut s = self.disk.state();
        if s.generation == self.generation {
            s.locks.remove(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk() -> (MemDisk, PathBuf) {
        let d = MemDisk::new();
        let dir = PathBuf::from("/w");
        d.create_dir_all(&dir).unwrap();
        (d, dir)
    }

    #[test]
    fn synced_data_and_names_survive_and_the_rest_may_not() {
        let dir = PathBuf::from("/w");
        let (a, b) = (dir.join("a"), dir.join("b"));
        let mut saw_torn = false;
        let mut saw_b = [false, false];
        for seed in 0..64 {
            let (d, _) = disk();
            let f = d.open(&a, OpenMode::CREATE).unwrap();
            f.write_at(b"durable", 0).unwrap();
            f.sync_data().unwrap();
            d.sync_dir(&dir).unwrap();
            f.write_at(&[7; 2000], 7).unwrap();
            // Synced data, unsynced name.
            d.open(&b, OpenMode::CREATE).unwrap().sync_all().unwrap();
            d.power_loss(seed);
            let bytes = d.file_bytes(&a).unwrap();
            assert_eq!(&bytes[..7], b"durable");
            let tail = &bytes[7..];
            if !tail.is_empty() && (tail.len() < 2000 || tail.contains(&0)) {
                saw_torn = true;
            }
            saw_b[usize::from(d.file_bytes(&b).is_some())] = true;
            assert!(f.len().is_err(), "old handles are void");
        }
        assert!(saw_torn, "some power loss tore the unsynced write");
        assert_eq!(
            saw_b,
            [true, true],
            "an unsynced create may or may not survive"
        );
    }

    #[test]
    fn locks_block_until_dropped_or_power_loss() {
        let (d, dir) = disk();
        let l = d.try_lock_dir(&dir).unwrap();
        assert!(l.is_some());
        assert!(d.try_lock_dir(&dir).unwrap().is_none());
        drop(l);
        let _l2 = d.try_lock_dir(&dir).unwrap().unwrap();
        d.power_loss(1);
        assert!(d.try_lock_dir(&dir).unwrap().is_some());
    }

    #[test]
    fn a_crash_voids_handles_and_locks_but_loses_nothing() {
        let (d, dir) = disk();
        let path = dir.join("x");
        let f = d.open(&path, OpenMode::CREATE).unwrap();
        f.write_at(b"unsynced", 0).unwrap();
        let lock = d.try_lock_dir(&dir).unwrap();
        assert!(lock.is_some());
        d.crash();
        assert!(
            f.write_at(b"late", 0).is_err(),
            "the dead process writes nothing more"
        );
        assert!(d.try_lock_dir(&dir).unwrap().is_some(), "its lock is gone");
        drop(lock);
        assert_eq!(d.file_bytes(&path).unwrap(), b"unsynced");
    }

    #[test]
    fn injected_faults_fail_what_they_cover_until_cleared() {
        let (d, dir) = disk();
        let f = d.open(&dir.join("x"), OpenMode::CREATE).unwrap();
        d.set_fault(Some(Fault::Full));
        let err = f.write_at(b"a", 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(ENOSPC));
        assert!(d.open(&dir.join("y"), OpenMode::CREATE).is_err());
        f.sync_data().unwrap();
        d.set_fault(Some(Fault::Failing));
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(EIO));
        d.set_fault(None);
        f.write_at(b"a", 0).unwrap();
        f.sync_data().unwrap();
    }

    #[test]
    fn an_armed_power_cut_fails_every_later_write() {
        let (d, dir) = disk();
        let f = d.open(&dir.join("x"), OpenMode::CREATE).unwrap();
        d.cut_power_after(1);
        f.write_at(b"a", 0).unwrap();
        assert!(f.write_at(b"b", 1).is_err());
        assert!(f.sync_data().is_err());
        assert!(d.power_failed());
        d.power_loss(3);
        assert!(!d.power_failed());
    }
}
