//! Python exception types, and the mapping from the Rust errors to them.
//!
//! Every error raised by this module derives from `NativeError`, so a caller
//! can catch the whole family; the leaves name what went wrong.

use bedrock_raft::errors::Error as RaftErr;
use bedrock_wal::WalError as WalErr;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::PyErr;

create_exception!(
    bedrock_cp_native,
    NativeError,
    PyException,
    "Base class of every error raised by bedrock_cp_native."
);
create_exception!(
    bedrock_cp_native,
    RaftError,
    NativeError,
    "The Raft core refused an operation."
);
create_exception!(
    bedrock_cp_native,
    NotLeaderError,
    RaftError,
    "This node is not the leader; args[1] is the known leader id (0 if unknown)."
);
create_exception!(
    bedrock_cp_native,
    ProposalDroppedError,
    RaftError,
    "The leader dropped the proposal (for example during a leadership transfer)."
);
create_exception!(
    bedrock_cp_native,
    ConfChangePendingError,
    RaftError,
    "A membership change is already in flight; only one may be pending."
);
create_exception!(
    bedrock_cp_native,
    SnapshotRefusedError,
    RaftError,
    "A local snapshot cannot be taken now (applied index mismatch, or a leader snapshot is being installed); nothing changed."
);
create_exception!(
    bedrock_cp_native,
    MessageDecodeError,
    RaftError,
    "Bytes given to step() are not a valid Raft message."
);
create_exception!(
    bedrock_cp_native,
    WalError,
    NativeError,
    "The write-ahead log failed an I/O operation."
);
create_exception!(
    bedrock_cp_native,
    WalCorruptError,
    WalError,
    "The WAL holds damaged data that is not a torn unacknowledged write; the node must not start."
);
create_exception!(
    bedrock_cp_native,
    WalForeignError,
    WalError,
    "The WAL belongs to another cluster id or node id."
);
create_exception!(
    bedrock_cp_native,
    WalFatalError,
    WalError,
    "An fsync failed; the WAL is unusable and the node must stop."
);
create_exception!(
    bedrock_cp_native,
    NativePanicError,
    NativeError,
    "An internal invariant of the native core broke; the object is unusable."
);

/// Maps a Raft core error to its Python exception.
pub fn raft_err(e: RaftErr) -> PyErr {
    let msg = e.to_string();
    match e {
        RaftErr::NotLeader { leader } => NotLeaderError::new_err((msg, leader)),
        RaftErr::ProposalDropped(_) => ProposalDroppedError::new_err(msg),
        RaftErr::ConfChangePending { .. } => ConfChangePendingError::new_err(msg),
        RaftErr::SnapshotRefused(_) => SnapshotRefusedError::new_err(msg),
        RaftErr::Decode(_) => MessageDecodeError::new_err(msg),
        RaftErr::InvalidConfig(_) | RaftErr::InvalidArgument(_) => PyValueError::new_err(msg),
        #[allow(unreachable_patterns)]
        _ => RaftError::new_err(msg),
    }
}

/// Maps an error of the WAL crate (WAL or Ready loop) to its Python exception.
pub fn wal_err(e: WalErr) -> PyErr {
    let msg = e.to_string();
    match e {
        WalErr::Raft(r) => raft_err(r),
        WalErr::Corrupt { .. } => WalCorruptError::new_err(msg),
        WalErr::Foreign { .. } => WalForeignError::new_err(msg),
        WalErr::Fatal { .. } => WalFatalError::new_err(msg),
        WalErr::InvalidArgument(_) | WalErr::ReadyOutstanding => PyValueError::new_err(msg),
        WalErr::Poisoned(_) => NativePanicError::new_err(msg),
        #[allow(unreachable_patterns)]
        _ => WalError::new_err(msg),
    }
}

/// Text of a caught panic payload.
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Runs `f`, mapping its error, and turning a panic into `NativePanicError`
/// rather than letting it unwind into Python.
pub fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, WalErr>) -> pyo3::PyResult<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(wal_err),
        Err(p) => Err(NativePanicError::new_err(format!(
            "internal error in {what}: {}",
            panic_message(p)
        ))),
    }
}
