//! Daemon benchmarks (issue 3), through the real release binary:
//!
//! - `latency`: save-to-commit latency beyond the configured debounce
//!   (median, p95) on a 1,000-file notebook, next to `git add F && git
//!   commit -q -m x` on the same repository in the same run;
//! - `burst`: 2,000 files created at once: time until all are committed,
//!   number of commits, every file checked in HEAD;
//! - `idle`: CPU time and wake-ups while idle for 60 s on a 100,000-file
//!   notebook, and RSS, next to what one `git status` of that repository
//!   costs (what a poller would pay per poll); then the end-to-end
//!   save-to-commit on that notebook.
//!
//!   cargo bench --bench daemon
//!   GITLOCKD_BENCH_FILES=10000 GITLOCKD_BENCH_IDLE_SECS=10 cargo bench --bench daemon
//!   GITLOCKD_BENCH_ONLY=latency,burst cargo bench --bench daemon

mod common;
#[path = "daemon_naive/mod.rs"]
mod naive;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use naive::Naive;
use serde_json::{json, Value};

fn main() {
    print_header("daemon (issue 3)");
    let mut rows = Vec::new();
    if section_enabled("latency") || section_enabled("burst") {
        rows.extend(small_notebook());
    }
    if section_enabled("idle") {
        rows.extend(big_notebook());
    }
    print_table("daemon", &rows);
}

/// A subscription to one notebook's events.
struct Events {
    c: Client,
}

impl Events {
    fn subscribe(socket: &Path, notebook: &str) -> Events {
        let mut c = Client::connect(socket);
        c.ok(json!({"cmd": "subscribe", "notebook": notebook}));
        Events { c }
    }

    /// The next commit event: (when it arrived, commit id, paths).
    fn next_commit(&mut self) -> (Instant, String, Vec<String>) {
        loop {
            let line = self.c.read_line().to_string();
            let at = Instant::now();
            let v: Value = serde_json::from_str(&line).unwrap();
            match v["event"].as_str() {
                Some("commit") => {
                    let paths = v["paths"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p.as_str().unwrap().to_string())
                        .collect();
                    return (at, v["commit"].as_str().unwrap_or("").to_string(), paths);
                }
                Some("lagged") => panic!("subscription lagged: {line}"),
                _ => continue,
            }
        }
    }
}

/// `git add F && git commit -q -m x` on `repo`, `n` times (files `d0000/fNN.md`).
fn cli_commits(repo: &Repo, n: usize, tag: &str) -> Stats {
    let mut v = Vec::new();
    for i in 0..n {
        let rel = format!("d0000/f{:02}.md", i % 100);
        // Unique content, so a reused sandbox still sees a change.
        repo.write(
            &rel,
            &format!("cli {tag} {i} {:?}\n", std::time::SystemTime::now()),
        );
        let_mtime_settle();
        let t = Instant::now();
        assert!(repo.git_quiet(&["add", &rel]));
        assert!(repo.git_quiet(&["commit", "-q", "-m", "x"]));
        v.push(t.elapsed());
    }
    Stats::new(v)
}

/// One plain save (truncate and write in place) of `rel` in `root`: when it was written.
fn save(root: &Path, rel: &str, i: usize) -> Instant {
    std::fs::write(root.join(rel), format!("saved {i} {:?}\n", Instant::now())).unwrap();
    Instant::now()
}

/// Saves one file and times save → commit event; returns the latency beyond `debounce`.
fn save_latency(
    repo: &Repo,
    events: &mut Events,
    i: usize,
    debounce: Duration,
    dir: &str,
) -> Duration {
    let rel = format!("{dir}/f{:02}.md", i % 100);
    let saved = save(&repo.path, &rel, i);
    let (at, _id, paths) = events.next_commit();
    assert!(
        paths.contains(&rel),
        "commit of {rel} expected, got {paths:?}"
    );
    (at - saved).saturating_sub(debounce)
}

