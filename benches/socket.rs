//! Control-socket lock benchmarks (issue 4), against the release daemon:
//! `lock` + `unlock` round trip from one client (median, p99) next to
//! flock(2) on an open file, the `flock(1)` command, and a bare Unix-socket
//! echo, all in the same run; then 8 clients contending for one notebook
//! (lock hand-offs per second) next to 8 threads contending with flock(2).
//!
//!   cargo bench --bench socket
//!   GITLOCKD_BENCH_ROUNDS=5000 GITLOCKD_BENCH_RUNS=3 GITLOCKD_BENCH_CONTEND_MS=3000 cargo bench --bench socket

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const LOCK: &[u8] = b"{\"cmd\":\"lock\",\"notebook\":\"nb\"}\n";
const UNLOCK: &[u8] = b"{\"cmd\":\"unlock\",\"notebook\":\"nb\"}\n";
const PING: &[u8] = b"{\"cmd\":\"ping\"}\n";

fn ok(line: &str) -> bool {
    line.contains("\"ok\":true")
}

fn main() {
    print_header("control socket lock (issue 4)");
    let rounds = env_usize("GITLOCKD_BENCH_ROUNDS", 20_000);
    let runs = env_usize("GITLOCKD_BENCH_RUNS", 5);
    let spawns = env_usize("GITLOCKD_BENCH_SPAWNS", 300);
    let contend = env_ms("GITLOCKD_BENCH_CONTEND_MS", 5000);
    let clients = env_usize("GITLOCKD_BENCH_CLIENTS", 8);

    let sb = Sandbox::new();
    let repo = sb.repo("nb");
    repo.write("a.md", "a\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "init"]);
    sb.write_config("debounce = \"100ms\"", &[("nb", &repo.path, "")]);
    let daemon = sb.start_daemon();
    println!(
        "   daemon pid {} ready after {}",
        daemon.pid(),
        fmt_d(daemon.ready_after)
    );

    let mut rows = Vec::new();
    if section_enabled("roundtrip") {
        rows.extend(round_trip(&sb, rounds, runs, spawns));
    }
    if section_enabled("contend") {
        rows.extend(contention(&sb, clients, contend, runs.min(3)));
    }
    let cpu = daemon.cpu_time();
    println!("   daemon CPU time over the whole bench: {}", fmt_d(cpu));
    print_table("control socket lock", &rows);
    daemon.stop();
}

fn round_trip(sb: &Sandbox, rounds: usize, runs: usize, spawns: usize) -> Vec<Row> {
    let mut c = Client::connect(&sb.socket);
    // Warm-up, and a check that the requests do what we think.
    for _ in 0..1000 {
        let l = c.round_trip(LOCK).to_string();
        assert!(ok(&l), "lock: {l}");
        let l = c.round_trip(UNLOCK).to_string();
        assert!(ok(&l) && l.contains("\"depth\":0"), "{l}");
    }
    let mut all = Vec::with_capacity(rounds * runs);
    let mut run_medians = Vec::new();
    for run in 0..runs {
        let mut samples = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let t = Instant::now();
            let a = ok(c.round_trip(LOCK));
            let b = ok(c.round_trip(UNLOCK));
            samples.push(t.elapsed());
            assert!(a && b);
        }
        let s = Stats::new(samples.clone());
        println!(
            "   run {}: lock+unlock median {} p99 {} (load {})",
            run + 1,
            fmt_d(s.median()),
            fmt_d(s.pct(99.0)),
            load1()
        );
        run_medians.push(s.median());
        all.extend(samples);
    }
    let ours = Stats::new(all);
    let runs_s = Stats::new(run_medians);

    // Floor 1: the daemon's cheapest request, twice (ping is not locked).
    let mut pings = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        assert!(ok(c.round_trip(PING)));
        assert!(ok(c.round_trip(PING)));
        pings.push(t.elapsed());
    }
    let pings = Stats::new(pings);

    // Floor 2: two line round trips over a Unix socket to an echo thread.
    let echo = echo_round_trips(rounds);

    // Reference 1: flock(2) take + drop on an open file, in-process.
    let path = sb.root.join("ref.lock");
    let file = std::fs::File::create(&path).unwrap();
    let fd = file.as_raw_fd();
    let mut fl = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        unsafe {
            assert_eq!(libc::flock(fd, libc::LOCK_EX), 0);
            assert_eq!(libc::flock(fd, libc::LOCK_UN), 0);
        }
        fl.push(t.elapsed());
    }
    let fl = Stats::new(fl);

    // Reference 2: the flock(1) command taking and dropping a lock on a file.
    let mut sp = Vec::with_capacity(spawns);
    for _ in 0..spawns {
        let t = Instant::now();
        let st = Command::new("flock")
            .arg(&path)
            .arg("true")
            .stdin(Stdio::null())
            .status()
            .unwrap();
        sp.push(t.elapsed());
        assert!(st.success());
    }
    let sp = Stats::new(sp);

    let target = Duration::from_micros(50);
    vec![
        Row::new(
            "socket lock+unlock round trip, 1 client: median",
            format!(
                "{} (run medians {}..{})",
                fmt_d(ours.median()),
                fmt_d(runs_s.min()),
                fmt_d(runs_s.max())
            ),
            format!(
                "flock(2) {} ; flock(1) spawn {}",
                fmt_d(fl.median()),
                fmt_d(sp.median())
            ),
            "≤ 50 µs",
            Some(ours.median() <= target),
        ),
        Row::new(
            "  p99",
            fmt_d(ours.pct(99.0)),
            format!(
                "flock(2) {} ; flock(1) spawn {}",
                fmt_d(fl.pct(99.0)),
                fmt_d(sp.pct(99.0))
            ),
            "—",
            None,
        ),
        Row::new(
            "  floor: 2 x ping to the daemon / 2 x bare socket echo",
            format!("{} / p99 {}", fmt_d(pings.median()), fmt_d(pings.pct(99.0))),
            format!(
                "echo thread {} / p99 {}",
                fmt_d(echo.median()),
                fmt_d(echo.pct(99.0))
            ),
            "—",
            None,
        ),
    ]
}

