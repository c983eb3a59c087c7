//! Shared harness for the plain (harness = false) benchmarks: the isolated
//! world of `tests/sandbox` (shared with tests/support and tests/git_util:
//! HOME, XDG dirs, a global git config, no system config), big repositories
//! made with the git CLI, the release daemon, a JSON-lines socket client,
//! statistics and a result table.
//!
//! Every benchmark prints our figure next to a reference measured in the
//! same run on the same machine, the target, and PASS / MISS / INFO.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/sandbox/mod.rs"]
pub mod sandbox;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- settings

/// An integer setting from the environment, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// A millisecond setting from the environment, else `default_ms`.
pub fn env_ms(name: &str, default_ms: u64) -> Duration {
    Duration::from_millis(env_usize(name, default_ms as usize) as u64)
}

/// Which sections of a bench binary to run: GITLOCKD_BENCH_ONLY=a,b (all by default).
pub fn section_enabled(name: &str) -> bool {
    match std::env::var("GITLOCKD_BENCH_ONLY") {
        Ok(list) if !list.trim().is_empty() => list.split(',').any(|s| s.trim() == name),
        _ => true,
    }
}

/// Prints the machine's load, so figures can be read against it.
pub fn print_header(title: &str) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!();
    println!("== {title} ==");
    println!(
        "   cpus: {cpus}   loadavg (1/5/15 min): {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// The 1-minute load average now.
pub fn load1() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

// ---------------------------------------------------------------- statistics

/// Sorted samples with percentiles.
#[derive(Clone, Debug)]
pub struct Stats {
    sorted: Vec<Duration>,
}

impl Stats {
    pub fn new(mut samples: Vec<Duration>) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        samples.sort();
        Stats { sorted: samples }
    }
    /// Nearest-rank percentile, p in 0..=100.
    pub fn pct(&self, p: f64) -> Duration {
        let n = self.sorted.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.sorted[rank.clamp(1, n) - 1]
    }
    pub fn median(&self) -> Duration {
        self.pct(50.0)
    }
    pub fn min(&self) -> Duration {
        self.sorted[0]
    }
    pub fn max(&self) -> Duration {
        *self.sorted.last().unwrap()
    }
    pub fn len(&self) -> usize {
        self.sorted.len()
    }
    pub fn mean(&self) -> Duration {
        self.sorted.iter().sum::<Duration>() / self.sorted.len() as u32
    }
}

/// A duration with a unit that fits (ns, µs, ms, s).
pub fn fmt_d(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1_000_000_000.0 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A per-operation time from a total over `n` operations.
pub fn per_op(total: Duration, n: u64) -> Duration {
    Duration::from_nanos((total.as_nanos() / u128::from(n.max(1))) as u64)
}

// ---------------------------------------------------------------- result table

/// One line of a result table.
pub struct Row {
    pub what: String,
    pub ours: String,
    pub reference: String,
    pub target: String,
    /// Some(true) = PASS, Some(false) = MISS, None = INFO (no target).
    pub pass: Option<bool>,
}

impl Row {
    pub fn new(
        what: &str,
        ours: String,
        reference: String,
        target: &str,
        pass: Option<bool>,
    ) -> Row {
        Row {
            what: what.to_string(),
            ours,
            reference,
            target: target.to_string(),
            pass,
        }
    }
}

/// Prints rows as an aligned table, also as Markdown when GITLOCKD_BENCH_MARKDOWN=1.
pub fn print_table(title: &str, rows: &[Row]) {
    let verdict = |r: &Row| match r.pass {
        Some(true) => "PASS",
        Some(false) => "MISS",
        None => "INFO",
    };
    let heads = ["what", "ours", "reference (same run)", "target", "result"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.what.clone(),
                r.ours.clone(),
                r.reference.clone(),
                r.target.clone(),
                verdict(r).to_string(),
            ]
        })
        .collect();
    let mut w = heads.map(|h| h.chars().count());
    for c in &cells {
        for i in 0..5 {
            w[i] = w[i].max(c[i].chars().count());
        }
    }
    let pad = |s: &str, n: usize| format!("{s}{}", " ".repeat(n - s.chars().count()));
    println!();
    println!("-- {title} (load {}) --", load1());
    let line = |c: &[String; 5]| {
        (0..5)
            .map(|i| pad(&c[i], w[i]))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    println!("{}", line(&heads.map(str::to_string)));
    println!(
        "{}",
        w.iter()
            .map(|n| "-".repeat(*n))
            .collect::<Vec<_>>()
            .join("-+-")
    );
    for c in &cells {
        println!("{}", line(c));
    }
    if std::env::var("GITLOCKD_BENCH_MARKDOWN").as_deref() == Ok("1") {
        println!();
        println!("| what | ours | reference (same run) | target | result |");
        println!("|---|---|---|---|---|");
        for c in &cells {
            println!("| {} | {} | {} | {} | {} |", c[0], c[1], c[2], c[3], c[4]);
        }
    }
}

