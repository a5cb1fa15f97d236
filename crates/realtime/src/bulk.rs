//! Where `POST /api/ingest` batches are analysed: a few threads that only get the CPU nobody else wants.
//!
//! A batch is CPU work for milliseconds (a quarter of a millisecond per event); a WebSocket event is the same work
//! for one event, and its sender waits for the answer. On the shared blocking pool they competed as equals, so under
//! a steady ingest load a socket's answer waited behind batches for several scheduler time slices at each of its
//! hand-offs. Here batches run on one thread per core under Linux's `SCHED_IDLE` policy: whenever a normal thread
//! (a socket's analysis, the async workers, the database connection's thread) becomes runnable, the kernel switches
//! to it at once; when none is, the batches still get every core, so ingest throughput is unchanged. The price is
//! deliberate: on a machine kept busy by normal-priority work (a flood of socket events, or another service), ingest
//! gets only the scraps (`SCHED_IDLE` weighs 3 against a normal thread's 1024) and its answers slow down first.
//!
//! Measured with `crates/realtime/examples/load` (its paced phase: 5,000 ingest events/s while one WebSocket sends
//! 200 events/s; the share of WebSocket replies flushed within 5 ms of reading the event): 95.2–95.5% with the
//! threads at nice 10, the previous design, and 99.1–99.6% with `SCHED_IDLE`. Nice values only weight the fair scheduler's shares,
//! so a woken socket thread could still wait for a batch to use up its slice. When the policy cannot be set
//! (another OS, a sandbox refusing the call), the threads fall back to nice [`NICE`].

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use vigil_http::Error;

/// The niceness of the bulk threads when `SCHED_IDLE` is unavailable (0 is normal, 19 the lowest priority).
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
                .map_err(|e| Error::internal_in("analysis task failed", e));
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
            .map_err(|_| Error::internal_msg("bulk analysis threads stopped"))?;
        rx.await
            .map_err(|_| Error::internal_msg("analysis task failed (panicked)"))
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    if let Err(e) = set_idle_policy() {
        tracing::debug!(error = %e, "SCHED_IDLE refused; lowering the bulk thread's nice value instead");
        if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICE) {
            tracing::debug!(error = %e, "could not lower the priority of a bulk analysis thread");
        }
    }
}

/// Puts the calling thread under `SCHED_IDLE`. No safe wrapper exists in our dependencies (rustix has none for
/// `sched_setscheduler`); the benchmark that justifies the call is in the module docs.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_idle_policy() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 names the calling thread; `param` is a live, initialised `sched_param` on this stack frame
    // for the whole call, and the kernel only reads it during the call (nothing keeps the pointer). The call
    // changes scheduling only, never memory this program can observe.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The calling thread's scheduling policy number, from `/proc` (field 41 of `stat`), for the tests.
#[cfg(all(test, target_os = "linux"))]
fn current_policy() -> Option<i32> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields are counted after its closing parenthesis.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(41 - 3)?.parse().ok()
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
    async fn bulk_threads_run_under_sched_idle_or_lower_nice() {
        let pool = BulkPool::new(1);
        let (policy, nice) = pool
            .run(|| {
                let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
                (current_policy(), nice.expect("getpriority"))
            })
            .await
            .expect("ran");
        let ours = rustix::process::getpriority_process(Some(rustix::thread::gettid()))
            .expect("getpriority");
        assert_eq!(
            current_policy(),
            Some(0),
            "the test thread runs under SCHED_OTHER"
        );
        // The fallback applies only where the kernel refuses SCHED_IDLE.
        if policy != Some(libc::SCHED_IDLE) {
            assert_eq!(nice, (ours + NICE).min(19));
        }
        assert!(policy == Some(libc::SCHED_IDLE) || nice > ours);
    }
}
