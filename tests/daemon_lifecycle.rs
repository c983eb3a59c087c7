//! The daemon's life cycle (issue 3, interface.md sections 2 and 5): config
//! validation, readiness, signals, reload, crash safety and logs, proven
//! against the real binary. Every wait is a bounded poll.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{
    committed, holds_for, monotonic_usec, no_skip, one_with_base, pending, status, wait_for,
    Daemon, Repo, Rng, Sandbox, COMMIT, QUIET,
};

fn toml_str(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

// ---------------------------------------------------------------------------
// Config (interface.md section 2)

#[test]
fn check_config_prints_every_notebook_and_exits_0() {
    let sb = Sandbox::new();
    let a = sb.repo("alpha");
    let b = sb.repo("beta");
    sb.write_config(
        "max_delay = \"1m\"",
        &[
            ("alpha", &a.path, ""),
            ("beta", &b.path, "debounce = \"750ms\""),
        ],
    );
    let check = sb.check_config();
    let text = check.text();
    assert_eq!(
        check.code,
        Some(0),
        "check-config on a valid config:\n{text}"
    );
    for (name, path) in [("alpha", &a.path), ("beta", &b.path)] {
        assert!(text.contains(name), "{name} listed:\n{text}");
        assert!(
            text.contains(&path.display().to_string()),
            "{} listed:\n{text}",
            path.display()
        );
    }
    // Effective (inherited and overridden) debounce.
    assert!(
        text.contains("100ms"),
        "alpha's inherited debounce shown:\n{text}"
    );
    assert!(text.contains("750ms"), "beta's own debounce shown:\n{text}");
    assert!(!sb.socket.exists(), "check-config starts nothing");
}

/// A config with five independent errors, each of which must be named.
fn broken_config(sb: &Sandbox) -> String {
    let a = sb.repo("a");
    let link = sb.root.join("books/a-link");
    std::os::unix::fs::symlink(&a.path, &link).unwrap();
    let missing = sb.root.join("books/missing");
    let created = sb.root.join("books/would-be-created");
    format!(
        "socket = {sock}\nbogus_key = 1\n\n[defaults]\ndebounce = \"5 parsecs\"\n\n\
         [[notebook]]\nname = \"a\"\npath = {a}\n\n\
         [[notebook]]\nname = \"a\"\npath = {created}\ninit = true\n\n\
         [[notebook]]\nname = \"via-link\"\npath = {link}\n\n\
         [[notebook]]\nname = \"gone\"\npath = {missing}\ninit = false\n",
        sock = toml_str(&sb.socket),
        a = toml_str(&a.path),
        created = toml_str(&created),
        link = toml_str(&link),
        missing = toml_str(&missing),
    )
}

fn assert_every_error_named(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    let has = |what: &str, f: &dyn Fn(&str) -> bool| {
        assert!(
            lines.iter().any(|l| f(l)),
            "no error line for {what}:\n{text}"
        );
    };
    has("the unknown key", &|l| {
        l.contains("bogus_key") && l.to_lowercase().contains("unknown")
    });
    has("the bad duration", &|l| {
        l.contains("debounce") && l.contains("parsecs")
    });
    has("the duplicate name", &|l| {
        l.contains("\"a\"") && l.to_lowercase().contains("duplicate")
    });
    has("two notebooks on one real path", &|l| {
        l.contains("via-link") && (l.contains("same") || l.contains("already"))
    });
    has("the missing folder", &|l| {
        l.contains("gone") && l.contains("missing") && l.contains("exist")
    });
}

#[test]
fn check_config_reports_every_error_at_once_and_exits_2() {
    let sb = Sandbox::new();
    sb.write_config_text(&broken_config(&sb));
    let check = sb.check_config();
    let text = check.text();
    assert_eq!(
        check.code,
        Some(2),
        "check-config on a broken config:\n{text}"
    );
    assert_every_error_named(&text);
    assert!(
        !sb.root.join("books/would-be-created").exists(),
        "check-config creates nothing"
    );
}

#[test]
fn the_daemon_exits_2_on_an_invalid_config_and_starts_nothing() {
    let sb = Sandbox::new();
    sb.write_config_text(&broken_config(&sb));
    let mut d = sb.spawn(&[]);
    assert_eq!(
        d.wait_exit(COMMIT),
        Some(2),
        "exit code on an invalid config"
    );
    assert_every_error_named(&d.log_text());
    assert!(!sb.socket.exists(), "no socket file on an invalid config");
    assert!(
        !sb.root.join("books/would-be-created").exists(),
        "no notebook created"
    );
    assert_eq!(
        sb.open_repo(&sb.root.join("books/a")).head(),
        None,
        "nothing committed"
    );
}

// ---------------------------------------------------------------------------
// Readiness and signals

/// A datagram socket standing in for systemd's NOTIFY_SOCKET.
struct NotifyListener {
    sock: UnixDatagram,
    path: PathBuf,
}

impl NotifyListener {
    fn bind(sb: &Sandbox) -> NotifyListener {
        let path = sb.root.join("run/notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        NotifyListener { sock, path }
    }

    fn recv(&self) -> String {
        let mut buf = vec![0u8; 4096];
        let n = self
            .sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notify datagram: {e}"));
        String::from_utf8_lossy(&buf[..n]).to_string()
    }

    /// The next datagram, which must contain `line` as one of its lines.
    fn expect(&self, line: &str) -> String {
        let msg = self.recv();
        assert!(
            msg.lines().any(|l| l == line),
            "expected {line}, got {msg:?}"
        );
        msg
    }

    fn env(&self) -> (&'static str, &str) {
        ("NOTIFY_SOCKET", self.path.to_str().unwrap())
    }
}

/// The socket is bound before the notebooks open (and catch up); a client
/// that connects meanwhile must not be told a configured notebook does not
/// exist.
#[test]
fn a_client_connecting_during_start_up_finds_the_configured_notebooks() {
    let sb = Sandbox::new();
    let nb = sb.repo("nb");
    // A catch-up that takes a while.
    for i in 0..3000 {
        nb.write(&format!("d{}/f{i}.md", i % 50), "x\n");
    }
    sb.write_config("", &[("nb", &nb.path, "")]);
    let d = sb.spawn(&[]);
    let stream = wait_for(
        Duration::from_secs(20),
        "the socket to accept a connection",
        || std::os::unix::net::UnixStream::connect(&sb.socket).ok(),
    );
    drop(stream);
    let mut c = sb.client();
    let r = c.request("lock", json!({"notebook": "nb", "timeout_ms": 20000}));
    assert_eq!(
        r["ok"],
        json!(true),
        "lock right after start-up: {r}\n{}",
        d.log_text()
    );
    assert_eq!(c.status_names(), ["nb"]);
    // Readiness came after the catch-up: it is all on HEAD.
    assert!(nb.uncommitted(&no_skip).is_empty());
    c.ok("unlock", json!({"notebook": "nb"}));
}

#[test]
fn readiness_reload_and_stopping_are_reported_to_notify_socket() {
    let sb = Sandbox::new();
    let nb = sb.repo("nb");
    sb.write_config("", &[("nb", &nb.path, "")]);
    let notify = NotifyListener::bind(&sb);
    let mut d = sb.spawn(&[notify.env()]);
    notify.expect("READY=1");
    // Ready means served: the notebook is listed and the socket answers.
    assert_eq!(sb.client().status_names(), ["nb"]);

    let before = monotonic_usec();
    d.signal(libc::SIGHUP);
    let msg = notify.expect("RELOADING=1");
    let usec: u64 = msg
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {msg:?}"))
        .parse()
        .unwrap();
    assert!(
        usec >= before && usec <= monotonic_usec(),
        "MONOTONIC_USEC={usec} is CLOCK_MONOTONIC now"
    );
    notify.expect("READY=1");

    d.signal(libc::SIGTERM);
    notify.expect("STOPPING=1");
    assert_eq!(d.wait_exit(COMMIT), Some(0));
}

fn signal_commits_pending_and_exits_0(sig: i32) {
    let (sb, nb, mut d) = one_with_base("debounce = \"30s\"\nmax_delay = \"10m\"");
    nb.write("pending.md", "pending\n");
    wait_for(COMMIT, "the change to be pending", || {
        (pending(&sb, "nb") > 0).then_some(())
    });
    let began = Instant::now();
    d.signal(sig);
    assert_eq!(d.wait_exit(COMMIT), Some(0), "exit code after signal {sig}");
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "signal {sig}: exit took {took:?} (debounce is 30 s)"
    );
    assert_eq!(
        nb.blob("pending.md").as_deref(),
        Some("pending\n"),
        "signal {sig} commits pending changes"
    );
    assert!(!sb.socket.exists(), "the socket file is removed");
    assert_eq!(nb.status_porcelain(), "");
    nb.assert_fsck_clean();
}

#[test]
fn sigterm_commits_pending_changes_and_exits_0() {
    signal_commits_pending_and_exits_0(libc::SIGTERM);
}

#[test]
fn sigint_commits_pending_changes_and_exits_0() {
    signal_commits_pending_and_exits_0(libc::SIGINT);
}

/// The write finishes before the signal is sent, but its event may still be
/// on its way through inotify and the watcher's batching window.
#[test]
fn sigterm_right_after_a_write_still_commits_it() {
    let (_sb, nb, mut d) = one_with_base("debounce = \"30s\"\nmax_delay = \"10m\"");
    nb.write("last-second.md", "saved just before shutdown\n");
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(COMMIT), Some(0));
    assert_eq!(
        nb.blob("last-second.md").as_deref(),
        Some("saved just before shutdown\n"),
        "a file saved before SIGTERM is committed by the shutdown flush\n{}",
        d.log_text()
    );
    nb.assert_fsck_clean();
}