/// Two request/response line exchanges with a thread that echoes lines back.
fn echo_round_trips(rounds: usize) -> Stats {
    let (a, b) = UnixStream::pair().unwrap();
    let server = std::thread::spawn(move || {
        let mut r = BufReader::new(b.try_clone().unwrap());
        let mut w = b;
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            w.write_all(b"{\"ok\":true,\"depth\":1}\n").unwrap();
        }
    });
    let mut r = BufReader::new(a.try_clone().unwrap());
    let mut w = a;
    let mut line = String::new();
    let mut one = |req: &[u8]| {
        w.write_all(req).unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
    };
    for _ in 0..1000 {
        one(LOCK);
    }
    let mut s = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        one(LOCK);
        one(UNLOCK);
        s.push(t.elapsed());
    }
    drop(w);
    drop(r);
    server.join().unwrap();
    Stats::new(s)
}

/// Result of one contention window.
struct Contention {
    acquisitions: u64,
    handoffs: u64,
    secs: f64,
    waits: Vec<Duration>,
}

fn contention(sb: &Sandbox, clients: usize, window: Duration, runs: usize) -> Vec<Row> {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for run in 0..runs {
        let socket = sb.socket.clone();
        let o = contend(clients, window, move |_id| {
            let mut c = Client::connect(&socket);
            move |cs: &dyn Fn()| {
                assert!(ok(c.round_trip(LOCK)));
                cs();
                assert!(ok(c.round_trip(UNLOCK)));
            }
        });
        let path = sb.root.join("contend.lock");
        std::fs::File::create(&path).unwrap();
        let t = contend(clients, window, move |_id| {
            let f = std::fs::File::open(&path).unwrap();
            move |cs: &dyn Fn()| unsafe {
                assert_eq!(libc::flock(f.as_raw_fd(), libc::LOCK_EX), 0);
                cs();
                assert_eq!(libc::flock(f.as_raw_fd(), libc::LOCK_UN), 0);
            }
        });
        println!(
            "   run {}: socket {:.0} hand-offs/s ({} acquisitions) ; flock(2) {:.0} hand-offs/s (load {})",
            run + 1,
            o.handoffs as f64 / o.secs,
            o.acquisitions,
            t.handoffs as f64 / t.secs,
            load1()
        );
        ours.push(o);
        theirs.push(t);
    }
    let rate = |v: &[Contention]| {
        let mut r: Vec<f64> = v.iter().map(|c| c.handoffs as f64 / c.secs).collect();
        r.sort_by(|a, b| a.partial_cmp(b).unwrap());
        r[r.len() / 2]
    };
    let acq = |v: &[Contention]| {
        let mut r: Vec<f64> = v.iter().map(|c| c.acquisitions as f64 / c.secs).collect();
        r.sort_by(|a, b| a.partial_cmp(b).unwrap());
        r[r.len() / 2]
    };
    let waits =
        |v: &[Contention]| Stats::new(v.iter().flat_map(|c| c.waits.iter().copied()).collect());
    let (ow, tw) = (waits(&ours), waits(&theirs));
    vec![
        Row::new(
            &format!("{clients} clients contending for one notebook: hand-offs/s"),
            format!("{:.0}/s (acquisitions {:.0}/s)", rate(&ours), acq(&ours)),
            format!(
                "{clients} threads on flock(2): {:.0}/s (acquisitions {:.0}/s)",
                rate(&theirs),
                acq(&theirs)
            ),
            "—",
            None,
        ),
        Row::new(
            "  time from lock request to held: median / p99",
            format!("{} / {}", fmt_d(ow.median()), fmt_d(ow.pct(99.0))),
            format!("flock(2) {} / {}", fmt_d(tw.median()), fmt_d(tw.pct(99.0))),
            "—",
            None,
        ),
    ]
}

