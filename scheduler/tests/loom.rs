//! Model-checks the graph executor's synchronisation with loom: every interleaving of small graphs
//! runs each task exactly once, after all its predecessors, and loom's tracked cells catch any read
//! of a predecessor's output that is not ordered after its write.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p etch-scheduler --test loom --release`
#![cfg(loom)]

use std::sync::Arc as StdArc;

use etch_scheduler::{GraphRun, TaskGraph};
use loom::cell::UnsafeCell;
use loom::sync::{Arc, Mutex};
use loom::thread;

struct Shared {
    graph: TaskGraph,
    run: GraphRun,
    /// Output of each task: 1 + the sum of its predecessors' outputs.
    slots: Vec<UnsafeCell<u32>>,
    preds: Vec<Vec<u32>>,
    handles: Mutex<Vec<thread::JoinHandle<()>>>,
}

fn task(shared: &Shared, n: u32) -> bool {
    let mut v = 1;
    for &p in &shared.preds[n as usize] {
        // A read not ordered after the predecessor's write is a loom error.
        v += shared.slots[p as usize].with(|x| unsafe { *x });
    }
    shared.slots[n as usize].with_mut(|x| unsafe { *x = v });
    true
}

fn drive(shared: Arc<Shared>, start: u32) {
    let s2 = shared.clone();
    let spawn = move |n: u32| {
        let s3 = s2.clone();
        let h = thread::spawn(move || drive(s3, n));
        s2.handles.lock().unwrap().push(h);
    };
    shared.run.drive(&shared.graph, start, &|n| task(&shared, n), &spawn);
}

fn check(len: usize, edges: &[(u32, u32)], expected_last: u32) {
    let edges: StdArc<Vec<(u32, u32)>> = StdArc::new(edges.to_vec());
    loom::model(move || {
        let graph = TaskGraph::new(len, edges.iter().copied()).unwrap();
        let mut preds = vec![Vec::new(); len];
        for &(a, b) in edges.iter() {
            if !preds[b as usize].contains(&a) {
                preds[b as usize].push(a);
            }
        }
        let run = GraphRun::new(&graph);
        let shared = Arc::new(Shared {
            graph,
            run,
            slots: (0..len).map(|_| UnsafeCell::new(0)).collect(),
            preds,
            handles: Mutex::new(Vec::new()),
        });
        for &r in shared.graph.roots().to_vec().iter() {
            drive(shared.clone(), r);
        }
        loop {
            let h = shared.handles.lock().unwrap().pop();
            match h {
                Some(h) => h.join().unwrap(),
                None => break,
            }
        }
        let last = shared.slots[len - 1].with(|x| unsafe { *x });
        assert_eq!(last, expected_last);
    });
}

#[test]
fn diamond() {
    // 0 → {1, 2} → 3: values 1, 2, 2, 5.
    check(4, &[(0, 1), (0, 2), (1, 3), (2, 3)], 5);
}

#[test]
fn fan_out_fan_in() {
    // 0 → {1, 2, 3} → 4: values 1, 2, 2, 2, 7.
    check(5, &[(0, 1), (0, 2), (0, 3), (1, 4), (2, 4), (3, 4)], 7);
}

#[test]
fn two_roots_join() {
    // {0, 1} → 2 → 3 with 0 → 3: values 1, 1, 3, 5.
    check(4, &[(0, 2), (1, 2), (2, 3), (0, 3)], 5);
}

/// Three callers each bring a job to an admission of one or two places; whoever is given a job
/// runs it and then whatever `finish` hands on. In every interleaving: never more jobs running
/// than places, every job runs exactly once, and nothing is left waiting or counted as running.
fn check_admission(limit: usize) {
    use etch_scheduler::Admission;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    // Three threads through a lock explore too many interleavings to finish unbounded; three
    // preemptions cover the hand-over races (a finish between an arrival's check and its queueing
    // is one preemption) and finish in seconds.
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(move || {
        let admission = Arc::new(Admission::new(limit));
        let running = Arc::new(AtomicUsize::new(0));
        let ran: Arc<Vec<AtomicUsize>> = Arc::new((0..3).map(|_| AtomicUsize::new(0)).collect());
        let callers: Vec<_> = (0..3usize)
            .map(|id| {
                let (admission, running, ran) = (admission.clone(), running.clone(), ran.clone());
                thread::spawn(move || {
                    let mut job = admission.arrive(id);
                    while let Some(j) = job {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= limit, "{now} jobs running with {limit} places");
                        ran[j].fetch_add(1, Ordering::SeqCst);
                        running.fetch_sub(1, Ordering::SeqCst);
                        job = admission.finish();
                    }
                })
            })
            .collect();
        for c in callers {
            c.join().unwrap();
        }
        for (j, r) in ran.iter().enumerate() {
            assert_eq!(r.load(Ordering::SeqCst), 1, "job {j}");
        }
        assert_eq!(admission.load(), (0, 0));
    });
}

#[test]
fn admission_one_place() {
    check_admission(1);
}

#[test]
fn admission_two_places() {
    check_admission(2);
}