/// Nothing pending, a client holds the lock: the exit must not wait for it.
#[test]
fn sigterm_with_nothing_pending_does_not_wait_for_a_clients_lock() {
    let sb = Sandbox::new();
    let nb = sb.repo_with_base("nb");
    // lock.timeout 5s (the sandbox's): well above the bound checked here.
    let mut d = sb.serve_one("nb", &nb, "");
    let mut holder = sb.client();
    holder.ok("lock", json!({"notebook": "nb"}));
    let began = Instant::now();
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(COMMIT), Some(0));
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "exit took {took:?} with nothing to commit"
    );
    assert!(
        !d.log_text().contains("uncommitted"),
        "no false warning:\n{}",
        d.log_text()
    );
    assert_eq!(nb.count(), 1);
}

/// Pending changes and a client holding the lock: the exit waits up to
/// lock.timeout, warns, and the change is committed at the next start.
#[test]
fn sigterm_with_pending_changes_waits_at_most_lock_timeout_for_a_clients_lock() {
    let (sb, nb, mut d) = one_with_base("debounce = \"30s\"\nmax_delay = \"10m\"");
    let mut holder = sb.client();
    holder.ok("lock", json!({"notebook": "nb"}));
    nb.write("pending.md", "pending\n");
    wait_for(COMMIT, "the change to be pending", || {
        (pending(&sb, "nb") > 0).then_some(())
    });
    let began = Instant::now();
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(COMMIT), Some(0));
    let took = began.elapsed();
    // lock.timeout is 5 s in the config write_config writes.
    assert!(
        took >= Duration::from_millis(4500),
        "the flush waited for the lock ({took:?})"
    );
    assert!(
        took < Duration::from_secs(12),
        "but no longer than lock.timeout ({took:?})"
    );
    assert!(
        d.log_text().contains("uncommitted"),
        "a warning says changes stay uncommitted:\n{}",
        d.log_text()
    );
    assert_eq!(
        nb.blob("pending.md"),
        None,
        "nothing committed under a client's lock"
    );
    drop(holder);
    let _d = sb.start_serving(&["nb"]);
    committed(&nb, "pending.md", "pending\n");
    nb.assert_fsck_clean();
}