/// The same save on the naive loop's copy, timed to its commit.
/// Also returns the loop's CPU time so far.
fn naive_save_latency(
    copy: &Path,
    naive: &Naive,
    i: usize,
    debounce: Duration,
    dir: &str,
) -> (Duration, Duration) {
    let saved = save(copy, &format!("{dir}/f{:02}.md", i % 100), i);
    let commit = naive.next();
    ((commit.at - saved).saturating_sub(debounce), commit.cpu)
}

/// Lets a notebook go quiet before the next save, at an irregular phase.
fn pause(i: usize) {
    std::thread::sleep(Duration::from_millis(40 + (i as u64 * 37) % 60));
}

/// Saves one file at a time and times save → commit event; returns the
/// latencies beyond `debounce`.
fn save_latencies(
    repo: &Repo,
    events: &mut Events,
    saves: usize,
    debounce: Duration,
    dir: &str,
) -> Stats {
    let mut beyond = Vec::new();
    for i in 0..saves {
        beyond.push(save_latency(repo, events, i, debounce, dir));
        pause(i);
    }
    Stats::new(beyond)
}

/// A 2,000-file burst written into `root/burst/`: (when writing started, when it ended, the files).
fn write_burst(root: &Path, burst: usize) -> (Instant, Instant, BTreeSet<String>) {
    let mut expected = BTreeSet::new();
    let started = Instant::now();
    std::fs::create_dir_all(root.join("burst")).unwrap();
    for i in 0..burst {
        let rel = format!("burst/n{i:05}.md");
        std::fs::write(root.join(&rel), format!("burst {i}\n")).unwrap();
        expected.insert(rel);
    }
    (started, Instant::now(), expected)
}

