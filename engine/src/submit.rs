//! Handing executions to the pool from threads outside it: how the caller waits, and how many
//! executions the pool takes at once.
//!
//! Two costs this avoids, both measured on this project's 2-core VM with `etch bench --mode
//! parallel --threads 2` on mlp_towers (52 µs of graph per execution):
//!
//! - **The caller's wake-up.** [`rayon::ThreadPool::install`] puts the caller to sleep on a lock
//!   until its job is done. Waking it while the pool's spinners hold every CPU took 10-25 µs
//!   (72 µs per execution against 52 of graph). Here the caller waits runnable, yielding its CPU,
//!   for up to [`CALLER_YIELD`]; a runnable caller gets a CPU as soon as a spinner yields one (see
//!   `awake::Awake::finishing`): 55-57 µs per execution.
//! - **Executions piling up on the workers' stacks.** A worker waiting for its graph's last task,
//!   or for the other half of a split kernel, runs whatever pool work it finds, including whole
//!   executions other callers queued, and returns to its own only when those nested ones end
//!   (the test below counts them). So the pool takes at most one execution per worker; the others
//!   wait here, in arrival order, and a finishing execution starts the next one itself, without
//!   waiting for its caller to wake. (This bounds latency. The collapse of throughput with many
//!   requests measured alongside had another cause, see `derived`: each Method held its own
//!   copy of the weights derived at load.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etch_scheduler::Admission;

/// How long a caller whose execution started at once waits runnable before it parks. Callers
/// whose execution was queued park at once: they would only take CPU time from the workers.
const CALLER_YIELD: Duration = Duration::from_millis(1);

pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

pub(crate) struct Submitter {
    pool: Arc<rayon::ThreadPool>,
    /// At most one execution per worker, the rest waiting in arrival order (model-checked in
    /// `etch_scheduler`).
    admission: Admission<Job>,
}

/// What a job and its caller share.
struct Completion<R> {
    done: AtomicBool,
    result: Mutex<Option<std::thread::Result<R>>>,
    caller: std::thread::Thread,
}

impl Submitter {
    pub(crate) fn new(pool: Arc<rayon::ThreadPool>) -> Arc<Submitter> {
        let admission = Admission::new(pool.current_num_threads());
        Arc::new(Submitter { pool, admission })
    }

    /// Runs `f` on a worker of the pool (in place when called on one) and returns its result;
    /// a panic in `f` resumes on the caller.
    pub(crate) fn run<R: Send>(self: &Arc<Self>, f: impl FnOnce() -> R + Send) -> R {
        if self.pool.current_thread_index().is_some() {
            return f();
        }
        let completion = Arc::new(Completion {
            done: AtomicBool::new(false),
            result: Mutex::new(None),
            caller: std::thread::current(),
        });
        let shared = Arc::clone(&completion);
        let job: Box<dyn FnOnce() + Send + '_> = Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            // Nothing panics while holding the slot's lock; a poisoned one is still usable.
            *shared.result.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(r);
            shared.done.store(true, Ordering::Release);
            shared.caller.unpark();
        });
        // SAFETY: only the lifetime is erased, so that the pool can hold the job. The job borrows
        // what `f` borrows, and this function does not return before the job has stopped using
        // those borrows: `f` is consumed (its captures dropped) inside `catch_unwind`, before
        // `done` is set, and the loop below waits for `done` and cannot unwind (no panicking
        // calls). After `done`, the job touches only `shared`, which it owns.
        let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Job>(job) };
        let started_now = self.submit(job);
        let start = Instant::now();
        while !completion.done.load(Ordering::Acquire) {
            if started_now && start.elapsed() < CALLER_YIELD {
                std::thread::yield_now();
            } else {
                std::thread::park_timeout(Duration::from_millis(1));
            }
        }
        let result = completion.result.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        match result {
            Some(Ok(r)) => r,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            // Unreachable: the job stores its result unconditionally before it sets `done`.
            None => panic!("a pool job finished without a result"),
        }
    }

    /// [`Submitter::run`] with the pool's workers kept awake meanwhile, and the spinners told
    /// when `f` is done, so that the waiting caller gets a CPU (see `awake`).
    pub(crate) fn run_awake<R: Send>(
        self: &Arc<Self>,
        keep_awake: &Arc<crate::awake::KeepAwake>,
        f: impl FnOnce() -> R + Send,
    ) -> R {
        let awake = keep_awake.enter();
        let result = self.run(|| {
            let result = f();
            awake.finishing();
            result
        });
        drop(awake);
        result
    }

    /// Starts `job` on the pool if it runs fewer executions than it has workers, otherwise queues
    /// it. True when it started.
    pub(crate) fn submit(self: &Arc<Self>, job: Job) -> bool {
        match self.admission.arrive(job) {
            Some(job) => {
                self.spawn(job);
                true
            }
            None => false,
        }
    }

    /// Spawns `job`; when it ends it starts the next queued one, or frees its place.
    fn spawn(self: &Arc<Self>, job: Job) {
        let me = Arc::clone(self);
        self.pool.spawn(move || {
            // A panic must not keep the place (every later execution would queue behind it);
            // the job's owner learns of it through its own channel (`run` catches its panics,
            // `execute_async` sees its sender dropped).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            if let Some(next) = me.admission.finish() {
                me.spawn(next);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submitter(threads: usize) -> Arc<Submitter> {
        Submitter::new(Arc::new(rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool")))
    }

    /// Waits (bounded) until the pool runs nothing and nothing waits: a job frees its place just
    /// after its caller was released.
    fn wait_until_idle(s: &Submitter) {
        let t = Instant::now();
        loop {
            if s.admission.load() == (0, 0) {
                return;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "the pool's places were not freed");
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    #[test]
    fn runs_on_the_pool_with_borrowed_data_and_returns_the_result() {
        let s = submitter(2);
        let data: Vec<u64> = (0..1000).collect();
        let (sum, on_pool) = s.run(|| (data.iter().sum::<u64>(), rayon::current_thread_index().is_some()));
        assert_eq!(sum, 499_500);
        assert!(on_pool);
        // From a worker: in place, no deadlock waiting for a place on the pool.
        let nested = s.pool.install(|| s.run(rayon::current_thread_index));
        assert!(nested.is_some());
    }

    #[test]
    fn a_panic_resumes_on_the_caller_and_frees_the_place() {
        let s = submitter(1);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.run(|| panic!("boom"))));
        assert!(r.is_err());
        wait_until_idle(&s);
        assert_eq!(s.run(|| 7), 7);
    }

    #[test]
    fn many_callers_at_most_one_execution_per_worker() {
        let s = submitter(2);
        let inside = std::sync::atomic::AtomicUsize::new(0);
        let most = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for t in 0..8u64 {
                let (s, inside, most) = (&s, &inside, &most);
                scope.spawn(move || {
                    for i in 0..200u64 {
                        let r = s.run(|| {
                            let now = inside.fetch_add(1, Ordering::AcqRel) + 1;
                            most.fetch_max(now, Ordering::AcqRel);
                            // A worker waiting in a join runs other pool work: without the
                            // limit, other callers' executions (nested, counted above).
                            let pause = || std::thread::sleep(Duration::from_micros(20));
                            rayon::join(pause, pause);
                            inside.fetch_sub(1, Ordering::AcqRel);
                            t * 1000 + i
                        });
                        assert_eq!(r, t * 1000 + i);
                    }
                });
            }
        });
        let most = most.load(Ordering::Acquire);
        assert!((1..=2).contains(&most), "{most} executions on a 2-worker pool at once");
        wait_until_idle(&s);
    }
}