/// Shutdown order: the final commits happen while connections are still
/// served (a subscriber sees them), then every connection is closed and the
/// daemon's task tracker drains at once.
#[test]
fn sigterm_commits_then_closes_connections_and_drains_every_task() {
    let (sb, nb, mut d) = one_with_base("debounce = \"30s\"\nmax_delay = \"10m\"");
    let mut subscriber = sb.client();
    subscriber.ok("subscribe", json!({"notebook": "nb"}));
    let mut idle = sb.client();
    idle.ok("ping", json!({}));
    nb.write("pending.md", "pending\n");
    wait_for(COMMIT, "the change to be pending", || {
        (pending(&sb, "nb") > 0).then_some(())
    });
    let began = Instant::now();
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(COMMIT), Some(0));
    let took = began.elapsed();
    let mut events = Vec::new();
    while let Some(event) = subscriber.recv_or_eof() {
        events.push(event);
    }
    assert!(
        events
            .iter()
            .any(|e| e["event"] == json!("commit") && e["paths"] == json!(["pending.md"])),
        "the final commit reached the subscriber before its connection closed: {events:?}"
    );
    assert_eq!(idle.recv_or_eof(), None, "an idle connection is closed");
    let log = d.log_text();
    assert!(
        took < Duration::from_secs(4) && !log.contains("did not end"),
        "every task ended with the daemon ({took:?}):\n{log}"
    );
    assert_eq!(nb.blob("pending.md").as_deref(), Some("pending\n"));
    nb.assert_fsck_clean();
}

