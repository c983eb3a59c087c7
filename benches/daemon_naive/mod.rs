//! The same-run reference for the daemon bench: the naive auto-commit loop
//! (`inotifywait -r | while quiet for DEBOUNCE; do git add -A && git commit; done`),
//! written here with `notify` (one recursive inotify watch) and the git CLI.
//! It runs on an identical copy of the benchmarked repository.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::{Config, Event, RecommendedWatcher, RecursiveMode, Watcher};

/// One commit of the naive loop: when it finished, and the CPU spent so far
/// by the loop's thread and the git processes it ran.
pub struct NaiveCommit {
    pub at: Instant,
    pub cpu: Duration,
}

/// A running naive loop; stops when dropped (its watcher closes the channel).
pub struct Naive {
    pub commits: mpsc::Receiver<NaiveCommit>,
    _watcher: RecommendedWatcher,
}

impl Naive {
    pub fn start(repo: &Path, env: &[(String, String)], debounce: Duration) -> Naive {
        let (ev_tx, ev_rx) = mpsc::channel::<notify::Result<Event>>();
        let mut watcher = RecommendedWatcher::new(ev_tx, Config::default()).unwrap();
        watcher.watch(repo, RecursiveMode::Recursive).unwrap();
        let (tx, commits) = mpsc::channel();
        let root = repo.to_path_buf();
        let env = env.to_vec();
        std::thread::spawn(move || run(root, env, debounce, ev_rx, tx));
        Naive {
            commits,
            _watcher: watcher,
        }
    }

    /// The next commit, waiting at most 60 s.
    pub fn next(&self) -> NaiveCommit {
        self.commits
            .recv_timeout(Duration::from_secs(60))
            .expect("the naive loop committed nothing within 60 s")
    }
}

/// A change outside `.git` (like `inotifywait -e modify,create,delete,move,close_write`:
/// opens and reads, which `git add -A` itself makes, do not count).
fn counts(event: &notify::Result<Event>, git_dir: &Path) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match event {
        Ok(e) if matches!(e.kind, EventKind::Access(k) if k != AccessKind::Close(AccessMode::Write)) => {
            false
        }
        Ok(e) => e.paths.iter().any(|p| !p.starts_with(git_dir)),
        Err(_) => true,
    }
}

fn run(
    root: PathBuf,
    env: Vec<(String, String)>,
    debounce: Duration,
    events: mpsc::Receiver<notify::Result<Event>>,
    tx: mpsc::Sender<NaiveCommit>,
) {
    let git_dir = root.join(".git");
    let git = |args: &[&str]| {
        let mut cmd = Command::new("git");
        cmd.args(args)
            .current_dir(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd.status().unwrap();
    };
    let cpu0 = cpu_self_and_children();
    while let Ok(event) = events.recv() {
        if !counts(&event, &git_dir) {
            continue;
        }
        // Quiet for `debounce` (events in .git, from our own commits, do not count).
        loop {
            match events.recv_timeout(debounce) {
                Ok(e) if counts(&e, &git_dir) => continue,
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "x"]);
        let commit = NaiveCommit {
            at: Instant::now(),
            cpu: cpu_self_and_children() - cpu0,
        };
        if tx.send(commit).is_err() {
            return;
        }
    }
}

/// This thread's CPU time plus that of the process's waited-for children
/// (the git commands; the daemon is never waited for while it runs).
fn cpu_self_and_children() -> Duration {
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    let mut children: libc::rusage = unsafe { std::mem::zeroed() };
    let mut thread: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut children);
        libc::getrusage(libc::RUSAGE_THREAD, &mut thread);
    }
    tv(children.ru_utime) + tv(children.ru_stime) + tv(thread.ru_utime) + tv(thread.ru_stime)
}
