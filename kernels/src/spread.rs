//! Parallel regions for kernels: tasks spread over the pool, each thread first taking its own
//! contiguous share of them (see [`Shares`]), and a caller that waits for the others' last tasks
//! by spinning.
//!
//! Why not rayon's parallel iterators: at their end the calling thread waits on a latch, and a
//! rayon thread that waits long enough falls asleep (a futex wait after a few dozen yields). On
//! this project's 2-vCPU VM a sleeping thread took tens of microseconds to run again, and it
//! happened a few times per mobilenet_v2 execution at 2 threads (strace: about 7 futex calls per
//! execution): the median execution took 3.6 ms against a 2.6 ms minimum, where ExecuTorch's
//! XNNPACK runtime, whose pthreadpool spins, had 2.0 against 1.9. Here the caller takes tasks
//! like any helper (so a helper that starts late, or never, costs nothing: its share is taken
//! from the back by the others), and once none are left it spins on a counter of finished tasks,
//! which only tasks already running on other threads hold up.
//!
//! Which thread runs which task depends on timing only when a thread falls behind; the kernels
//! using this give every task the same work whichever thread runs it, so results do not depend
//! on it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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
    // Shares pack task indices in 32 bits.
    if threads <= 1 || u32::try_from(tasks).is_err() {
        return (0..tasks).try_for_each(body);
    }
    let shares = Shares::new(tasks, threads);
    let joined = AtomicUsize::new(1);
    let finished = AtomicUsize::new(0);
    let first_error: Mutex<Option<KernelError>> = Mutex::new(None);
    let claim_and_run = |participant: usize| {
        while let Some(t) = shares.claim(participant) {
            // Counted on drop, so that a panicking task still counts as finished and the
            // waiting caller moves on (the panic then reaches it through `join`).
            let _finished = Finished(&finished);
            if let Err(e) = body(t) {
                let mut slot = first_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                slot.get_or_insert(e);
            }
        }
    };
    // Helpers number themselves in the order they start (the caller is participant 0).
    let helper = || claim_and_run(joined.fetch_add(1, Ordering::Relaxed));
    ctx.install(|| {
        rayon::join(
            || {
                claim_and_run(0);
                // Every task is claimed; wait for the ones other threads still run, without
                // sleeping (see the module docs). Those tasks do not wait on this thread.
                while finished.load(Ordering::Acquire) < tasks {
                    std::hint::spin_loop();
                }
            },
            || fan_out(threads - 1, &helper),
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

/// Most participants whose shares [`Shares`] tracks; more threads than this share the last ones.
const MAX_SHARES: usize = 64;

/// The tasks of one region cut into one contiguous share per participant: participant `p` first
/// takes its own share from the front, then takes from the backs of the others' shares.
///
/// Why not one counter that every thread claims from: which thread ran which task then depended
/// on timing, so consecutive kernels cut alike (a product's columns, then the next product's)
/// ran a given part of the data on either core by chance, and about half of what each task read
/// came from the other core's cache. With shares, the caller runs the first part and the helper
/// the second, kernel after kernel, unless one of them falls behind.
struct Shares {
    /// Per participant, its remaining tasks `lo..hi` packed as `lo << 32 | hi`.
    ranges: [AtomicU64; MAX_SHARES],
    participants: usize,
}

impl Shares {
    /// `tasks` cut into `participants` (at least 1) shares; `tasks` must fit in 32 bits.
    fn new(tasks: usize, participants: usize) -> Shares {
        let participants = participants.clamp(1, MAX_SHARES);
        // In 64 bits: `tasks * participants` fits (tasks < 2^32, participants <= 64) on any target.
        let bound = |p: usize| (tasks as u64 * p as u64 / participants as u64) as usize;
        let ranges = std::array::from_fn(|p| {
            let (lo, hi) = if p < participants { (bound(p), bound(p + 1)) } else { (0, 0) };
            AtomicU64::new(pack(lo, hi))
        });
        Shares { ranges, participants }
    }

    /// The next task for `participant`: the front of its own share, else the back of another's;
    /// `None` once every task is claimed.
    fn claim(&self, participant: usize) -> Option<usize> {
        let own = participant.min(self.participants - 1);
        if let Some(t) = self.take(own, true) {
            return Some(t);
        }
        (1..self.participants).find_map(|d| self.take((own + d) % self.participants, false))
    }

    /// Takes one task off the front (`front`) or back of share `p`.
    fn take(&self, p: usize, front: bool) -> Option<usize> {
        let range = &self.ranges[p];
        let mut current = range.load(Ordering::Relaxed);
        loop {
            let (lo, hi) = unpack(current);
            if lo >= hi {
                return None;
            }
            let (next, task) = if front { (pack(lo + 1, hi), lo) } else { (pack(lo, hi - 1), hi - 1) };
            match range.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(task),
                Err(seen) => current = seen,
            }
        }
    }
}

fn pack(lo: usize, hi: usize) -> u64 {
    ((lo as u64) << 32) | hi as u64
}

fn unpack(packed: u64) -> (usize, usize) {
    ((packed >> 32) as usize, (packed & u64::from(u32::MAX)) as usize)
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
    fn each_participant_takes_its_own_share_first_then_the_backs_of_others() {
        let shares = Shares::new(8, 2);
        let caller: Vec<usize> = (0..4).filter_map(|_| shares.claim(0)).collect();
        assert_eq!(caller, [0, 1, 2, 3]);
        assert_eq!(shares.claim(1), Some(4));
        // The caller's share is used up: it takes the helper's from the back.
        assert_eq!(shares.claim(0), Some(7));
        assert_eq!(shares.claim(1), Some(5));
        assert_eq!(shares.claim(0), Some(6));
        assert_eq!((shares.claim(0), shares.claim(1)), (None, None));
        // Uneven: 7 tasks over 3 participants, one of which never comes; a participant number
        // past the shares takes the last share.
        let shares = Shares::new(7, 3);
        let mut seen: Vec<usize> = std::iter::from_fn(|| shares.claim(0).or_else(|| shares.claim(5))).collect();
        assert_eq!(seen[..2], [0, 1]);
        seen.sort_unstable();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
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