// ---------------------------------------------------------------------------
// SIGHUP reload

#[test]
fn sighup_starts_an_added_notebook() {
    let sb = Sandbox::new();
    let one = sb.repo("one");
    let two = sb.repo("two");
    two.write("before.md", "made before the reload\n");
    let d = sb.serve_one("one", &one, "");
    sb.write_config("", &[("one", &one.path, ""), ("two", &two.path, "")]);
    d.signal(libc::SIGHUP);
    d.wait_serving(&sb, &["one", "two"]);
    committed(&two, "before.md", "made before the reload\n");
    two.write("after.md", "after\n");
    committed(&two, "after.md", "after\n");
    one.write("one.md", "one\n");
    committed(&one, "one.md", "one\n");
    two.assert_fsck_clean();
}

#[test]
fn sighup_commits_a_removed_notebooks_pending_changes_then_drops_it() {
    let sb = Sandbox::new();
    let one = sb.repo("one");
    let two = sb.repo_with_base("two");
    sb.write_config(
        "",
        &[
            ("one", &one.path, ""),
            ("two", &two.path, "debounce = \"30s\"\nmax_delay = \"10m\""),
        ],
    );
    let d = sb.start_serving(&["one", "two"]);
    two.write("pending.md", "pending at reload\n");
    wait_for(COMMIT, "two's change to be pending", || {
        (pending(&sb, "two") > 0).then_some(())
    });

    sb.write_config("", &[("one", &one.path, "")]);
    d.signal(libc::SIGHUP);
    committed(&two, "pending.md", "pending at reload\n");
    wait_for(COMMIT, "two gone from status", || {
        (sb.client().status_names() == ["one"]).then_some(())
    });
    // No longer watched.
    let head = two.head();
    two.write("unwatched.md", "x\n");
    holds_for(QUIET, "no commit in a removed notebook", || {
        two.head() == head
    });
    // The remaining notebook still works.
    one.write("still.md", "still\n");
    committed(&one, "still.md", "still\n");
    two.assert_fsck_clean();
}

