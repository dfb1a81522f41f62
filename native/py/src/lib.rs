//! `bedrock_cp_native._bedrock_cp_native`: a thin PyO3 layer over
//! `bedrock-raft` (the pure core) and `bedrock-wal` (the WAL, its virtual
//! file system and the Ready-loop object). All logic lives in those crates;
//! this one only converts types, releases the GIL around disk I/O (or does
//! it on a thread of its own), and makes sure a Rust panic surfaces as a
//! Python exception instead of unwinding into Python. Modules: `consensus`
//! (the Raft node over its WAL), `wal` (the WAL as a plain append log),
//! `io_thread` (the thread each of them writes on without the GIL), `disk`
//! (the in-memory disk), `types`, `errors`; none depends on another but on
//! `types`, `errors` and `io_thread`.

mod consensus;
mod disk;
mod errors;
mod io_thread;
mod types;
mod wal;

use pyo3::prelude::*;

/// Build profile of this binary: benchmarks refuse to measure "debug".
const BUILD_PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

#[pymodule]
fn _bedrock_cp_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("build_profile", BUILD_PROFILE)?;
    m.add_class::<consensus::PyConsensus>()?;
    m.add_class::<consensus::PyReady>()?;
    m.add_class::<consensus::PyPersisted>()?;
    m.add_class::<disk::PyMemDisk>()?;
    m.add_class::<types::PyEntry>()?;
    m.add_class::<types::PyHardState>()?;
    m.add_class::<types::PySnapshot>()?;
    m.add_class::<wal::PyWal>()?;
    m.add("NativeError", py.get_type::<errors::NativeError>())?;
    m.add("RaftError", py.get_type::<errors::RaftError>())?;
    m.add("NotLeaderError", py.get_type::<errors::NotLeaderError>())?;
    m.add(
        "ProposalDroppedError",
        py.get_type::<errors::ProposalDroppedError>(),
    )?;
    m.add(
        "ConfChangePendingError",
        py.get_type::<errors::ConfChangePendingError>(),
    )?;
    m.add(
        "SnapshotRefusedError",
        py.get_type::<errors::SnapshotRefusedError>(),
    )?;
    m.add(
        "MessageDecodeError",
        py.get_type::<errors::MessageDecodeError>(),
    )?;
    m.add("WalError", py.get_type::<errors::WalError>())?;
    m.add("WalCorruptError", py.get_type::<errors::WalCorruptError>())?;
    m.add("WalForeignError", py.get_type::<errors::WalForeignError>())?;
    m.add("WalFatalError", py.get_type::<errors::WalFatalError>())?;
    m.add(
        "NativePanicError",
        py.get_type::<errors::NativePanicError>(),
    )?;
    Ok(())
}