fn small_notebook() -> Vec<Row> {
    let files = env_usize("GITLOCKD_BENCH_SMALL_FILES", 1000);
    let saves = env_usize("GITLOCKD_BENCH_SAVES", 30);
    let burst = env_usize("GITLOCKD_BENCH_BURST", 2000);
    let debounce = env_ms("GITLOCKD_BENCH_DEBOUNCE_MS", 500);
    let sb = Sandbox::new();
    let repo = sb.big_repo("notes", files);
    // Reference first, on the same repository, before the daemon watches it.
    let cli = cli_commits(&repo, 10, "small");
    // The naive loop's identical copy.
    let copy = repo.path.with_file_name("notes-naive");
    if !copy.exists() {
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(&repo.path)
            .arg(&copy)
            .status()
            .unwrap();
        assert!(ok.success(), "cp -a of the repository failed");
    }
    let naive_repo = Repo {
        path: copy.clone(),
        env: repo.env.clone(),
    };
    sb.write_config(
        &format!("debounce = \"{}ms\"", debounce.as_millis()),
        &[("notes", &repo.path, "")],
    );
    let daemon = sb.start_daemon();
    println!(
        "   1,000-file notebook: daemon ready after {} (debounce {})",
        fmt_d(daemon.ready_after),
        fmt_d(debounce)
    );
    let mut events = Events::subscribe(&sb.socket, "notes");
    let naive = Naive::start(&copy, &repo.env, debounce);
    let mut rows = Vec::new();
    // The naive loop's CPU time at its last commit.
    let mut naive_cpu0 = Duration::ZERO;

    if section_enabled("latency") {
        // Warm-up saves, not counted.
        save_latency(&repo, &mut events, 0, debounce, "d0001");
        naive_save_latency(&copy, &naive, 0, debounce, "d0001");
        // Alternated, so that both see the same load.
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for i in 0..saves {
            ours.push(save_latency(&repo, &mut events, i, debounce, "d0002"));
            pause(i);
            let (beyond, cpu) = naive_save_latency(&copy, &naive, i, debounce, "d0002");
            theirs.push(beyond);
            naive_cpu0 = cpu;
            pause(i);
        }
        let (s, n) = (Stats::new(ours), Stats::new(theirs));
        println!(
            "   save→commit beyond debounce: median {} p95 {} max {} ({} saves, load {}); naive loop: median {} p95 {}",
            fmt_d(s.median()),
            fmt_d(s.pct(95.0)),
            fmt_d(s.max()),
            s.len(),
            load1(),
            fmt_d(n.median()),
            fmt_d(n.pct(95.0)),
        );
        rows.push(Row::new(
            &format!(
                "save→commit beyond debounce ({}), {files} files: median",
                fmt_d(debounce)
            ),
            fmt_d(s.median()),
            format!(
                "naive inotify + `git add -A && git commit` loop: {} ; `git add F && git commit`: {}",
                fmt_d(n.median()),
                fmt_d(cli.median())
            ),
            "≤ 5 ms",
            Some(s.median() <= Duration::from_millis(5)),
        ));
        rows.push(Row::new(
            "  p95 / max",
            format!("{} / {}", fmt_d(s.pct(95.0)), fmt_d(s.max())),
            format!(
                "naive {} / {} ; CLI {} / {}",
                fmt_d(n.pct(95.0)),
                fmt_d(n.max()),
                fmt_d(cli.pct(95.0)),
                fmt_d(cli.max())
            ),
            "—",
            None,
        ));
        assert!(repo.status_clean(), "not clean after the saves");
    }

    if section_enabled("burst") {
        let before = repo.count();
        let cpu0 = daemon.cpu_time();
        let (started, written, expected) = write_burst(&repo.path, burst);
        let mut seen = BTreeSet::new();
        let mut commits = 0;
        let mut done = written;
        while !expected.is_subset(&seen) {
            let (at, _id, paths) = events.next_commit();
            commits += 1;
            seen.extend(paths);
            done = at;
        }
        let cpu = daemon.cpu_time() - cpu0;
        let in_head: BTreeSet<String> = repo
            .git(&["ls-tree", "-r", "--name-only", "HEAD", "burst/"])
            .lines()
            .map(str::to_string)
            .collect();
        let all_in_head = in_head == expected;
        let git_commits = repo.count() - before;
        let after_last = done - written;
        let beyond = after_last.saturating_sub(debounce);

        // The naive loop, same burst on its copy.
        let (_, naive_written, _) = write_burst(&copy, burst);
        let naive_commit = naive.next();
        let naive_beyond = (naive_commit.at - naive_written).saturating_sub(debounce);
        let naive_cpu = naive_commit.cpu - naive_cpu0;
        assert!(
            naive_repo.status_clean(),
            "naive copy not clean after the burst"
        );
        println!(
            "   burst of {burst}: written in {}, all committed {} after the last write ({} beyond debounce), {} after the first; {commits} commit(s) ({git_commits} by git rev-list); all in HEAD: {all_in_head}; daemon CPU {} ; naive loop: {} beyond debounce, CPU {}",
            fmt_d(written - started),
            fmt_d(after_last),
            fmt_d(beyond),
            fmt_d(done - started),
            fmt_d(cpu),
            fmt_d(naive_beyond),
            fmt_d(naive_cpu),
        );
        rows.push(Row::new(
            &format!("{burst} files at once: last write → all committed, beyond debounce"),
            format!(
                "{} (writing took {})",
                fmt_d(beyond),
                fmt_d(written - started)
            ),
            format!("naive loop: {}", fmt_d(naive_beyond)),
            "≤ 150 ms",
            Some(beyond <= Duration::from_millis(150)),
        ));
        rows.push(Row::new(
            "  daemon CPU from the first write to the last commit",
            fmt_d(cpu),
            format!("naive loop (its thread + git): {}", fmt_d(naive_cpu)),
            "≤ 500 ms",
            Some(cpu <= Duration::from_millis(500)),
        ));
        rows.push(Row::new(
            "  commits / every file in HEAD",
            format!(
                "{commits} ({git_commits} in git log) / {}",
                if all_in_head { "yes" } else { "NO" }
            ),
            String::new(),
            "1 / yes",
            Some(commits == 1 && all_in_head && git_commits == commits),
        ));
        assert!(repo.status_clean(), "not clean after the burst");
    }
    let rss = daemon.status_kb("VmRSS");
    let hwm = daemon.status_kb("VmHWM");
    rows.push(Row::new(
        &format!("  daemon RSS with a {files}-file notebook (now / peak)"),
        format!(
            "{:.1} / {:.1} MiB",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        ),
        String::new(),
        "—",
        None,
    ));
    daemon.stop();
    rows
}