// ---------------------------------------------------------------- isolated world

/// A throw-away world: HOME, XDG dirs, a global git config, a short socket path.
pub struct Sandbox {
    /// Removed on drop unless GITLOCKD_BENCH_KEEP=1 or reused.
    pub dir: Option<tempfile::TempDir>,
    pub root: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Sandbox {
    /// Made under GITLOCKD_BENCH_DIR, else /tmp (short: sun_path is 108 bytes).
    /// GITLOCKD_BENCH_SANDBOX=DIR reuses a sandbox kept by an earlier run
    /// (GITLOCKD_BENCH_KEEP=1), so its big repositories are not made again.
    pub fn new() -> Sandbox {
        let (dir, root) = match std::env::var("GITLOCKD_BENCH_SANDBOX") {
            Ok(existing) if !existing.is_empty() => {
                (None, PathBuf::from(existing).canonicalize().unwrap())
            }
            _ => {
                let base =
                    std::env::var("GITLOCKD_BENCH_DIR").unwrap_or_else(|_| "/tmp".to_string());
                let dir = tempfile::Builder::new()
                    .prefix("glb-")
                    .tempdir_in(base)
                    .unwrap();
                let root = dir.path().canonicalize().unwrap();
                if std::env::var("GITLOCKD_BENCH_KEEP").as_deref() == Ok("1") {
                    println!(
                        "   keeping the sandbox {} (GITLOCKD_BENCH_SANDBOX reuses it)",
                        root.display()
                    );
                    (None, dir.keep())
                } else {
                    (Some(dir), root)
                }
            }
        };
        let _ = std::fs::remove_file(root.join("run/gl.sock"));
        let env = sandbox::isolate(
            &root,
            &sandbox::Identity {
                name: "Bench User",
                email: "bench@example.invalid",
            },
        );
        Sandbox {
            socket: root.join("run/gl.sock"),
            config: root.join("cfg/config.toml"),
            dir,
            root,
            env,
        }
    }

    /// Makes this process (libgit2 in-process) see the sandbox's git config.
    /// Call before any thread starts.
    pub fn enter(&self) {
        for (k, v) in &self.env {
            std::env::set_var(k, v);
        }
        for k in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"] {
            std::env::remove_var(k);
        }
    }

