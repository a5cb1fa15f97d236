//! Where analyses run: one dedicated rayon pool at normal priority, shared by two lanes that a scheduler inside the
//! process orders (issue #18 item 1, issue #12 item 6).
//!
//! * **Interactive** work (a socket's single event, whose sender waits) always goes first: a waiting interactive
//!   job makes the running bulk work yield at its next event boundary (a quarter of a millisecond), so it waits
//!   for at most one event's analysis, not for a batch.
//! * **Bulk** work (`POST /api/ingest` batches, frames a socket pipelined) runs in slices of at most [`QUANTUM`];
//!   between slices the pool picks again, so batches of different clients take turns and interactive work slips in.
//!   Bulk keeps a guaranteed share: the lanes are charged the time their slices ran, weighted
//!   [`INTERACTIVE_WEIGHT`] to 1 (stride scheduling), so a flood of interactive work still leaves bulk a quarter of
//!   the pool, and an idle lane banks at most [`MAX_CREDIT`] of advantage.
//! * **A core held for a waiting sender.** While an interactive request is in flight (from its analysis being
//!   queued until its result is stored, [`Scheduler::reserve`]), bulk slices run on at most all threads but one.
//!   Yielding at event boundaries gives the socket's analysis a thread at once, but its answer then hops through
//!   the async runtime and the store's writer, and with every core busy with bulk analysis each hop waits for the
//!   OS to preempt one; the reservation keeps a core free for those hops. It costs bulk one thread only while
//!   someone waits (a socket at 200 events/s holds it for about a third of the time), and bulk always keeps at
//!   least one thread. Measurements: ARCHITECTURE.md, "Fair scheduling in the process".
//! * **The core handed back.** After each bulk slice the thread calls `sched_yield` before picking again (not
//!   when interactive work is next: the sender waits for that). The threads the socket's path hops through (an
//!   async worker woken by the socket or a timer, the store's writer woken by its channel) are otherwise runnable
//!   but waiting until the OS preempts a busy analysis thread, which on two loaded cores took up to one OS time
//!   slice per hop, several milliseconds (`perf sched latency`: 5.9 ms at worst for an async worker, 4.7 ms for
//!   the store's writer in 5 s of the paced mix); yielding bounds that wait by the slice, ≤ 1 ms. The yield
//!   changes no one's share of the machine over time (the OS keeps accounting the run time), costs a system call
//!   per millisecond of bulk work, and returns at once when nothing else is runnable. Its price is beside
//!   neighbours that never yield (CPU hogs): each hand-back gives one of them its turn early, and ingest beside
//!   two hogs fell from 0.52 to 0.46 of quiet (goal ≥ 1/3). Under the paced mixed load it halved the socket's
//!   p99 (8.0 → 4.4 ms on SQLite). Yielding only while a request is in flight helped less (6.2–7.3 ms), likely
//!   because the slow hops also include the socket's own read and the client's, before any request is in flight.
//!
//! Why not the OS: the previous design ran bulk under Linux's `SCHED_IDLE`. That protected socket latency, but bulk
//! then got only the CPU no one else wanted: 317 events/s beside a compiler (25× below quiet). Here every thread of
//! the pool is a normal thread, so against neighbours (other services, PostgreSQL, a backup) the process gets its
//! fair share of the machine, and the order between our own kinds of work is decided here, where we know which
//! answer someone is waiting for. The pool's start handler therefore names its threads and deliberately leaves
//! their priority alone (lowering it, as issue #12 suggested, is the same starvation by a milder dose: nice 5 alone
//! would cut bulk to a quarter of the machine beside two busy neighbours). Measurements: ARCHITECTURE.md, "Fair
//! scheduling in the process".

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use vigil_http::Error;

/// Where an analysis runs (the lanes of the [`Scheduler`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// `POST /api/ingest` batches and frames a socket pipelined: analysed in slices, behind interactive work but
    /// with a guaranteed share of the pool.
    Bulk,
    /// One WebSocket event, whose sender waits: runs before any queued bulk slice and stops running ones at
    /// their next event.
    Interactive,
}

