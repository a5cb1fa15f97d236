//! Where `POST /api/ingest` batches are analysed: a few threads at a lower OS priority.
//!
//! A batch is CPU work for milliseconds (a quarter of a millisecond per event); a WebSocket event is the same work
//! for one event, and its sender waits for the answer. On the shared blocking pool they competed as equals, so under
//! a steady ingest load a socket's answer waited behind batches for several scheduler time slices at each of its
//! hand-offs (p99 11–15 ms at 5,000 events/s on two cores). Here batches run on one thread per core, each lowered to
//! nice [`NICE`] (Linux: `setpriority` on the thread id affects that thread only), so whenever interactive work is
//! runnable the kernel runs it first, and when it is not, the batches still get every core.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use vigil_http::Error;

/// The niceness of the bulk threads (0 is normal, 19 the lowest priority).
pub const NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of low-priority threads fed through one queue.
pub(crate) struct BulkPool {
    /// `None` when no thread could be started: work then goes to tokio's blocking pool.
    queue: Option<mpsc::Sender<Job>>,
}

impl BulkPool {
    /// `threads` workers (0: one per core). They exit when the pool is dropped.
    pub(crate) fn new(threads: usize) -> BulkPool {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        } else {
            threads
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("vigil-bulk-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only while waiting for the next job, never while running one.
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(poisoned) => poisoned.into_inner().recv(),
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => break,
                        }
                    }
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::warn!(error = %e, "could not start a bulk analysis thread"),
            }
        }
        BulkPool {
            queue: (started > 0).then_some(tx),
        }
    }

    /// Runs `f` on a bulk thread and waits for its result. A panic in `f` becomes an internal error.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let Some(queue) = &self.queue else {
            return tokio::task::spawn_blocking(f)
                .await
                .map_err(|e| Error::internal(format!("analysis task failed: {e}")));
        };
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // A panic drops `tx`, which the waiting request sees as an error; the thread lives on.
            if let Ok(v) = std::panic::catch_unwind(AssertUnwindSafe(f)) {
                let _ = tx.send(v);
            }
        });
        queue
            .send(job)
            .map_err(|_| Error::internal("bulk analysis threads stopped"))?;
        rx.await
            .map_err(|_| Error::internal("analysis task failed (panicked)"))
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICE) {
        tracing::debug!(error = %e, "could not lower the priority of a bulk analysis thread");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_panics() {
        let pool = BulkPool::new(2);
        assert_eq!(pool.run(|| 6 * 7).await.expect("result"), 42);
        assert!(pool.run(|| -> u8 { panic!("boom") }).await.is_err());
        // Both threads still serve after a panic.
        let (a, b) = tokio::join!(pool.run(|| 1), pool.run(|| 2));
        assert_eq!((a.expect("a"), b.expect("b")), (1, 2));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn bulk_threads_run_at_lower_priority() {
        let pool = BulkPool::new(1);
        let nice = pool
            .run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid())))
            .await
            .expect("ran")
            .expect("getpriority");
        let ours = rustix::process::getpriority_process(Some(rustix::thread::gettid()))
            .expect("getpriority");
        assert_eq!(nice, (ours + NICE).min(19));
    }
}