    /// An empty repository at books/<name> (branch main).
    pub fn repo(&self, name: &str) -> Repo {
        let path = self.root.join("books").join(name);
        std::fs::create_dir_all(&path).unwrap();
        let repo = Repo {
            path,
            env: self.env.clone(),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// A repository with `files` tracked files committed (100 per directory), packed.
    /// Reused as it is when a kept sandbox already has it.
    pub fn big_repo(&self, name: &str, files: usize) -> Repo {
        let path = self.root.join("books").join(name);
        if path.join(".git").exists() {
            let repo = Repo {
                path,
                env: self.env.clone(),
            };
            let tracked = repo.git(&["ls-files"]).lines().count();
            println!("   reusing {name}: {tracked} tracked files");
            return repo;
        }
        let repo = self.repo(name);
        let t = Instant::now();
        repo.populate(files);
        let made = t.elapsed();
        let t = Instant::now();
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-q", "-m", "initial"]);
        let committed = t.elapsed();
        let t = Instant::now();
        repo.git(&["repack", "-adq"]);
        repo.git(&["prune-packed"]);
        println!(
            "   made {name}: {files} files in {} ; git add+commit {} ; repack {}",
            fmt_d(made),
            fmt_d(committed),
            fmt_d(t.elapsed())
        );
        repo
    }

    /// Writes a config (socket, defaults, lock) with these notebooks (name, path, extra TOML).
    pub fn write_config(&self, defaults: &str, notebooks: &[(&str, &Path, &str)]) {
        let text = sandbox::config_text(&self.socket, defaults, "timeout = \"30s\"", notebooks);
        std::fs::write(&self.config, text).unwrap();
    }

    /// Starts the release daemon on the written config; waits until it answers ping.
    pub fn start_daemon(&self) -> Daemon {
        let log = self.root.join(format!("daemon-{}.log", std::process::id()));
        let mut cmd = Command::new(bin());
        cmd.args(["--config", self.config.to_str().unwrap()])
            .env_clear();
        if let Ok(path) = std::env::var("PATH") {
            cmd.env("PATH", path);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env("RUST_LOG", "info");
        let started = Instant::now();
        let child = sandbox::spawn_logged(&mut cmd, &log);
        let mut d = Daemon {
            child,
            log,
            ready_after: Duration::ZERO,
        };
        d.wait_ready(&self.socket);
        // The socket answers before the notebooks are started: wait until
        // status lists every configured notebook (the daemon's "ready").
        let want = std::fs::read_to_string(&self.config)
            .unwrap()
            .matches("[[notebook]]")
            .count();
        let mut c = Client::connect(&self.socket);
        let end = Instant::now() + Duration::from_secs(600);
        loop {
            let v = c.ok(serde_json::json!({"cmd": "status"}));
            if v["notebooks"].as_array().map_or(0, Vec::len) >= want {
                break;
            }
            assert!(
                Instant::now() < end,
                "notebooks never started\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        d.ready_after = started.elapsed();
        d
    }
}

/// The daemon binary (cargo builds it in the bench profile for `cargo bench`).
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gitlockd"))
}

/// A running daemon; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    /// From spawn to the first answered ping.
    pub ready_after: Duration,
}

impl Daemon {
    fn wait_ready(&self, socket: &Path) {
        let end = Instant::now() + Duration::from_secs(300);
        while !sandbox::answers_ping(socket, Duration::from_secs(5)) {
            assert!(
                Instant::now() < end,
                "daemon never became ready\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// utime + stime of the whole process (all threads), from /proc/PID/stat.
    pub fn cpu_time(&self) -> Duration {
        proc_cpu_time(self.pid())
    }

    /// A field of /proc/PID/status in kB (VmRSS, VmHWM, ...).
    pub fn status_kb(&self, field: &str) -> u64 {
        proc_status_kb(self.pid(), field)
    }

    /// Voluntary + involuntary context switches per thread id: wake-ups.
    pub fn context_switches(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) {
            for t in tasks.flatten() {
                let text = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
                let mut n = 0;
                for line in text.lines() {
                    if line.starts_with("voluntary_ctxt_switches:")
                        || line.starts_with("nonvoluntary_ctxt_switches:")
                    {
                        n += line
                            .split_whitespace()
                            .nth(1)
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(0);
                    }
                }
                out.insert(t.file_name().to_string_lossy().into_owned(), n);
            }
        }
        out
    }

    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait.
    pub fn stop(mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// utime + stime of a process from /proc/PID/stat.
pub fn proc_cpu_time(pid: u32) -> Duration {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command may contain spaces: fields count from after the last ')'.
    let after = &text[text.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // after ')' : state(3) ... utime is field 14, stime 15 (1-based), i.e. index 11, 12 here.
    let utime: u64 = f[11].parse().unwrap();
    let stime: u64 = f[12].parse().unwrap();
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_nanos((utime + stime) * 1_000_000_000 / tck)
}

/// A field of /proc/PID/status in kB.
pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------- repositories

/// A git repository driven with the git CLI.
pub struct Repo {
    pub path: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Repo {
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = sandbox::git_command(&self.path, &self.env);
        // The reference figures time git as a user runs it (index refresh included).
        cmd.env_remove("GIT_OPTIONAL_LOCKS").args(args);
        cmd
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs git (no output captured); true on success.
    pub fn git_quiet(&self, args: &[&str]) -> bool {
        self.cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// Creates `files` small files, 100 per directory: d0000/f00.md ...
    pub fn populate(&self, files: usize) {
        let mut buf = String::new();
        for i in 0..files {
            let dir = self.path.join(format!("d{:04}", i / 100));
            if i % 100 == 0 {
                std::fs::create_dir_all(&dir).unwrap();
            }
            buf.clear();
            buf.push_str(&format!("# note {i}\n\nSome text of note {i}.\n"));
            std::fs::write(dir.join(format!("f{:02}.md", i % 100)), &buf).unwrap();
        }
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn count(&self) -> usize {
        self.git(&["rev-list", "--count", "HEAD"]).parse().unwrap()
    }

    pub fn status_clean(&self) -> bool {
        self.git(&["status", "--porcelain"]).is_empty()
    }
}

/// Sleeps until the coarse file-time clock has ticked past now, so a file
/// written before this call is "settled" (its mtime is in the past) for both
/// git's racy-clean check and gitlockd's stager: neither pays for it.
pub fn let_mtime_settle() {
    std::thread::sleep(Duration::from_millis(15));
}

// ---------------------------------------------------------------- socket client

/// A JSON-lines connection to the control socket.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    line: String,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Client {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
            line: String::new(),
        }
    }

    /// Sends one pre-serialized request line and reads one response line.
    pub fn round_trip(&mut self, request: &[u8]) -> &str {
        self.writer.write_all(request).unwrap();
        self.read_line()
    }

    /// Reads one line (a response or an event).
    pub fn read_line(&mut self) -> &str {
        self.line.clear();
        let n = self.reader.read_line(&mut self.line).unwrap();
        assert!(n > 0, "connection closed");
        &self.line
    }

    /// A request that must succeed; returns the parsed response.
    pub fn ok(&mut self, request: serde_json::Value) -> serde_json::Value {
        let mut bytes = serde_json::to_vec(&request).unwrap();
        bytes.push(b'\n');
        let line = self.round_trip(&bytes).to_string();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ok"], serde_json::json!(true), "{request} failed: {line}");
        v
    }
}