/// The longest slice a bulk job runs before the pool picks again (about four events' analyses).
pub const QUANTUM: Duration = Duration::from_millis(1);
/// Interactive time counts this many times less than bulk time: when both lanes have work queued, bulk gets at
/// least `1 / (1 + INTERACTIVE_WEIGHT)` of the pool.
pub const INTERACTIVE_WEIGHT: u32 = 3;
/// How far (in weighted time) a lane that was idle may be behind the other when its work arrives: an interactive
/// burst after a long bulk run gets this much unconditional priority, not the whole idle period's worth.
pub const MAX_CREDIT: Duration = Duration::from_millis(50);

/// What a job sees while it runs: whether it should stop at the next boundary and let the pool pick again.
pub(crate) struct Slice<'a> {
    started: Instant,
    lane: Lane,
    preempt: &'a AtomicBool,
}

impl Slice<'_> {
    /// A slice that never asks to yield (tests and the fallback without a pool): it runs the job as an
    /// interactive one, to completion.
    pub(crate) fn unbounded() -> Slice<'static> {
        static NEVER: AtomicBool = AtomicBool::new(false);
        Slice {
            started: Instant::now(),
            lane: Lane::Interactive,
            preempt: &NEVER,
        }
    }

    /// A bulk slice that asks to yield at every boundary (tests of jobs' resumption).
    #[cfg(test)]
    pub(crate) fn always_yield() -> Slice<'static> {
        static ALWAYS: AtomicBool = AtomicBool::new(true);
        Slice {
            started: Instant::now(),
            lane: Lane::Bulk,
            preempt: &ALWAYS,
        }
    }

    /// `true` when a bulk job should return and be continued later: its quantum is used up, or interactive work
    /// is waiting and owed the pool. Interactive jobs run to completion.
    pub(crate) fn should_yield(&self) -> bool {
        self.lane == Lane::Bulk
            && (self.preempt.load(Ordering::Relaxed) || self.started.elapsed() >= QUANTUM)
    }
}

