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
//! it up through `yield_now`), so fewer would leave a worker asleep. The caller's thread waits
//! for the execution without spinning, and after it only competes with the spinners for the
//! short linger time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long spinners keep going after the last execution ends (a caller that executes in a loop
/// comes back within this; one that does not costs this much spinning).
const LINGER: Duration = Duration::from_micros(500);

/// Longest a spinner runs before handing over to a fresh one (see `KeepAwake::spin`).
const SPIN_SLICE: Duration = Duration::from_micros(200);

pub(crate) struct KeepAwake {
    pool: Arc<rayon::ThreadPool>,
    epoch: Instant,
    /// Executions in progress.
    running: AtomicUsize,
    /// Once nothing runs, spinners stop after this time (ns since `epoch`).
    until_ns: AtomicU64,
    spinners: AtomicUsize,
}

impl KeepAwake {
    pub(crate) fn new(pool: Arc<rayon::ThreadPool>) -> Arc<KeepAwake> {
        Arc::new(KeepAwake {
            pool,
            epoch: Instant::now(),
            running: AtomicUsize::new(0),
            until_ns: AtomicU64::new(0),
            spinners: AtomicUsize::new(0),
        })
    }

    /// Marks an execution as running until the guard drops, starting spinners as needed.
    pub(crate) fn enter(self: &Arc<Self>) -> Awake {
        self.running.fetch_add(1, Ordering::AcqRel);
        let want = self.pool.current_num_threads();
        let mut have = self.spinners.load(Ordering::Acquire);
        while have < want {
            match self.spinners.compare_exchange(have, have + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    let me = Arc::clone(self);
                    self.pool.spawn(move || me.spin());
                    have += 1;
                }
                Err(now) => have = now,
            }
        }
        Awake(Arc::clone(self))
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Spins for at most [`SPIN_SLICE`], then hands over to a fresh spinner if still wanted.
    ///
    /// Why the slice: a worker waiting inside a job (a join in a kernel, say) runs whatever pool
    /// work it finds, a queued spinner included. Nested there, a spinner that kept going while
    /// executions run would never return to the job below it, whose execution then never ends:
    /// a deadlock (the parallel-mode tests hung on it). Returning after a slice bounds that to a
    /// stall of one slice; the fresh spinner is queued on this worker's own deque, where this
    /// worker, back at the top of its loop, normally takes it first.
    fn spin(self: &Arc<Self>) {
        let start = self.now_ns();
        let slice = u64::try_from(SPIN_SLICE.as_nanos()).unwrap_or(u64::MAX);
        loop {
            if let Some(rayon::Yield::Executed) = rayon::yield_now() {
                continue;
            }
            let now = self.now_ns();
            let wanted = self.running.load(Ordering::Acquire) > 0 || now <= self.until_ns.load(Ordering::Acquire);
            if !wanted {
                break;
            }
            if now.saturating_sub(start) > slice {
                // Jobs queued on this worker under the spinner (the rest of a join it is nested
                // in) would sit below a fresh spinner pushed on top: then leave it to the next
                // execution to start one.
                if self.pool.current_thread_has_pending_tasks() == Some(true) {
                    break;
                }
                let me = Arc::clone(self);
                self.pool.spawn(move || me.spin());
                return;
            }
            std::hint::spin_loop();
        }
        self.spinners.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An execution in progress (see [`KeepAwake::enter`]).
pub(crate) struct Awake(Arc<KeepAwake>);

impl Drop for Awake {
    fn drop(&mut self) {
        let k = &self.0;
        let until = k.now_ns().saturating_add(u64::try_from(LINGER.as_nanos()).unwrap_or(u64::MAX));
        k.until_ns.fetch_max(until, Ordering::AcqRel);
        k.running.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(threads: usize) -> Arc<rayon::ThreadPool> {
        Arc::new(rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool"))
    }

    #[test]
    fn spinners_run_pool_work_and_stop_after_the_linger() {
        let awake = KeepAwake::new(pool(2));
        let guard = awake.enter();
        assert_eq!(awake.spinners.load(Ordering::Acquire), 2);
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