/// Spawns `git status` on the repo and returns (wall, CPU, max RSS kB) via wait4.
fn git_status_cost(repo: &Repo) -> (Duration, Duration, u64) {
    let t = Instant::now();
    let child = repo
        .cmd(&["status", "--porcelain"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(pid, child.id() as i32);
    let wall = t.elapsed();
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    std::mem::forget(child);
    (wall, tv(ru.ru_utime) + tv(ru.ru_stime), ru.ru_maxrss as u64)
}

fn big_notebook() -> Vec<Row> {
    let files = env_usize("GITLOCKD_BENCH_FILES", 100_000);
    let idle = Duration::from_secs(env_usize("GITLOCKD_BENCH_IDLE_SECS", 60) as u64);
    let debounce = env_ms("GITLOCKD_BENCH_DEBOUNCE_MS", 500);
    let e2e_saves = env_usize("GITLOCKD_BENCH_BIG_SAVES", 10);
    let sb = Sandbox::new();
    let repo = sb.big_repo("big", files);
    let cli = cli_commits(&repo, 5, "big");
    // A poller's cost per poll, same repository (warm cache: second run counted).
    git_status_cost(&repo);
    let polls: Vec<_> = (0..3).map(|_| git_status_cost(&repo)).collect();
    let poll_cpu = Stats::new(polls.iter().map(|p| p.1).collect()).median();
    let poll_wall = Stats::new(polls.iter().map(|p| p.0).collect()).median();
    let poll_rss = polls.iter().map(|p| p.2).max().unwrap();

    sb.write_config(
        &format!("debounce = \"{}ms\"", debounce.as_millis()),
        &[("big", &repo.path, "")],
    );
    let daemon = sb.start_daemon();
    let mut c = Client::connect(&sb.socket);
    // Catch-up at start (a status of the whole tree) must be over before the window.
    let status = wait_caught_up(&mut c, "big");
    let startup_cpu = daemon.cpu_time();
    let startup_hwm = daemon.status_kb("VmHWM");
    println!(
        "   {files}-file notebook: ready after {} ; start-up CPU {} ; {} inotify watches ; {} threads",
        fmt_d(daemon.ready_after),
        fmt_d(startup_cpu),
        status["watches"],
        daemon.threads()
    );
    drop(c);
    // tokio's blocking threads (used by the catch-up commit) exit after 10 s
    // idle: measure the steady state after that.
    std::thread::sleep(env_ms("GITLOCKD_BENCH_IDLE_WARMUP_MS", 12_000));
    let (cpu0, cs0, threads0) = (
        daemon.cpu_time(),
        daemon.context_switches(),
        daemon.threads(),
    );
    println!("   idle window of {} … (load {})", fmt_d(idle), load1());
    std::thread::sleep(idle);
    let (cpu1, cs1, threads1) = (
        daemon.cpu_time(),
        daemon.context_switches(),
        daemon.threads(),
    );
    let rss = daemon.status_kb("VmRSS");
    let hwm = daemon.status_kb("VmHWM");
    let idle_cpu = cpu1 - cpu0;
    // Threads alive at both ends; a thread that came or went is reported.
    let wakeups: u64 = cs1
        .iter()
        .filter_map(|(tid, n)| cs0.get(tid).map(|m| n.saturating_sub(*m)))
        .sum();
    if threads0 != threads1 {
        println!("   threads changed during the idle window: {threads0} -> {threads1}");
    }
    println!(
        "   idle: CPU {} ; {} context switches ; RSS {:.1} MiB (peak {:.1} MiB) (load {})",
        fmt_d(idle_cpu),
        wakeups,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        load1()
    );

    // End to end on the big notebook: save → commit event.
    let mut events = Events::subscribe(&sb.socket, "big");
    save_latencies(&repo, &mut events, 1, debounce, "d0003");
    let e2e = save_latencies(&repo, &mut events, e2e_saves, debounce, "d0004");
    assert!(repo.status_clean(), "not clean after the saves");
    let rss_after = daemon.status_kb("VmRSS");
    let hwm_after = daemon.status_kb("VmHWM");
    // Once the blocking thread that committed has exited (10 s idle).
    std::thread::sleep(env_ms("GITLOCKD_BENCH_IDLE_WARMUP_MS", 12_000));
    let rss_settled = daemon.status_kb("VmRSS");
    let ready_after = daemon.ready_after;
    daemon.stop();
    // Start again on the index our own commits wrote (its cache-tree is
    // then invalid, unlike one `git commit` wrote).
    let daemon = sb.start_daemon();
    let mut c = Client::connect(&sb.socket);
    wait_caught_up(&mut c, "big");
    let restart_hwm = daemon.status_kb("VmHWM");
    let restart_cpu = daemon.cpu_time();
    drop(c);
    daemon.stop();

    let mib = |kb: u64| format!("{:.1} MiB", kb as f64 / 1024.0);
    let tick =
        Duration::from_nanos(1_000_000_000 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64);
    vec![
        Row::new(
            &format!("idle {} on {files} files: daemon CPU", fmt_d(idle)),
            format!("{} ({} context switches)", fmt_d(idle_cpu), wakeups),
            format!(
                "one `git status` poll: {} CPU, {} wall",
                fmt_d(poll_cpu),
                fmt_d(poll_wall)
            ),
            &format!("~0 (≤ 1 tick = {})", fmt_d(tick)),
            Some(idle_cpu <= tick),
        ),
        Row::new(
            &format!("RSS watching {files} files (after idle)"),
            format!(
                "{} (peak {} ; start-up peak {})",
                mib(rss),
                mib(hwm),
                mib(startup_hwm)
            ),
            format!("`git status` max RSS {}", mib(poll_rss)),
            "≤ 30 MiB",
            Some(rss <= 30 * 1024),
        ),
        Row::new(
            "  RSS right after the end-to-end saves (now / peak)",
            format!("{} / {}", mib(rss_after), mib(hwm_after)),
            String::new(),
            "≤ 30 MiB",
            Some(rss_after <= 30 * 1024),
        ),
        Row::new(
            "  RSS 12 s after the last commit",
            mib(rss_settled),
            String::new(),
            "≤ 30 MiB",
            Some(rss_settled <= 30 * 1024),
        ),
        Row::new(
            &format!("save→commit beyond debounce, {files} files: median / p95"),
            format!("{} / {}", fmt_d(e2e.median()), fmt_d(e2e.pct(95.0))),
            format!(
                "git add F && git commit: {} / {}",
                fmt_d(cli.median()),
                fmt_d(cli.pct(95.0))
            ),
            "—",
            None,
        ),
        Row::new(
            "  start-up: ready / catch-up CPU",
            format!("{} / {}", fmt_d(ready_after), fmt_d(startup_cpu)),
            String::new(),
            "—",
            None,
        ),
        Row::new(
            "  restart on an index gitlockd wrote: peak RSS / CPU",
            format!("{} / {}", mib(restart_hwm), fmt_d(restart_cpu)),
            String::new(),
            "≤ 30 MiB",
            Some(restart_hwm <= 30 * 1024),
        ),
    ]
}

/// The notebook's status once its start-up catch-up is over (nothing
/// pending, no error). Polled: the catch-up takes a moment on big trees.
fn wait_caught_up(c: &mut Client, notebook: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let v = c.ok(json!({"cmd": "status", "notebook": notebook}));
        let nb = v["notebooks"][0].clone();
        if nb["pending"] == json!(0) && nb["last_error"].is_null() {
            return nb;
        }
        assert!(
            Instant::now() < deadline,
            "{notebook} never caught up: {nb}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
