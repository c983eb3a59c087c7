//! The one per-notebook lock: mutual exclusion across threads and tasks,
//! reentrancy, shared/exclusive, FIFO, timeouts, canonical keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use gitlockd::lock::{git_lock_manager, with_owner, LockMode, NotebookLock, OwnerId};
use parking_lot::Mutex;

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

/// Fails when two holders are ever inside at once.
#[derive(Default)]
struct CriticalSection {
    inside: AtomicBool,
    entries: AtomicUsize,
}

impl CriticalSection {
    fn enter(&self) {
        assert!(
            !self.inside.swap(true, Ordering::SeqCst),
            "two holders inside the critical section at once"
        );
        self.entries.fetch_add(1, Ordering::SeqCst);
    }
    fn leave(&self) {
        assert!(self.inside.swap(false, Ordering::SeqCst));
    }
}

#[test]
fn singleton_manager_and_symlinked_paths_share_one_lock() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert!(std::ptr::eq(git_lock_manager(), git_lock_manager()));
    let a = git_lock_manager().lock_for(&real).unwrap();
    let b = git_lock_manager().lock_for(&link).unwrap();
    let c = git_lock_manager()
        .lock_for(&real.join("..").join("real"))
        .unwrap();
    assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&a, &c));
    let _held = a
        .lock_blocking(OwnerId::fresh(), LockMode::Exclusive, None)
        .unwrap();
    assert!(b.try_lock(OwnerId::fresh(), LockMode::Shared).is_err());
}

