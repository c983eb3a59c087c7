//! In-process lock benchmarks (issue 2): uncontended lock + unlock of a
//! `NotebookLock` against `parking_lot::Mutex`, `std::sync::Mutex` and
//! `flock(2)` on an open file, measured in the same run; plus a two-thread
//! hand-off rate against `flock(2)`.
//!
//!   cargo bench --bench lock
//!   GITLOCKD_BENCH_LOCK_ITERS=2000000 GITLOCKD_BENCH_RUNS=7 cargo bench --bench lock

mod common;

use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use gitlockd::lock::{LockMode, NotebookLock, OwnerId};

/// Runs `f(iters)` `runs` times; each run's time per operation.
fn measure(runs: usize, iters: u64, mut f: impl FnMut(u64)) -> Stats {
    f(iters / 10 + 1); // warm-up
    Stats::new(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f(iters);
                per_op(t.elapsed(), iters)
            })
            .collect(),
    )
}

fn main() {
    print_header("in-process lock (issue 2)");
    let iters = env_usize("GITLOCKD_BENCH_LOCK_ITERS", 5_000_000) as u64;
    let runs = env_usize("GITLOCKD_BENCH_RUNS", 7);
    println!("   {runs} runs x {iters} lock+unlock pairs; median (min) per pair");

    let lock = NotebookLock::new(PathBuf::from("/bench/notebook"));
    let owner = OwnerId::fresh();

    let exclusive = measure(runs, iters, |n| {
        for _ in 0..n {
            let g = lock
                .lock_blocking(owner, LockMode::Exclusive, None)
                .unwrap();
            drop(black_box(g));
        }
    });
    let shared = measure(runs, iters, |n| {
        for _ in 0..n {
            let g = lock.lock_blocking(owner, LockMode::Shared, None).unwrap();
            drop(black_box(g));
        }
    });
    let with_timeout = measure(runs, iters, |n| {
        for _ in 0..n {
            let g = lock
                .lock_blocking(owner, LockMode::Exclusive, Some(Duration::from_secs(30)))
                .unwrap();
            drop(black_box(g));
        }
    });
    let try_lock = measure(runs, iters, |n| {
        for _ in 0..n {
            let g = lock.try_lock(owner, LockMode::Exclusive).unwrap();
            drop(black_box(g));
        }
    });
    // A reentrant level inside an existing hold (what nested GitManager calls pay).
    let outer = lock
        .lock_blocking(owner, LockMode::Exclusive, None)
        .unwrap();
    let reentrant = measure(runs, iters, |n| {
        for _ in 0..n {
            let g = lock
                .lock_blocking(owner, LockMode::Exclusive, None)
                .unwrap();
            drop(black_box(g));
        }
    });
    drop(outer);
    // OwnerId::current() as GitManager methods use it.
    let current = measure(runs, iters, |n| {
        for _ in 0..n {
            let g = lock
                .lock_blocking(OwnerId::current(), LockMode::Exclusive, None)
                .unwrap();
            drop(black_box(g));
        }
    });

    // References, same run.
    let pl = parking_lot::Mutex::new(0u64);
    let pl_stats = measure(runs, iters, |n| {
        for _ in 0..n {
            *black_box(&pl).lock() += 1;
        }
    });
    let sm = std::sync::Mutex::new(0u64);
    let std_stats = measure(runs, iters, |n| {
        for _ in 0..n {
            *black_box(&sm).lock().unwrap() += 1;
        }
    });
    let sb = Sandbox::new();
    let file = std::fs::File::create(sb.root.join("flock")).unwrap();
    let fd = file.as_raw_fd();
    let flock_iters = (iters / 10).max(1000);
    let flock_stats = measure(runs, flock_iters, |n| {
        for _ in 0..n {
            unsafe {
                assert_eq!(libc::flock(fd, libc::LOCK_EX), 0);
                assert_eq!(libc::flock(fd, libc::LOCK_UN), 0);
            }
        }
    });

    // What the lock's two clock reads per hold (acquired-at, held-for) cost here.
    let clock = measure(runs, iters, |n| {
        for _ in 0..n {
            black_box(Instant::now());
        }
    });
    let coarse = measure(runs, iters, |n| {
        for _ in 0..n {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
            black_box(ts);
        }
    });

    let fig = |s: &Stats| format!("{} ({})", fmt_d(s.median()), fmt_d(s.min()));
    let target = Duration::from_nanos(100);
    let refs = format!(
        "parking_lot {} ; std Mutex {} ; flock(2) {}",
        fig(&pl_stats),
        fig(&std_stats),
        fig(&flock_stats)
    );
    let mut rows = vec![Row::new(
        "lock_blocking+drop, exclusive, uncontended",
        fig(&exclusive),
        refs,
        "≤ 100 ns",
        Some(exclusive.median() <= target),
    )];
    for (what, s) in [
        ("  same, shared mode", &shared),
        ("  same, with a 30 s timeout", &with_timeout),
        ("  try_lock+drop", &try_lock),
        ("  reentrant level inside a hold", &reentrant),
        ("  owner = OwnerId::current()", &current),
    ] {
        rows.push(Row::new(
            what,
            fig(s),
            String::new(),
            "≤ 100 ns",
            Some(s.median() <= target),
        ));
    }
    rows.push(Row::new(
        "  context: one Instant::now() (the lock reads the clock twice a hold)",
        fig(&clock),
        format!("CLOCK_MONOTONIC_COARSE {}", fig(&coarse)),
        "—",
        None,
    ));

    // Hand-off between two threads, each taking and dropping the lock in a loop.
    let secs = env_ms("GITLOCKD_BENCH_HANDOFF_MS", 2000);
    let ours = handoffs(secs, {
        let lock = Arc::new(NotebookLock::new(PathBuf::from("/bench/handoff")));
        move || {
            let lock = lock.clone();
            let me = OwnerId::fresh();
            move |cs: &dyn Fn()| {
                let g = lock.lock_blocking(me, LockMode::Exclusive, None).unwrap();
                cs();
                drop(g);
            }
        }
    });
    let path = sb.root.join("flock-handoff");
    std::fs::File::create(&path).unwrap();
    let theirs = handoffs(secs, move || {
        // Each thread its own open file description, like separate processes.
        let f = std::fs::File::open(&path).unwrap();
        move |cs: &dyn Fn()| unsafe {
            assert_eq!(libc::flock(f.as_raw_fd(), libc::LOCK_EX), 0);
            cs();
            assert_eq!(libc::flock(f.as_raw_fd(), libc::LOCK_UN), 0);
        }
    });
    rows.push(Row::new(
        "2 threads contending: lock acquisitions/s",
        format!("{:.0}/s ({:.0} hand-offs/s)", ours.0, ours.1),
        format!("flock(2) {:.0}/s ({:.0} hand-offs/s)", theirs.0, theirs.1),
        "—",
        None,
    ));
    print_table("in-process lock", &rows);
}

