//! Keeps the pool's worker threads awake while executions run and for a short time after, the
//! way XNNPACK's pthreadpool and ONNX Runtime's spinning threads do.
//!
//! Why: a rayon worker with nothing to do yields for a few dozen rounds and then sleeps; waking
//! it takes a futex wake-up and, on a VM whose idle virtual CPU has halted, the host scheduling
//! that CPU again. Traced on this 2-core VM, that was about 90 µs each time, paid at every
//! parallel region that follows a serial stretch: more than most kernels take.
//!
//! A spinner is an ordinary pool task that loops on [`rayon::yield_now`], so a spinning worker
//! still runs any pool work the moment it appears (that is how the work reaches it). Spinners
//! are only a latency aid: if one is missing or leaves early, jobs still run, later.
//! One spinner per worker: the execution itself usually runs inside one of them (a spinner picks
//! it up through `yield_now`), so fewer would leave a worker asleep. Spinners are broadcast jobs,
//! one queued on each worker, which no other worker can take: spawned as ordinary jobs, a
//! spinner's `yield_now` picked up the other worker's spinner (from the injector, or from the
//! other worker's deque at a hand-over), both then ran nested on one thread and the other worker
//! slept (`perf record -e sched:sched_switch`: most of its sleeps at 2 threads had two spinners
//! on the stack of the thread running the execution). A thread that already spins drops any
//! further spinner at once. The caller's thread waits for the execution without spinning, and
//! after it only competes with the spinners for the short linger time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long spinners keep going after the last execution ends (a caller that executes in a loop
/// comes back within this; one that does not costs this much spinning).
const LINGER: Duration = Duration::from_micros(500);

/// Longest a spinner runs before handing over to a fresh one (see `KeepAwake::spin`).
const SPIN_SLICE: Duration = Duration::from_micros(200);