#[test]
fn sighup_keeps_an_unchanged_notebooks_lock_and_pending_changes() {
    let sb = Sandbox::new();
    let one = sb.repo("one");
    let two = sb.repo("two");
    one.write("base.md", "base\n");
    one.commit_all("base");
    let d = sb.serve_one("one", &one, "");

    let mut holder = sb.client();
    assert_eq!(
        holder.ok("lock", json!({"notebook": "one"}))["depth"],
        json!(1)
    );
    one.write("held.md", "written under a client's lock\n");
    wait_for(COMMIT, "the change to be pending", || {
        (pending(&sb, "one") > 0).then_some(())
    });

    sb.write_config("", &[("one", &one.path, ""), ("two", &two.path, "")]);
    d.signal(libc::SIGHUP);
    d.wait_serving(&sb, &["one", "two"]);

    // The lock survived the reload: another client still times out.
    let mut other = sb.client();
    other.err(
        "lock",
        json!({"notebook": "one", "timeout_ms": 300}),
        "timeout",
    );
    let st = status(&sb, "one");
    assert_eq!(
        st["lock"]["held"],
        json!(true),
        "still held after reload: {st}"
    );
    assert!(
        st["pending"].as_u64().unwrap() > 0,
        "pending changes kept: {st}"
    );
    assert_eq!(
        one.blob("held.md"),
        None,
        "no commit while the client holds the lock"
    );

    assert_eq!(
        holder.ok("unlock", json!({"notebook": "one"}))["depth"],
        json!(0)
    );
    committed(&one, "held.md", "written under a client's lock\n");
    one.assert_fsck_clean();
}

/// A reload that changes a notebook's settings restarts it; a client holding
/// its lock across that must not make the notebook disappear.
#[test]
fn sighup_changing_a_notebook_held_by_a_client_keeps_it_served() {
    let sb = Sandbox::new();
    let one = sb.repo_with_base("one");
    let d = sb.serve_one("one", &one, "");
    let mut holder = sb.client();
    holder.ok("lock", json!({"notebook": "one"}));

    sb.write_config("", &[("one", &one.path, "max_delay = \"1m\"")]);
    d.signal(libc::SIGHUP);
    d.wait_log("reload", COMMIT);
    wait_for(
        Duration::from_secs(20),
        "the reload to finish (started or failed)",
        || {
            let log = d.log_text();
            (log.contains("started by reload") || log.contains("reload failed")).then_some(())
        },
    );
    assert!(
        !d.log_text().contains("reload failed"),
        "the reload failed:\n{}",
        d.log_text()
    );
    assert_eq!(
        sb.client().status_names(),
        ["one"],
        "the notebook is still served"
    );
    sb.client().err(
        "lock",
        json!({"notebook": "one", "timeout_ms": 300}),
        "timeout",
    );
    one.write("after.md", "after the reload\n");
    assert_eq!(
        holder.ok("unlock", json!({"notebook": "one"}))["depth"],
        json!(0)
    );
    committed(&one, "after.md", "after the reload\n");
    one.assert_fsck_clean();
}

#[test]
fn an_invalid_config_on_reload_is_logged_and_the_old_one_stays() {
    let sb = Sandbox::new();
    let one = sb.repo("one");
    let d = sb.serve_one("one", &one, "");
    sb.write_config_text(
        &(sb.config_text("", "", &[("one", &one.path, "")]) + "\nno_such_key = 3\n"),
    );
    d.signal(libc::SIGHUP);
    let log = d.wait_log("no_such_key", COMMIT);
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.to_lowercase().contains("reload")),
        "the failed reload is an error in the log:\n{log}"
    );
    // Over the socket too: the reply says it failed.
    let resp = sb.client().request("reload", json!({}));
    assert_eq!(
        resp["ok"],
        json!(false),
        "reload of an invalid config fails: {resp}"
    );
    assert_eq!(sb.client().status_names(), ["one"]);
    one.write("still.md", "still served\n");
    committed(&one, "still.md", "still served\n");
}

// ---------------------------------------------------------------------------
// Crash safety

/// What a stale `.git/index.lock` from our own kill -9 does today.
fn stale_lock_note(nb: &Repo) -> &'static str {
    if nb.path.join(".git/index.lock").exists() {
        " — a stale .git/index.lock left by gitlockd's own kill -9 wedges auto-commit (retried forever)"
    } else {
        ""
    }
}