/// A job in the scheduler: runs one slice, returns `true` when finished.
type Task = Box<dyn FnMut(&Slice<'_>) -> bool + Send>;

/// The two lanes' queues and their weighted time.
#[derive(Default)]
struct Queues {
    interactive: VecDeque<Task>,
    bulk: VecDeque<Task>,
    /// Weighted nanoseconds each lane has run (stride scheduling's "pass").
    interactive_pass: u64,
    bulk_pass: u64,
    /// The pool's threads.
    threads: usize,
    /// Bulk slices running now.
    bulk_running: usize,
    /// Interactive requests in flight ([`Scheduler::reserve`]).
    reservations: usize,
    /// Picks that found only bulk work while bulk was at its thread limit: each stands for a queued job whose
    /// pending pick was used up, to be issued again when a thread frees up for bulk.
    parked: usize,
}

impl Queues {
    fn new(threads: usize) -> Queues {
        Queues {
            threads: threads.max(1),
            ..Queues::default()
        }
    }

    /// The lane to run next, or `None` when both are empty or only bulk work waits and bulk is at its limit.
    fn pick(&self) -> Option<Lane> {
        let bulk = !self.bulk.is_empty() && self.bulk_running < self.bulk_limit();
        match (self.interactive.is_empty(), bulk) {
            (true, false) => None,
            (false, false) => Some(Lane::Interactive),
            (true, true) => Some(Lane::Bulk),
            // Ties go to the interactive lane.
            (false, true) if self.interactive_pass <= self.bulk_pass => Some(Lane::Interactive),
            (false, true) => Some(Lane::Bulk),
        }
    }

    /// How many bulk slices may run at once: every thread, or all but one while an interactive request is in
    /// flight (never fewer than one).
    fn bulk_limit(&self) -> usize {
        if self.reservations > 0 {
            (self.threads - 1).max(1)
        } else {
            self.threads
        }
    }

    /// Parked picks that may be issued again now.
    fn unpark(&mut self) -> usize {
        let free = self.bulk_limit().saturating_sub(self.bulk_running);
        let n = self.parked.min(free);
        self.parked -= n;
        n
    }

    fn push(&mut self, lane: Lane, task: Task) {
        let credit = u64::try_from(MAX_CREDIT.as_nanos()).unwrap_or(u64::MAX);
        match lane {
            Lane::Interactive => {
                if self.interactive.is_empty() {
                    self.interactive_pass = self
                        .interactive_pass
                        .max(self.bulk_pass.saturating_sub(credit));
                }
                self.interactive.push_back(task);
            }
            Lane::Bulk => {
                if self.bulk.is_empty() {
                    self.bulk_pass = self
                        .bulk_pass
                        .max(self.interactive_pass.saturating_sub(credit));
                }
                self.bulk.push_back(task);
            }
        }
    }

    fn pop(&mut self, lane: Lane) -> Option<Task> {
        match lane {
            Lane::Interactive => self.interactive.pop_front(),
            Lane::Bulk => self.bulk.pop_front(),
        }
    }

    /// Charges `lane` for a slice that ran `ran`.
    fn charge(&mut self, lane: Lane, ran: Duration) {
        let ns = u64::try_from(ran.as_nanos()).unwrap_or(u64::MAX);
        match lane {
            Lane::Interactive => {
                self.interactive_pass = self
                    .interactive_pass
                    .saturating_add(ns / u64::from(INTERACTIVE_WEIGHT));
            }
            Lane::Bulk => self.bulk_pass = self.bulk_pass.saturating_add(ns),
        }
    }

    /// Whether the thread that just ran a slice of `lane` should offer its core to the OS before picking again
    /// (see the module docs, "The core handed back"): after every bulk slice, unless interactive work waits,
    /// since that is what the thread picks next and the sender is waiting for it.
    fn hands_back_after(&self, lane: Lane) -> bool {
        lane == Lane::Bulk && self.interactive.is_empty()
    }

    /// Whether running bulk slices should stop at their next boundary: the interactive lane is owed the pool, or
    /// more bulk slices run than a reservation allows.
    fn should_preempt(&self) -> bool {
        (!self.interactive.is_empty() && self.interactive_pass <= self.bulk_pass)
            || self.bulk_running > self.bulk_limit()
    }
}

/// State shared by the submitting side and the pool's threads.
struct Shared {
    queues: Mutex<Queues>,
    /// [`Queues::should_preempt`], readable without the lock at every event boundary of a bulk slice.
    preempt: AtomicBool,
}

impl Shared {
    fn queues(&self) -> MutexGuard<'_, Queues> {
        // A panic never happens while the lock is held (jobs run outside it), but a poisoned lock must not stop
        // the pool.
        match self.queues.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Runs one slice of the job the policy picks. Each queued job has exactly one pending call of this.
    fn run_one(self: &Arc<Self>, pool: &Arc<rayon::ThreadPool>) {
        let (lane, mut task) = {
            let mut q = self.queues();
            let Some(lane) = q.pick() else {
                if !q.bulk.is_empty() {
                    q.parked += 1;
                }
                return;
            };
            let Some(task) = q.pop(lane) else { return };
            if lane == Lane::Bulk {
                q.bulk_running += 1;
            }
            self.preempt.store(q.should_preempt(), Ordering::Relaxed);
            (lane, task)
        };
        let started = Instant::now();
        let slice = Slice {
            started,
            lane,
            preempt: &self.preempt,
        };
        // A panicking job is dropped (its waiter sees an error); the pool's thread lives on.
        let finished = std::panic::catch_unwind(AssertUnwindSafe(|| task(&slice))).unwrap_or(true);
        let ran = started.elapsed();
        let mut q = self.queues();
        q.charge(lane, ran);
        if lane == Lane::Bulk {
            q.bulk_running -= 1;
        }
        if !finished {
            metrics::counter!("topoforge_bulk_slices_yielded_total").increment(1);
            q.push(lane, task);
        }
        let unparked = q.unpark();
        self.preempt.store(q.should_preempt(), Ordering::Relaxed);
        let hand_back = q.hands_back_after(lane);
        drop(q);
        if !finished {
            self.ticket(pool);
        }
        for _ in 0..unparked {
            self.ticket(pool);
        }
        if hand_back {
            std::thread::yield_now();
        }
    }

    /// Asks the pool for one more pick.
    fn ticket(self: &Arc<Self>, pool: &Arc<rayon::ThreadPool>) {
        let shared = self.clone();
        let p = pool.clone();
        pool.spawn(move || shared.run_one(&p));
    }
}

/// The analysis pool and its two-lane scheduler.
pub(crate) struct Scheduler {
    shared: Arc<Shared>,
    /// `None` when the pool could not be built: jobs then run to completion on tokio's blocking pool.
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl Scheduler {
    /// `threads` workers (0: one per core).
    pub(crate) fn new(threads: usize) -> Scheduler {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("vigil-analysis-{i}"))
            .build();
        let pool = match pool {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                tracing::warn!(error = %e, "could not start the analysis pool; using the blocking pool");
                None
            }
        };
        let threads = pool.as_ref().map_or(1, |p| p.current_num_threads());
        Scheduler {
            shared: Arc::new(Shared {
                queues: Mutex::new(Queues::new(threads)),
                preempt: AtomicBool::new(false),
            }),
            pool,
        }
    }

    /// Holds a thread back from bulk work until the returned guard drops (see the module documentation): taken by
    /// an interactive request for as long as its sender waits on the analysis and the store.
    pub(crate) fn reserve(&self) -> Reservation {
        let mut q = self.shared.queues();
        q.reservations += 1;
        self.shared
            .preempt
            .store(q.should_preempt(), Ordering::Relaxed);
        Reservation {
            shared: self.shared.clone(),
            pool: self.pool.clone(),
        }
    }

    /// Runs `step` on `lane` until it returns `Some`, and waits for that result. `step` should check
    /// [`Slice::should_yield`] at its natural boundaries and return `None` when asked to; it is then called again
    /// later. A panic in `step` becomes an internal error.
    pub(crate) async fn run<T, F>(&self, lane: Lane, mut step: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnMut(&Slice<'_>) -> Option<T> + Send + 'static,
    {
        let Some(pool) = &self.pool else {
            return tokio::task::spawn_blocking(move || {
                let slice = Slice::unbounded();
                loop {
                    if let Some(v) = step(&slice) {
                        return v;
                    }
                }
            })
            .await
            .map_err(|e| Error::internal_in("analysis task failed", e));
        };
        let (tx, rx) = oneshot::channel();
        let mut tx = Some(tx);
        let task: Task = Box::new(move |slice| match step(slice) {
            Some(v) => {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(v);
                }
                true
            }
            None => false,
        });
        let waited = Instant::now();
        {
            let mut q = self.shared.queues();
            q.push(lane, task);
            self.shared
                .preempt
                .store(q.should_preempt(), Ordering::Relaxed);
        }
        self.shared.ticket(pool);
        let v = rx
            .await
            .map_err(|_| Error::internal_msg("analysis task failed (panicked)"))?;
        let lane_name = match lane {
            Lane::Interactive => "interactive",
            Lane::Bulk => "bulk",
        };
        metrics::histogram!("topoforge_analysis_job_seconds", "lane" => lane_name)
            .record(waited.elapsed().as_secs_f64());
        Ok(v)
    }
}

/// An interactive request in flight ([`Scheduler::reserve`]); dropping it gives the thread back to bulk work.
pub(crate) struct Reservation {
    shared: Arc<Shared>,
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let unparked = {
            let mut q = self.shared.queues();
            q.reservations -= 1;
            let n = q.unpark();
            self.shared
                .preempt
                .store(q.should_preempt(), Ordering::Relaxed);
            n
        };
        if let Some(pool) = &self.pool {
            for _ in 0..unparked {
                self.shared.ticket(pool);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn noop() -> Task {
        Box::new(|_: &Slice<'_>| true)
    }

    #[tokio::test]
    async fn runs_jobs_and_survives_panics() {
        let pool = Scheduler::new(2);
        assert_eq!(
            pool.run(Lane::Bulk, |_| Some(6 * 7)).await.expect("result"),
            42
        );
        assert!(
            pool.run(Lane::Bulk, |_| -> Option<u8> { panic!("boom") })
                .await
                .is_err()
        );
        // The threads still serve after a panic, on both lanes.
        let (a, b) = tokio::join!(
            pool.run(Lane::Interactive, |_| Some(1)),
            pool.run(Lane::Bulk, |_| Some(2))
        );
        assert_eq!((a.expect("a"), b.expect("b")), (1, 2));
    }

    /// A job that yields is continued until it finishes, one step per call.
    #[tokio::test]
    async fn a_yielding_job_is_continued() {
        let pool = Scheduler::new(1);
        let mut steps = 0;
        let n = pool
            .run(Lane::Bulk, move |_| {
                steps += 1;
                (steps == 5).then_some(steps)
            })
            .await
            .expect("ran");
        assert_eq!(n, 5);
    }

    /// With one thread busy in a long bulk job, an interactive job is answered within a few of the bulk job's
    /// event boundaries, not after the whole job.
    #[tokio::test]
    async fn interactive_work_preempts_a_running_bulk_job() {
        let pool = Arc::new(Scheduler::new(1));
        let events = Arc::new(AtomicUsize::new(0));
        let counted = events.clone();
        let bulk = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(Lane::Bulk, move |slice| {
                    // 2,000 "events" of 0.1 ms each, 200 ms in all, yielding when asked.
                    while counted.load(Ordering::Relaxed) < 2_000 {
                        std::thread::sleep(Duration::from_micros(100));
                        counted.fetch_add(1, Ordering::Relaxed);
                        if slice.should_yield() {
                            return None;
                        }
                    }
                    Some(())
                })
                .await
            })
        };
        // Let the bulk job start.
        while events.load(Ordering::Relaxed) < 10 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let at = pool
            .run(Lane::Interactive, {
                let events = events.clone();
                move |_| Some(events.load(Ordering::Relaxed))
            })
            .await
            .expect("interactive ran");
        assert!(
            at < 1_000,
            "the interactive job waited for {at} of 2,000 bulk events"
        );
        bulk.await.expect("joined").expect("bulk ran");
        assert_eq!(events.load(Ordering::Relaxed), 2_000);
    }

    /// The policy: interactive first, but bulk keeps a quarter of the time while both lanes have work.
    #[test]
    fn bulk_keeps_its_share_under_an_interactive_flood() {
        let mut q = Queues::new(2);
        for _ in 0..1_000 {
            q.push(Lane::Interactive, noop());
            q.push(Lane::Bulk, noop());
        }
        let (mut interactive, mut bulk) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..1_000 {
            let lane = q.pick().expect("work queued");
            assert!(q.pop(lane).is_some());
            // Equal slices of 1 ms.
            q.charge(lane, Duration::from_millis(1));
            match lane {
                Lane::Interactive => interactive += Duration::from_millis(1),
                Lane::Bulk => bulk += Duration::from_millis(1),
            }
        }
        let share = bulk.as_secs_f64() / (bulk + interactive).as_secs_f64();
        assert!((0.24..=0.26).contains(&share), "bulk share {share}");
    }

    /// Interactive work arriving after a long bulk run goes first, but banks at most `MAX_CREDIT`.
    #[test]
    fn an_idle_lane_banks_bounded_credit() {
        let mut q = Queues::new(2);
        q.push(Lane::Bulk, noop());
        for _ in 0..1_000 {
            q.charge(Lane::Bulk, Duration::from_millis(1));
        }
        q.push(Lane::Interactive, noop());
        assert_eq!(q.pick(), Some(Lane::Interactive));
        assert!(q.should_preempt());
        let behind = q.bulk_pass - q.interactive_pass;
        assert_eq!(u128::from(behind), MAX_CREDIT.as_nanos());
        // Once interactive has used its credit (weighted), bulk runs again.
        q.charge(
            Lane::Interactive,
            MAX_CREDIT * INTERACTIVE_WEIGHT + Duration::from_millis(1),
        );
        assert_eq!(q.pick(), Some(Lane::Bulk));
        assert!(!q.should_preempt());
    }

    /// While an interactive request is in flight, bulk runs on all threads but one, and the parked picks come
    /// back when it ends.
    #[test]
    fn a_reservation_holds_one_thread_back_from_bulk() {
        let mut q = Queues::new(2);
        q.push(Lane::Bulk, noop());
        q.push(Lane::Bulk, noop());
        q.bulk_running = 1;
        assert_eq!(q.pick(), Some(Lane::Bulk));
        q.reservations = 1;
        assert_eq!(q.pick(), None);
        assert!(!q.should_preempt());
        // Interactive work still gets the held thread.
        q.push(Lane::Interactive, noop());
        assert_eq!(q.pick(), Some(Lane::Interactive));
        // Two bulk slices running when the reservation came: one must yield.
        q.bulk_running = 2;
        assert!(q.should_preempt());
        q.bulk_running = 1;
        q.parked = 1;
        assert_eq!(q.unpark(), 0);
        q.reservations = 0;
        assert_eq!(q.unpark(), 1);
        assert_eq!(q.parked, 0);
        // One thread: a reservation never takes the only one.
        let mut one = Queues::new(1);
        one.push(Lane::Bulk, noop());
        one.reservations = 1;
        assert_eq!(one.pick(), Some(Lane::Bulk));
    }

    /// A thread offers its core to the OS after a bulk slice, so threads woken for I/O need not wait for the OS
    /// to preempt it, but not when an interactive job is what it picks next, nor after an interactive job.
    #[test]
    fn bulk_slices_hand_the_core_back_unless_interactive_work_is_next() {
        let mut q = Queues::new(2);
        assert!(q.hands_back_after(Lane::Bulk));
        q.push(Lane::Bulk, noop());
        assert!(q.hands_back_after(Lane::Bulk));
        assert!(!q.hands_back_after(Lane::Interactive));
        q.push(Lane::Interactive, noop());
        assert!(!q.hands_back_after(Lane::Bulk));
        assert_eq!(q.pick(), Some(Lane::Interactive));
        assert!(q.pop(Lane::Interactive).is_some());
        assert!(q.hands_back_after(Lane::Bulk));
    }

    /// On the real pool: with two bulk jobs on two threads, a reservation leaves at most one bulk slice running,
    /// and both jobs finish after it is dropped.
    #[tokio::test]
    async fn a_reservation_limits_running_bulk_slices() {
        let pool = Arc::new(Scheduler::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let reserved = Arc::new(AtomicBool::new(false));
        let violations = Arc::new(AtomicUsize::new(0));
        let steps = Arc::new(AtomicUsize::new(0));
        let job = |pool: Arc<Scheduler>| {
            let (running, reserved, violations, steps) = (
                running.clone(),
                reserved.clone(),
                violations.clone(),
                steps.clone(),
            );
            tokio::spawn(async move {
                let mut done = 0;
                pool.run(Lane::Bulk, move |slice| {
                    running.fetch_add(1, Ordering::SeqCst);
                    let result = loop {
                        if done == 400 {
                            break Some(());
                        }
                        // A slice that started before the reservation may run on only until its next boundary.
                        if reserved.load(Ordering::SeqCst)
                            && running.load(Ordering::SeqCst) > 1
                            && !slice.should_yield()
                        {
                            violations.fetch_add(1, Ordering::SeqCst);
                        }
                        std::thread::sleep(Duration::from_micros(100));
                        done += 1;
                        steps.fetch_add(1, Ordering::SeqCst);
                        if slice.should_yield() {
                            break None;
                        }
                    };
                    running.fetch_sub(1, Ordering::SeqCst);
                    result
                })
                .await
            })
        };
        let (a, b) = (job(pool.clone()), job(pool.clone()));
        while steps.load(Ordering::SeqCst) < 20 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let held = pool.reserve();
        reserved.store(true, Ordering::SeqCst);
        let before = steps.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            steps.load(Ordering::SeqCst) > before,
            "bulk kept a thread while reserved"
        );
        reserved.store(false, Ordering::SeqCst);
        drop(held);
        a.await.expect("joined").expect("a ran");
        b.await.expect("joined").expect("b ran");
        assert_eq!(steps.load(Ordering::SeqCst), 800);
        assert_eq!(
            violations.load(Ordering::SeqCst),
            0,
            "two bulk slices ran past a boundary while a thread was reserved"
        );
    }
}