/// Two threads loop take+drop for `window`; returns (acquisitions/s,
/// hand-offs/s: acquisitions by the other thread than the previous one).
/// On a loaded 2-core machine a thread often runs alone for its time slice.
fn handoffs<F, G>(window: Duration, make: F) -> (f64, f64)
where
    F: Fn() -> G,
    G: FnMut(&dyn Fn()) + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let last = Arc::new(AtomicU64::new(0));
    let switches = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for id in 1..=2u64 {
        let mut take = make();
        let (stop, last, switches) = (stop.clone(), last.clone(), switches.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Inside the hold: who held it last.
                take(&|| {
                    if last.swap(id, Ordering::Relaxed) != id {
                        switches.fetch_add(1, Ordering::Relaxed);
                    }
                });
                n += 1;
            }
            n
        }));
    }
    let t = Instant::now();
    std::thread::sleep(window);
    stop.store(true, Ordering::Relaxed);
    let per: Vec<u64> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    if std::env::var("GITLOCKD_BENCH_DEBUG").is_ok() {
        println!("   per-thread acquisitions: {per:?}");
    }
    let total: u64 = per.iter().sum();
    let secs = t.elapsed().as_secs_f64();
    (
        total as f64 / secs,
        switches.load(Ordering::Relaxed) as f64 / secs,
    )
}
