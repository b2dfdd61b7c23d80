//! Parallel regions for kernels: tasks spread over the pool, claimed one at a time, and a caller
//! that waits for the others' last tasks by spinning.
//!
//! Why not rayon's parallel iterators: at their end the calling thread waits on a latch, and a
//! rayon thread that waits long enough falls asleep (a futex wait after a few dozen yields). On
//! this project's 2-vCPU VM a sleeping thread took tens of microseconds to run again, and it
//! happened a few times per mobilenet_v2 execution at 2 threads (strace: about 7 futex calls per
//! execution): the median execution took 3.6 ms against a 2.6 ms minimum, where ExecuTorch's
//! XNNPACK runtime, whose pthreadpool spins, had 2.0 against 1.9. Here the caller takes tasks
//! like any helper (so a helper that starts late, or never, costs nothing but its share), and
//! once none are left it spins on a counter of finished tasks, which only tasks already running
//! on other threads hold up.
//!
//! Which thread runs which task depends on timing; the kernels using this give every task the
//! same work whichever thread runs it, so results do not depend on it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::KernelError;
use crate::registry::KernelContext;

/// Runs `body(t)` for every `t < tasks`, spread over `ctx`'s pool (on the calling thread alone
/// without one, or with one task). Every task runs, even after one fails; the first error found
/// is returned. A panicking task makes the call panic once the tasks already running finish.
pub fn for_each_task<F>(ctx: &KernelContext, tasks: usize, body: F) -> Result<(), KernelError>
where
    F: Fn(usize) -> Result<(), KernelError> + Sync,
{
    let threads = ctx.threads().min(tasks);
    if threads <= 1 {
        return (0..tasks).try_for_each(body);
    }
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let first_error: Mutex<Option<KernelError>> = Mutex::new(None);
    let claim_and_run = || {
        loop {
            let t = next.fetch_add(1, Ordering::Relaxed);
            if t >= tasks {
                return;
            }
            // Counted on drop, so that a panicking task still counts as finished and the
            // waiting caller moves on (the panic then reaches it through `join`).
            let _finished = Finished(&finished);
            if let Err(e) = body(t) {
                let mut slot = first_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                slot.get_or_insert(e);
            }
        }
    };
    ctx.install(|| {
        rayon::join(
            || {
                claim_and_run();
                // Every task is claimed; wait for the ones other threads still run, without
                // sleeping (see the module docs). Those tasks do not wait on this thread.
                while finished.load(Ordering::Acquire) < tasks {
                    std::hint::spin_loop();
                }
            },
            || fan_out(threads - 1, &claim_and_run),
        )
    });
    let error = first_error.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    error.map_or(Ok(()), Err)
}

/// [`for_each_task`] over `data` cut into `tasks` runs of whole `chunk`s (the last chunk may be
/// shorter): `body(first, run)` gets the index of the run's first chunk and the run. Runs are as
/// even as whole chunks allow.
pub fn for_each_chunk_run<T, F>(
    ctx: &KernelContext,
    data: &mut [T],
    chunk: usize,
    tasks: usize,
    body: F,
) -> Result<(), KernelError>
where
    T: Send,
    F: Fn(usize, &mut [T]) -> Result<(), KernelError> + Sync,
{
    let chunks = data.len().div_ceil(chunk.max(1));
    let tasks = tasks.clamp(1, chunks.max(1));
    let (len, base) = (data.len(), SendMut(data.as_mut_ptr()));
    let bounds = |t: usize| {
        let (first, last) = (chunks * t / tasks, chunks * (t + 1) / tasks);
        (first, (first * chunk).min(len), (last * chunk).min(len))
    };
    for_each_task(ctx, tasks, |t| {
        let (first, start, end) = bounds(t);
        let base = &base;
        // `start <= len`: the pointer stays inside (or one past) `data`'s allocation.
        let at = base.0.wrapping_add(start);
        // SAFETY: `start <= end <= len`, so the run lies inside `data`, which is exclusively
        // borrowed for this call. Distinct tasks get disjoint runs (`bounds` is increasing in
        // `t`, each run ending where the next starts), and `for_each_task` runs each task once,
        // so no two live slices overlap.
        let run = unsafe { std::slice::from_raw_parts_mut(at, end - start) };
        body(first, run)
    })
}

/// Runs `run` on `helpers` more threads of the pool, as they become free.
fn fan_out(helpers: usize, run: &(dyn Fn() + Sync)) {
    match helpers {
        0 => {}
        1 => run(),
        _ => {
            rayon::join(run, || fan_out(helpers - 1, run));
        }
    }
}

/// Adds one to a counter when dropped.
struct Finished<'a>(&'a AtomicUsize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// A pointer to the start of a slice that tasks on other threads cut disjoint runs from.
struct SendMut<T>(*mut T);
// SAFETY: only used by `for_each_chunk_run`, whose tasks access disjoint elements of a slice of
// `T: Send` that the call borrows exclusively.
unsafe impl<T: Send> Sync for SendMut<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pooled(threads: usize) -> KernelContext {
        KernelContext::with_pool(Some(Arc::new(rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap())))
    }

    #[test]
    fn every_task_runs_once() {
        for threads in [1, 2, 3] {
            let ctx = pooled(threads);
            for tasks in [0, 1, 2, 7, 64] {
                let counts: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                for_each_task(&ctx, tasks, |t| {
                    counts[t].fetch_add(1, Ordering::Relaxed);
                    Ok(())
                })
                .unwrap();
                assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1), "{threads} threads, {tasks} tasks");
            }
        }
    }

    #[test]
    fn runs_cover_the_slice_once_with_their_chunk_index() {
        let ctx = pooled(2);
        for (len, chunk, tasks) in [(100, 7, 4), (10, 3, 8), (0, 4, 2), (16, 4, 3), (5, 10, 2)] {
            let mut data = vec![usize::MAX; len];
            for_each_chunk_run(&ctx, &mut data, chunk, tasks, |first, run| {
                for (k, v) in run.iter_mut().enumerate() {
                    assert_eq!(*v, usize::MAX, "element written twice");
                    *v = first * chunk + k;
                }
                Ok(())
            })
            .unwrap();
            assert!(data.iter().enumerate().all(|(i, &v)| v == i), "{len} {chunk} {tasks}: {data:?}");
        }
    }

    #[test]
    fn an_error_is_returned_after_every_task_ran() {
        let ctx = pooled(2);
        let ran = AtomicUsize::new(0);
        let result = for_each_task(&ctx, 10, |t| {
            ran.fetch_add(1, Ordering::Relaxed);
            if t == 3 { Err(KernelError::NotImplemented("task three")) } else { Ok(()) }
        });
        assert!(matches!(result, Err(KernelError::NotImplemented("task three"))));
        assert_eq!(ran.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn a_panicking_task_panics_the_caller_without_hanging() {
        let ctx = pooled(2);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for_each_task(&ctx, 8, |t| if t == 5 { panic!("task five") } else { Ok(()) })
        }));
        assert!(caught.is_err());
    }

    #[test]
    fn nested_regions_finish() {
        let ctx = pooled(2);
        let total = AtomicUsize::new(0);
        for_each_task(&ctx, 4, |_| {
            for_each_task(&ctx, 4, |_| {
                total.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
        })
        .unwrap();
        assert_eq!(total.load(Ordering::Relaxed), 16);
    }
}