/// Kills the daemon with SIGKILL ~10 times at random moments while a writer
/// thread creates, rewrites, atomically replaces and deletes files, then
/// restarts it and checks that every file on disk is on HEAD, `git fsck` is
/// clean and no lock file is left. `remove_stale_locks`: after each kill,
/// delete an `index.lock` the dead daemon left (the manual step a user needs
/// today), to check everything else about crash safety.
fn crash_loop(remove_stale_locks: bool) {
    let sb = Sandbox::new();
    let nb = sb.repo("nb");
    // Some bulk so index writes take a moment and kills can land inside them.
    for i in 0..1500 {
        nb.write(
            &format!("bulk/{:02}/f{i}.md", i % 30),
            &format!("bulk {i}\n"),
        );
    }
    nb.commit_all("bulk");
    sb.write_config("", &[("nb", &nb.path, "")]);

    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test seed: CRASH_SEED={seed}");
    let mut rng = Rng(seed);

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written, root) = (stop.clone(), written.clone(), nb.path.clone());
        std::thread::spawn(move || {
            let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let n = rng.below(40);
                let path = root.join(format!("w/d{}/f{n}.md", n % 5));
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                match rng.below(10) {
                    0 => {
                        let _ = std::fs::remove_file(&path);
                    }
                    1 => {
                        let tmp = root.join(format!("w/.tmp{n}"));
                        std::fs::write(&tmp, format!("atomic {i}\n")).unwrap();
                        std::fs::rename(&tmp, &path).unwrap();
                    }
                    2 => {
                        let b = root.join(format!("bulk/{:02}/f{}.md", n % 30, n));
                        std::fs::write(b, format!("bulk edited {i}\n")).unwrap();
                    }
                    _ => {
                        std::fs::write(&path, format!("write {i}\n").repeat(1 + (i % 50) as usize))
                            .unwrap()
                    }
                }
                written.fetch_add(1, Ordering::SeqCst);
                // The writer's pace (not a synchronisation).
                std::thread::sleep(Duration::from_millis(rng.below(15) as u64));
            }
        })
    };

    let mut stale_locks = Vec::new();
    let kills = 10;
    for k in 0..kills {
        let mut d = sb.spawn(&[]);
        // Kill at a random moment: sometimes during start-up / catch-up,
        // sometimes while the loop commits the writer's changes.
        match rng.below(3) {
            0 => d.wait_ready(&sb),
            1 => {
                let h = nb.head();
                d.wait_ready(&sb);
                let end = Instant::now() + COMMIT;
                while nb.head() == h {
                    assert!(
                        Instant::now() < end,
                        "kill {k}: no commit within {COMMIT:?} after a restart{}\n{}",
                        stale_lock_note(&nb),
                        d.log_text()
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            _ => {}
        }
        // Not a synchronisation: this picks the random instant of the kill.
        std::thread::sleep(Duration::from_millis(rng.below(400) as u64));
        d.kill9();
        let lock = nb.path.join(".git/index.lock");
        if lock.exists() {
            stale_locks.push(k);
            if remove_stale_locks {
                std::fs::remove_file(&lock).unwrap();
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    eprintln!(
        "{} writes, {kills} kills; index.lock left behind after kills {:?}",
        written.load(Ordering::SeqCst),
        stale_locks
    );

    let _d = sb.start_serving(&["nb"]);
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let diffs = nb.uncommitted(&no_skip);
        if diffs.is_empty() {
            break;
        }
        assert!(
            Instant::now() < end,
            "after {kills} kill -9 and a restart, files are not committed{}:\n  {}\nstatus: {}",
            stale_lock_note(&nb),
            diffs
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  "),
            status(&sb, "nb")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nb.assert_fsck_clean();
    nb.assert_no_empty_commits();
    assert!(
        !nb.path.join(".git/index.lock").exists(),
        "index.lock left behind"
    );
    // The index is in step with HEAD again.
    let porcelain = nb.status_porcelain();
    assert!(
        porcelain.is_empty(),
        "git status after recovery: {porcelain}"
    );
}

/// Crash safety as issue 3 states it: no manual step after kill -9, even
/// when a kill lands inside libgit2's index write and leaves a partial
/// `.git/index.lock` (the crash marker proves it is ours; see src/recovery.rs).
#[test]
fn kill_9_at_random_moments_loses_nothing_and_needs_no_manual_step() {
    crash_loop(false);
}

/// Everything else about crash safety (no lost change, fsck clean, index in
/// step, auto-commits resume) with the stale-lock removal done by hand.
#[test]
fn kill_9_at_random_moments_loses_nothing_and_corrupts_nothing() {
    crash_loop(true);
}

// ---------------------------------------------------------------------------
// Logs

/// Waits until a log line satisfies `f`; returns the whole log.
fn wait_log_line(d: &Daemon, f: impl Fn(&str) -> bool) -> String {
    wait_for(COMMIT, "a matching log line", || {
        let log = d.log_text();
        log.lines().any(&f).then_some(log)
    })
}

#[test]
fn journal_logs_have_no_timestamps_or_colours_and_commits_are_info_naming_the_notebook() {
    let sb = Sandbox::new();
    let nb = sb.repo("journalnb");
    sb.write_config("", &[("journalnb", &nb.path, "")]);
    let d = sb.spawn(&[("JOURNAL_STREAM", "8:12345")]);
    d.wait_ready(&sb);
    d.wait_serving(&sb, &["journalnb"]);
    nb.write("a.md", "a\n");
    nb.write("b.md", "b\n");
    committed(&nb, "a.md", "a\n");
    committed(&nb, "b.md", "b\n");
    let head = nb.head().unwrap();
    let short = &head[..7];
    // JOURNAL_STREAM names another stream than stderr here: plain lines
    // without timestamps ("INFO ..."); the `<6>` form is tested in systemd.rs.
    let info = |l: &str| l.starts_with("<6>") || l.trim_start().starts_with("INFO");
    let log = wait_log_line(&d, |l| l.contains(short) && info(l));
    assert!(!log.contains('\x1b'), "no ANSI escapes:\n{log}");
    let timestamp = |l: &str| {
        let b = l
            .trim_start_matches(|c| c == '<' || c == '>' || char::is_numeric(c))
            .as_bytes();
        b.len() >= 16
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && b[7] == b'-'
            && (b[10] == b'T' || b[10] == b' ')
    };
    for line in log.lines() {
        assert!(!timestamp(line), "a timestamp in a journal line: {line}");
    }
    // Commits at info (<6>), naming the notebook, the short id and the file count.
    let commit_line = log.lines().find(|l| l.contains(short) && info(l)).unwrap();
    assert!(
        commit_line.contains("journalnb"),
        "the commit line names the notebook: {commit_line}"
    );
    let files = nb.commit_paths("HEAD").len();
    assert!(
        commit_line.contains(&format!("files={files}")),
        "the file count ({files}): {commit_line}"
    );
}

#[test]
fn plain_logs_to_a_file_have_no_colours_and_commits_are_info_naming_the_notebook() {
    let sb = Sandbox::new();
    let nb = sb.repo("plainnb");
    sb.write_config("", &[("plainnb", &nb.path, "")]);
    let d: Daemon = sb.start_serving(&["plainnb"]);
    nb.write("a.md", "a\n");
    committed(&nb, "a.md", "a\n");
    let head = nb.head().unwrap();
    let short = &head[..7];
    let log = wait_log_line(&d, |l| l.contains(short) && l.contains(" INFO "));
    assert!(
        !log.contains('\x1b'),
        "no ANSI escapes when stderr is not a terminal:\n{log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains(short) && l.contains(" INFO "))
        .unwrap();
    assert!(
        line.contains("plainnb"),
        "the info line names the notebook: {line}"
    );
}
