//! The WAL thread of a `Consensus`: persists one Ready at a time without the
//! GIL, and says so on a file descriptor an event loop can watch.
//!
//! A driver hands a Ready over with [`Persister::submit`] and keeps stepping
//! messages and taking proposals meanwhile (they only take the core's lock);
//! when the write and its fsync are done, one byte arrives on
//! [`Persister::fd`], and [`Persister::take`] hands out the result. The thread
//! never touches Python, so finishing a persist never waits for the GIL (a
//! busy event loop holds it for milliseconds at a time).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};

use bedrock_wal::{Consensus, PendingReady, Persisted, WalError};

use crate::errors::panic_message;

/// How a persist on the WAL thread ended badly.
pub enum Failure {
    /// The WAL failed (fatal for the node).
    Wal(WalError),
    /// A panic inside the WAL or the core.
    Panic(String),
}

type Outcome = Result<Persisted, Failure>;

/// The WAL thread of one `Consensus` and its wake-up descriptor.
pub struct Persister {
    /// None once closed: the thread finishes the persist in hand and exits.
    tx: Mutex<Option<Sender<PendingReady>>>,
    done: Arc<Mutex<VecDeque<Outcome>>>,
    /// Readable when a persist finished; kept open until this is dropped, so
    /// a loop still watching it never sees a recycled descriptor.
    wake: UnixStream,
}

impl Persister {
    /// Starts the thread for `c`.
    pub fn start(c: Arc<Consensus>) -> std::io::Result<Persister> {
        let (wake, mut signal) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let (tx, rx) = mpsc::channel::<PendingReady>();
        let done: Arc<Mutex<VecDeque<Outcome>>> = Arc::default();
        let results = done.clone();
        std::thread::Builder::new()
            .name(format!("wal-{}", c.id()))
            .spawn(move || {
                for rd in rx {
                    let outcome =
                        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            c.persist(rd)
                        })) {
                            Ok(Ok(p)) => Ok(p),
                            Ok(Err(e)) => Err(Failure::Wal(e)),
                            Err(p) => Err(Failure::Panic(panic_message(p))),
                        };
                    if let Ok(mut q) = results.lock() {
                        q.push_back(outcome);
                    }
                    // The reader may be gone (the node stopped): nothing to tell.
                    let _ = signal.write_all(&[1]);
                }
            })?;
        Ok(Persister {
            tx: Mutex::new(Some(tx)),
            done,
            wake,
        })
    }

    /// Hands `rd` to the thread; false once closed.
    pub fn submit(&self, rd: PendingReady) -> bool {
        let tx = self.tx.lock().ok();
        tx.as_ref()
            .and_then(|g| g.as_ref())
            .is_some_and(|s| s.send(rd).is_ok())
    }

    /// The oldest finished persist, if any (the wake-up bytes are consumed).
    pub fn take(&self) -> Option<Outcome> {
        let mut buf = [0u8; 64];
        loop {
            match (&self.wake).read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break, // WouldBlock: drained
            }
        }
        self.done.lock().ok()?.pop_front()
    }

    /// The descriptor that becomes readable when a persist finished.
    pub fn fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Stops taking Readys; the thread exits after the one in hand. Never blocks.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            *tx = None;
        }
    }
}