/// `clients` threads loop take → critical-section check → drop for `window`.
/// A hand-off is an acquisition by a different client than the previous one.
/// Panics if two clients are ever inside at once.
fn contend<F, G>(clients: usize, window: Duration, make: F) -> Contention
where
    F: Fn(u64) -> G,
    G: FnMut(&dyn Fn()) + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let inside = Arc::new(AtomicBool::new(false));
    let last = Arc::new(AtomicU64::new(0));
    let handoffs = Arc::new(AtomicU64::new(0));
    let start = Arc::new(std::sync::Barrier::new(clients + 1));
    let mut threads = Vec::new();
    for id in 1..=clients as u64 {
        let mut take = make(id);
        let (stop, inside, last, handoffs, start) = (
            stop.clone(),
            inside.clone(),
            last.clone(),
            handoffs.clone(),
            start.clone(),
        );
        threads.push(std::thread::spawn(move || {
            start.wait();
            let mut n = 0u64;
            let mut waits = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let asked = Instant::now();
                let waited = std::cell::Cell::new(Duration::ZERO);
                take(&|| {
                    waited.set(asked.elapsed());
                    assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                    if last.swap(id, Ordering::Relaxed) != id {
                        handoffs.fetch_add(1, Ordering::Relaxed);
                    }
                    inside.store(false, Ordering::SeqCst);
                });
                waits.push(waited.get());
                n += 1;
            }
            (n, waits)
        }));
    }
    start.wait();
    let t = Instant::now();
    std::thread::sleep(window);
    stop.store(true, Ordering::Relaxed);
    let mut acquisitions = 0;
    let mut waits = Vec::new();
    for h in threads {
        let (n, w) = h.join().unwrap();
        acquisitions += n;
        waits.extend(w);
    }
    Contention {
        acquisitions,
        handoffs: handoffs.load(Ordering::Relaxed),
        secs: t.elapsed().as_secs_f64(),
        waits,
    }
}
