//! A thread that does blocking disk work without the GIL and says so on a
//! file descriptor an event loop can watch: the WAL thread of a `Consensus`
//! (one Ready at a time) and the append thread of a `Wal` (the data plane's
//! logs).
//!
//! A driver hands a job over with [`IoThread::submit`] and keeps running
//! meanwhile; when the job is done (its fsync included), one byte arrives on
//! [`IoThread::fd`] and [`IoThread::take`] hands out the outcomes in the
//! order the jobs were submitted. The thread never touches Python, so
//! finishing a job never waits for the GIL (a busy event loop holds it for
//! milliseconds at a time), and no Python pool thread has to wake and take
//! the GIL per job.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};

use crate::errors::panic_message;

/// How one job ended: the work's result, or the message of a panic inside it.
pub type Outcome<R> = Result<R, String>;

/// The thread and its wake-up descriptor. `J` is a job, `R` its result.
pub struct IoThread<J, R> {
    /// None once closed: the thread finishes the jobs already queued and exits.
    tx: Mutex<Option<Sender<J>>>,
    done: Arc<Mutex<VecDeque<Outcome<R>>>>,
    /// Readable when a job finished; kept open until this is dropped, so a
    /// loop still watching it never sees a recycled descriptor.
    wake: UnixStream,
}

impl<J: Send + 'static, R: Send + 'static> IoThread<J, R> {
    /// Starts the thread `name`, which runs `work` on each job in turn.
    pub fn start(
        name: String,
        mut work: impl FnMut(J) -> R + Send + 'static,
    ) -> std::io::Result<Self> {
        let (wake, mut signal) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let (tx, rx) = mpsc::channel::<J>();
        let done: Arc<Mutex<VecDeque<Outcome<R>>>> = Arc::default();
        let results = done.clone();
        std::thread::Builder::new().name(name).spawn(move || {
            for job in rx {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(job)))
                    .map_err(panic_message);
                if let Ok(mut q) = results.lock() {
                    q.push_back(outcome);
                }
                // The reader may be gone (the node stopped): nothing to tell.
                let _ = signal.write_all(&[1]);
            }
        })?;
        Ok(IoThread {
            tx: Mutex::new(Some(tx)),
            done,
            wake,
        })
    }

    /// Hands `job` to the thread; false once closed.
    pub fn submit(&self, job: J) -> bool {
        let tx = self.tx.lock().ok();
        tx.as_ref()
            .and_then(|g| g.as_ref())
            .is_some_and(|s| s.send(job).is_ok())
    }

    /// The oldest finished job's outcome, if any (the wake-up bytes are consumed).
    pub fn take(&self) -> Option<Outcome<R>> {
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

    /// The descriptor that becomes readable when a job finished.
    pub fn fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Stops taking jobs; the thread exits after those queued. Never blocks.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            *tx = None;
        }
    }
}