thread_local! {
    /// This thread runs a spinner (further ones it picks up return at once).
    static SPINNING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub(crate) struct KeepAwake {
    pool: Arc<rayon::ThreadPool>,
    epoch: Instant,
    /// Executions in progress.
    running: AtomicUsize,
    /// Once nothing runs, spinners stop after this time (ns since `epoch`).
    until_ns: AtomicU64,
    spinners: AtomicUsize,
    /// Executions that reached their end on the pool (see [`Awake::finishing`]).
    finished: AtomicU64,
    /// Of those, the ones whose caller's thread has run again (its guard dropped).
    resumed: AtomicU64,
}

impl KeepAwake {
    pub(crate) fn new(pool: Arc<rayon::ThreadPool>) -> Arc<KeepAwake> {
        Arc::new(KeepAwake {
            pool,
            epoch: Instant::now(),
            running: AtomicUsize::new(0),
            until_ns: AtomicU64::new(0),
            spinners: AtomicUsize::new(0),
            finished: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
        })
    }

    /// Marks an execution as running until the guard drops, starting spinners as needed.
    pub(crate) fn enter(self: &Arc<Self>) -> Awake {
        self.running.fetch_add(1, Ordering::AcqRel);
        if self.spinners.load(Ordering::Acquire) < self.pool.current_num_threads() {
            self.broadcast_spinners();
        }
        Awake { keep: Arc::clone(self), finished: std::sync::atomic::AtomicBool::new(false) }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Queues a spinner for every worker. A broadcast job runs on its own worker (another one
    /// cannot steal it), so each worker gets one; a worker already spinning drops the extra.
    fn broadcast_spinners(self: &Arc<Self>) {
        let me = Arc::clone(self);
        self.pool.spawn_broadcast(move |_| me.spin());
    }

    /// Spins on this worker unless it already does (see the module docs), counted in `spinners`.
    fn spin(self: &Arc<Self>) {
        if SPINNING.with(|s| s.replace(true)) {
            return;
        }
        self.spinners.fetch_add(1, Ordering::AcqRel);
        self.spin_slice();
        SPINNING.with(|s| s.set(false));
        self.spinners.fetch_sub(1, Ordering::AcqRel);
    }

    /// Spins for at most [`SPIN_SLICE`], then hands over to a fresh spinner if still wanted.
    ///
    /// Why the slice: a worker waiting inside a job (a join in a kernel, say) runs whatever pool
    /// work it finds, a queued spinner included. Nested there, a spinner that kept going while
    /// executions run would never return to the job below it, whose execution then never ends:
    /// a deadlock (the parallel-mode tests hung on it). Returning after a slice bounds that to a
    /// stall of one slice; the fresh spinner is queued on this worker, which, back at the top of
    /// its loop, takes it.
    fn spin_slice(self: &Arc<Self>) {
        let start = self.now_ns();
        let slice = u64::try_from(SPIN_SLICE.as_nanos()).unwrap_or(u64::MAX);
        loop {
            // An execution ended and its caller is waking up: it needs a CPU, which every
            // spinner holds. Offer ours until it has run (see `Awake::finishing`).
            if self.finished.load(Ordering::Acquire) > self.resumed.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            if let Some(rayon::Yield::Executed) = rayon::yield_now() {
                continue;
            }
            let now = self.now_ns();
            let wanted = self.running.load(Ordering::Acquire) > 0 || now <= self.until_ns.load(Ordering::Acquire);
            if !wanted {
                break;
            }
            if now.saturating_sub(start) > slice {
                // The fresh spinner waits in this worker's broadcast queue, which the worker
                // reads after its own deque: jobs queued under this spinner run first.
                self.broadcast_spinners();
                return;
            }
            std::hint::spin_loop();
        }
    }
}

/// An execution in progress (see [`KeepAwake::enter`]).
pub(crate) struct Awake {
    keep: Arc<KeepAwake>,
    /// [`Awake::finishing`] was called; dropping the guard then counts the caller as resumed.
    finished: std::sync::atomic::AtomicBool,
}

impl Awake {
    /// Called on the pool as an execution ends, before its caller's thread is woken: spinners
    /// then yield their CPU once. Otherwise the caller, waking while both CPUs of a 2-thread pool
    /// spin, waited for the scheduler to preempt one (`perf sched timehist`: up to ~1 ms at the
    /// 90th percentile), and that wait counted in every execution's latency.
    pub(crate) fn finishing(&self) {
        if !self.finished.swap(true, Ordering::AcqRel) {
            self.keep.finished.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Awake {
    fn drop(&mut self) {
        let k = &self.keep;
        let until = k.now_ns().saturating_add(u64::try_from(LINGER.as_nanos()).unwrap_or(u64::MAX));
        k.until_ns.fetch_max(until, Ordering::AcqRel);
        k.running.fetch_sub(1, Ordering::AcqRel);
        if self.finished.load(Ordering::Acquire) {
            k.resumed.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(threads: usize) -> Arc<rayon::ThreadPool> {
        Arc::new(rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool"))
    }

    /// Spinners start when a worker takes them: waits (with a generous bound) until `n` run.
    fn wait_for_spinners(awake: &KeepAwake, n: usize) {
        let t = Instant::now();
        while awake.spinners.load(Ordering::Acquire) < n {
            assert!(t.elapsed() < Duration::from_secs(10), "spinners did not start");
            std::thread::yield_now();
        }
    }

    #[test]
    fn spinners_run_pool_work_and_stop_after_the_linger() {
        let awake = KeepAwake::new(pool(2));
        let guard = awake.enter();
        wait_for_spinners(&awake, 2);
        // Extra spinners reach workers that already spin and leave at once: never more than one
        // per worker, so two running means one on each.
        for _ in 0..20 {
            awake.broadcast_spinners();
        }
        for _ in 0..100 {
            assert!(awake.spinners.load(Ordering::Acquire) <= 2, "two spinners on one worker");
            std::thread::sleep(Duration::from_micros(50));
        }
        // Work reaches the pool while every worker is inside a spinner: from outside (install)
        // and nested (join), as executions and kernels submit it.
        let sum = awake.pool.install(|| {
            let (a, b) = rayon::join(|| (0..1000u64).sum::<u64>(), || (1000..2000u64).sum::<u64>());
            a + b
        });
        assert_eq!(sum, (0..2000u64).sum::<u64>());
        drop(guard);
        // Spinners leave once nothing runs and the linger has passed (generous bound for a
        // loaded machine; a spinner that never stops fails here).
        let t = Instant::now();
        while awake.spinners.load(Ordering::Acquire) > 0 {
            assert!(t.elapsed() < Duration::from_secs(10), "spinners still running");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn concurrent_executions_share_the_spinners() {
        let awake = KeepAwake::new(pool(2));
        std::thread::scope(|s| {
            for _ in 0..4 {
                let awake = &awake;
                s.spawn(move || {
                    for _ in 0..50 {
                        let _guard = awake.enter();
                        assert!(awake.spinners.load(Ordering::Acquire) <= 2);
                        awake.pool.install(|| rayon::join(|| 1, || 2));
                    }
                });
            }
        });
        assert_eq!(awake.running.load(Ordering::Acquire), 0);
    }
}
