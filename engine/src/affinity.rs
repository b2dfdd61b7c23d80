//! Pinning the pool's workers to distinct CPUs.
//!
//! Why: left to the kernel's scheduler, the two workers of a 2-thread pool on this project's
//! 2-vCPU VM spent most of a benchmark run on the same CPU (`perf sched timehist`: 7,650 of
//! 7,980 switches on CPU 1), taking turns through `sched_yield` every few microseconds while the
//! other CPU idled: a waking thread is placed near its waker, and workers that sleep and wake
//! each other often (rayon's idle loop) end up together. An execution then ran at one thread's
//! speed or worse. ExecuTorch's and ONNX Runtime's thread pools spin or pin for the same reason.
//!
//! Only when the pool has at most as many threads as the process may use CPUs; otherwise (or
//! off Linux, or if the calls fail) threads float as before.

/// The CPUs this process may run on, in increasing order (empty if unknown).
pub(crate) fn allowed_cpus() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: cpu_set_t is a plain bit array, for which all zeroes is a valid (empty) value.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, writable cpu_set_t of the size passed; pid 0 is this thread.
        let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } == 0;
        if !ok {
            return Vec::new();
        }
        // CPU_SETSIZE bits: CPU_ISSET only reads inside the set.
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `cpu < CPU_SETSIZE`, the number of bits `set` holds.
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

/// Restricts the calling thread to `cpu`. False if that failed (the thread then floats).
pub(crate) fn pin_current_thread(cpu: usize) -> bool {
    #[cfg(target_os = "linux")]
    {
        if cpu >= libc::CPU_SETSIZE as usize {
            return false;
        }
        // SAFETY: as in `allowed_cpus`, all zeroes is an empty cpu_set_t.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `cpu < CPU_SETSIZE` (checked above), so the bit is inside `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
        // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cpu;
        false
    }
}

#[cfg(test)]
mod tests {
    use crate::Runtime;

    #[test]
    fn a_small_pool_gets_one_cpu_per_worker_unless_told_not_to() {
        let process = super::allowed_cpus();
        let pool = Runtime::optimized().with_threads(2).pool();
        let per_worker = pool.broadcast(|_| super::allowed_cpus());
        if cfg!(target_os = "linux") && process.len() >= 2 {
            assert_eq!(per_worker, vec![vec![process[0]], vec![process[1]]]);
        } else {
            assert!(per_worker.iter().all(|cpus| *cpus == process));
        }
        let floating = Runtime::optimized().with_threads(2).with_pinning(false).pool();
        assert!(floating.broadcast(|_| super::allowed_cpus()).iter().all(|cpus| *cpus == process));
    }
}
