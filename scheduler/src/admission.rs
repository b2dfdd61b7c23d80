//! Admission of jobs onto a pool: at most `limit` run at once, the rest wait in arrival order,
//! and a finishing job hands its place to the first waiting one. The engine hands executions to
//! its thread pool through this (`etch_engine`'s `submit`): a worker waiting inside one execution
//! runs whatever pool work it finds, other executions included, so more executions on the pool
//! than workers pile up on the workers' stacks.
//!
//! Only the bookkeeping lives here (the caller starts the jobs it is given back), so that loom can
//! check it (`tests/loom.rs`): no more than `limit` started and unfinished, every job started
//! exactly once, none left waiting.

use std::collections::VecDeque;

use crate::sync::Mutex;

/// See the module docs.
#[derive(Debug)]
pub struct Admission<J> {
    limit: usize,
    state: Mutex<State<J>>,
}

#[derive(Debug)]
struct State<J> {
    /// Jobs started and not finished.
    running: usize,
    waiting: VecDeque<J>,
}

impl<J> Admission<J> {
    /// At most `limit` jobs at once (at least one).
    pub fn new(limit: usize) -> Admission<J> {
        Admission { limit: limit.max(1), state: Mutex::new(State { running: 0, waiting: VecDeque::new() }) }
    }

    /// A job arrives: returned when it may start now (the caller starts it, and calls
    /// [`Admission::finish`] when it ends), otherwise queued behind the ones already waiting.
    pub fn arrive(&self, job: J) -> Option<J> {
        let mut s = self.lock();
        if s.running < self.limit && s.waiting.is_empty() {
            s.running += 1;
            Some(job)
        } else {
            s.waiting.push_back(job);
            None
        }
    }

    /// A started job ended: returns the next to start (its place passes to it, and it must be
    /// finished in turn), or frees the place.
    pub fn finish(&self) -> Option<J> {
        let mut s = self.lock();
        let next = s.waiting.pop_front();
        if next.is_none() {
            s.running = s.running.saturating_sub(1);
        }
        next
    }

    /// Jobs started and not finished, and jobs waiting.
    pub fn load(&self) -> (usize, usize) {
        let s = self.lock();
        (s.running, s.waiting.len())
    }

    fn lock(&self) -> crate::sync::MutexGuard<'_, State<J>> {
        // Every change to the state is complete before the lock is released (no call in between
        // can panic), so a poisoned lock still guards a consistent state.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn first_come_first_served_within_the_limit() {
        let a = Admission::new(2);
        assert_eq!(a.arrive(1), Some(1));
        assert_eq!(a.arrive(2), Some(2));
        assert_eq!(a.arrive(3), None);
        assert_eq!(a.arrive(4), None);
        assert_eq!(a.load(), (2, 2));
        assert_eq!(a.finish(), Some(3));
        // A place is free only after the queue has drained, and a new arrival does not overtake.
        assert_eq!(a.finish(), Some(4));
        assert_eq!(a.arrive(5), None);
        assert_eq!(a.finish(), Some(5));
        assert_eq!(a.finish(), None);
        assert_eq!(a.finish(), None);
        assert_eq!(a.load(), (0, 0));
        assert_eq!(Admission::new(0).arrive(9), Some(9));
    }
}