#[test]
fn threads_and_async_tasks_never_hold_one_lock_together() {
    let lock = Arc::new(NotebookLock::new("/nb/mixed".into()));
    let cs = Arc::new(CriticalSection::default());
    let rounds = 300;
    let mut threads = Vec::new();
    for _ in 0..3 {
        let (lock, cs) = (lock.clone(), cs.clone());
        threads.push(std::thread::spawn(move || {
            for i in 0..rounds {
                let me = OwnerId::current();
                let _g = lock.lock_blocking(me, LockMode::Exclusive, None).unwrap();
                cs.enter();
                if i % 3 == 0 {
                    // Nested on the same thread: re-enters.
                    let _n = lock.lock_blocking(me, LockMode::Exclusive, None).unwrap();
                }
                std::hint::spin_loop();
                cs.leave();
            }
        }));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let (lock, cs) = (lock.clone(), cs.clone());
            tasks.push(tokio::spawn(async move {
                let me = OwnerId::fresh();
                for _ in 0..rounds {
                    let _g = lock
                        .lock_async(me, LockMode::Exclusive, None)
                        .await
                        .unwrap();
                    cs.enter();
                    tokio::task::yield_now().await;
                    cs.leave();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(cs.entries.load(Ordering::SeqCst), 6 * rounds);
    assert!(!lock.snapshot().held);
}

#[test]
fn async_hold_reenters_inside_spawn_blocking() {
    let lock = Arc::new(NotebookLock::new("/nb/nested".into()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let owner = OwnerId::fresh();
        let guard = lock
            .lock_async(owner, LockMode::Exclusive, None)
            .await
            .unwrap();
        let inner = lock.clone();
        let depth = tokio::task::spawn_blocking(move || {
            let _outer = guard;
            with_owner(owner, || {
                // What a GitManager method does inside: lock with the current owner.
                let _a = inner
                    .lock_blocking(
                        OwnerId::current(),
                        LockMode::Exclusive,
                        Some(Duration::from_secs(1)),
                    )
                    .expect("nested call must re-enter, not time out");
                let _b = inner
                    .lock_blocking(
                        OwnerId::current(),
                        LockMode::Shared,
                        Some(Duration::from_secs(1)),
                    )
                    .unwrap();
                inner.snapshot().holders[0].depth
            })
        })
        .await
        .unwrap();
        assert_eq!(depth, 3);
    });
    assert!(!lock.snapshot().held, "every level released");
}

#[test]
fn shared_holders_overlap_and_exclusive_excludes_them() {
    let lock = Arc::new(NotebookLock::new("/nb/rw".into()));
    let readers = 4;
    let barrier = Arc::new(Barrier::new(readers));
    let inside = Arc::new(AtomicUsize::new(0));
    let max_inside = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..readers)
        .map(|_| {
            let (lock, barrier, inside, max_inside) = (
                lock.clone(),
                barrier.clone(),
                inside.clone(),
                max_inside.clone(),
            );
            std::thread::spawn(move || {
                let _g = lock
                    .lock_blocking(OwnerId::current(), LockMode::Shared, None)
                    .unwrap();
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max_inside.fetch_max(now, Ordering::SeqCst);
                // All readers meet while holding: impossible unless they overlap.
                barrier.wait();
                inside.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(max_inside.load(Ordering::SeqCst), readers);

    let reader = lock
        .lock_blocking(OwnerId::fresh(), LockMode::Shared, None)
        .unwrap();
    assert!(lock
        .try_lock(OwnerId::fresh(), LockMode::Exclusive)
        .is_err());
    drop(reader);
    let writer = lock
        .lock_blocking(OwnerId::fresh(), LockMode::Exclusive, None)
        .unwrap();
    assert!(lock.try_lock(OwnerId::fresh(), LockMode::Shared).is_err());
    drop(writer);
}

#[test]
fn waiters_are_served_in_arrival_order() {
    let lock = Arc::new(NotebookLock::new("/nb/fifo".into()));
    let first = lock
        .lock_blocking(OwnerId::fresh(), LockMode::Exclusive, None)
        .unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for i in 0..6 {
        let (l, order) = (lock.clone(), order.clone());
        handles.push(std::thread::spawn(move || {
            let mode = if i % 2 == 0 {
                LockMode::Exclusive
            } else {
                LockMode::Shared
            };
            let _g = l.lock_blocking(OwnerId::fresh(), mode, None).unwrap();
            order.lock().push(i);
        }));
        // Enqueue one at a time so the arrival order is known.
        wait_until("waiter queued", || lock.snapshot().waiters == i + 1);
    }
    drop(first);
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn a_timed_out_wait_leaves_no_trace() {
    let lock = Arc::new(NotebookLock::new("/nb/timeout".into()));
    let holder = lock
        .lock_blocking(OwnerId::fresh(), LockMode::Exclusive, None)
        .unwrap();
    let started = Instant::now();
    let err = lock
        .lock_blocking(
            OwnerId::fresh(),
            LockMode::Exclusive,
            Some(Duration::from_millis(100)),
        )
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(100), "{err}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let err = lock
            .lock_async(
                OwnerId::fresh(),
                LockMode::Shared,
                Some(Duration::from_millis(50)),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        // A dropped (cancelled) wait leaves the queue too.
        let fut = lock.lock_async(OwnerId::fresh(), LockMode::Exclusive, None);
        let _ = tokio::time::timeout(Duration::from_millis(20), fut).await;
    });
    let snap = lock.snapshot();
    assert_eq!(snap.waiters, 0);
    assert_eq!(snap.holders.len(), 1);
    drop(holder);
    assert!(lock.try_lock(OwnerId::fresh(), LockMode::Exclusive).is_ok());
}

#[test]
fn contention_metrics_are_counted() {
    let lock = Arc::new(NotebookLock::new("/nb/metrics".into()));
    let g = lock
        .lock_blocking(OwnerId::fresh(), LockMode::Exclusive, None)
        .unwrap();
    let l2 = lock.clone();
    let t = std::thread::spawn(move || {
        drop(
            l2.lock_blocking(OwnerId::fresh(), LockMode::Exclusive, None)
                .unwrap(),
        );
    });
    wait_until("waiter queued", || lock.snapshot().waiters == 1);
    std::thread::sleep(Duration::from_millis(20)); // let the wait accumulate (measured, not synchronised)
    drop(g);
    t.join().unwrap();
    let m = lock.snapshot().metrics;
    assert_eq!(m.acquisitions, 2);
    assert_eq!(m.contended, 1);
    assert!(m.max_wait >= Duration::from_millis(20), "{m:?}");
    assert!(m.total_hold >= m.max_hold && m.max_hold > Duration::ZERO);
}

#[test]
fn notebooks_never_block_one_another() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    let la = git_lock_manager().lock_for(&a).unwrap();
    let lb = git_lock_manager().lock_for(&b).unwrap();
    let _ga = la
        .lock_blocking(OwnerId::fresh(), LockMode::Exclusive, None)
        .unwrap();
    assert!(lb.try_lock(OwnerId::fresh(), LockMode::Exclusive).is_ok());
}

/// The seed's per-notebook isolation, proven by overlapping holds: each
/// thread commits in its own notebook while holding that notebook's lock,
/// and waits (bounded) inside the hold until the other is inside its own.
/// If one notebook's lock blocked the other, neither rendezvous could happen.
#[test]
fn two_notebooks_commit_in_parallel_with_overlapping_holds() {
    use gitlockd::git::GitManager;
    use std::sync::mpsc;

    let dir = tempfile::tempdir().unwrap();
    let mut managers = Vec::new();
    for name in ["a", "b"] {
        let root = dir.path().join(name);
        std::fs::create_dir(&root).unwrap();
        let gm = GitManager::new(&root)
            .unwrap()
            .with_author(Some("T".into()), Some("t@example.invalid".into()));
        gm.init_or_get_repo(true).unwrap();
        managers.push(gm);
    }
    let (tx_a, rx_a) = mpsc::channel::<()>();
    let (tx_b, rx_b) = mpsc::channel::<()>();
    let pairs = [(tx_a, rx_b), (tx_b, rx_a)];
    let handles: Vec<_> = managers
        .into_iter()
        .zip(pairs)
        .map(|(gm, (tell, hear))| {
            std::thread::spawn(move || {
                let me = OwnerId::current();
                let _hold = gm
                    .lock()
                    .lock_blocking(me, LockMode::Exclusive, None)
                    .unwrap();
                std::fs::write(gm.root().join("f.md"), "x\n").unwrap();
                // Real git work inside the hold (re-enters by owner).
                let id = gm.commit("inside the hold", None).unwrap();
                assert!(id.is_some());
                tell.send(()).unwrap();
                hear.recv_timeout(Duration::from_secs(10))
                    .expect("the other notebook's holder never got in: locks are not independent");
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}
