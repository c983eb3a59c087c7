//! Hardening of the control socket, the CLI and the `lock -- CMD` wrapper
//! (issue 10): what is at the socket path, who owns its folder and who answers
//! on it, subscribed connections, slow subscribers, a killed wrapper, and the
//! protocol's edge lines. Real daemon, real socket, real client processes;
//! a second user (uid nobody) plays the attacker when the tests run as root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod as_user;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use as_user::{can_act_as_nobody, NOBODY};
use serde_json::{json, Value};
use support::{holds_for, setup_with, wait_for, wait_unheld, Client, Daemon, Sandbox, LONG};

const WINDOW: Duration = Duration::from_millis(800);
/// Set in the environment of the fake daemon this binary re-executes.
const FAKE_DAEMON_VAR: &str = "GITLOCKD_TEST_FAKE_DAEMON";

fn held(c: &mut Client, nb: &str) -> bool {
    c.status_of(nb)["lock"]["held"] == json!(true)
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

// ---------------------------------------------------------------------------
// Item 1: only ever a socket is removed

#[test]
fn a_socket_path_that_is_not_a_socket_is_refused_and_left_alone() {
    let sb = Sandbox::new();
    let r = sb.repo("nb");
    sb.write_config("", &[("nb", &r.path, "")]);

    // A regular file: kept, and the start fails naming it.
    std::fs::write(&sb.socket, "precious\n").unwrap();
    let log = sb.start_refused(1);
    assert!(
        log.contains(&sb.socket.display().to_string()) && log.contains("regular file"),
        "{log}"
    );
    assert_eq!(std::fs::read_to_string(&sb.socket).unwrap(), "precious\n");

    // A symlink to a file: neither the link nor its target is touched.
    std::fs::remove_file(&sb.socket).unwrap();
    let target = sb.root.join("victim.txt");
    std::fs::write(&target, "target\n").unwrap();
    symlink(&target, &sb.socket).unwrap();
    let log = sb.start_refused(1);
    assert!(
        log.contains(&format!("{} is a symbolic link", sb.socket.display())),
        "{log}"
    );
    assert!(std::fs::symlink_metadata(&sb.socket)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "target\n");

    // A dangling symlink is refused the same way (nothing is created at its target).
    std::fs::remove_file(&sb.socket).unwrap();
    symlink(sb.root.join("nowhere"), &sb.socket).unwrap();
    sb.start_refused(1);
    assert!(!sb.root.join("nowhere").exists());
    std::fs::remove_file(&sb.socket).unwrap();
    std::fs::create_dir(&sb.socket).unwrap();
    // (A directory is already an invalid `socket` for the config check.)
    let log = sb.start_refused(2);
    assert!(log.contains("directory"), "{log}");
    assert!(sb.socket.is_dir());

    // With the path free, the daemon starts, and a stale socket of ours is
    // still replaced (the kill -9 case).
    std::fs::remove_dir(&sb.socket).unwrap();
    let mut d = sb.start();
    d.kill9();
    assert!(
        std::fs::symlink_metadata(&sb.socket).is_ok(),
        "stale socket left"
    );
    let _d = sb.start();
    sb.client().ok("ping", json!({}));
}

#[test]
fn a_lock_file_that_is_a_symlink_is_refused() {
    let sb = Sandbox::new();
    let r = sb.repo("nb");
    sb.write_config("", &[("nb", &r.path, "")]);
    let victim = sb.root.join("victim.txt");
    std::fs::write(&victim, "keep\n").unwrap();
    let mut lock = sb.socket.clone().into_os_string();
    lock.push(".lock");
    symlink(&victim, PathBuf::from(&lock)).unwrap();
    let log = sb.start_refused(1);
    assert!(
        log.contains(".lock") && log.contains("symbolic link"),
        "{log}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
    assert!(!sb.socket.exists(), "no socket was bound");
}

// ---------------------------------------------------------------------------
// Item 2: another user's folder or server is not trusted

/// Not a test of its own: the fake daemon another user runs, re-executed by
/// the tests below as uid nobody. It answers `ok` to every request, as an
/// attacker faking `lock` replies would.
#[test]
#[ignore = "helper: run as a fake daemon by the other tests"]
fn fake_daemon_of_another_user() {
    let Some(path) = std::env::var_os(FAKE_DAEMON_VAR) else {
        return;
    };
    let listener = UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { return };
        std::thread::spawn(move || {
            let mut writer = stream.try_clone().unwrap();
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                let id = serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|v| v.get("id").cloned())
                    .unwrap_or(Value::Null);
                let answer = json!({"id": id, "ok": true, "depth": 1, "notebooks": []});
                if writer.write_all(format!("{answer}\n").as_bytes()).is_err() {
                    return;
                }
            }
        });
    }
}

/// The fake daemon, run as uid nobody, listening at `socket`; killed on drop.
struct FakeDaemon(Child);

impl FakeDaemon {
    fn start(socket: &Path) -> FakeDaemon {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "fake_daemon_of_another_user",
                "--ignored",
                "--test-threads=1",
            ])
            .env(FAKE_DAEMON_VAR, socket)
            .uid(NOBODY)
            .gid(NOBODY)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let fake = FakeDaemon(child);
        wait_for(LONG, "the fake daemon to listen", || {
            UnixStream::connect(socket).ok()
        });
        fake
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `gitlockd lock nb -- touch MARKER` with `args` before `lock`; returns
/// (exit code, stderr) and whether the command ran.
fn lock_touch(sb: &Sandbox, global: &[&str], remove: &[&str]) -> (Option<i32>, String, bool) {
    let marker = sb.root.join(format!("ran-{}", unique()));
    let mut args: Vec<&str> = global.to_vec();
    let marker_s = marker.to_str().unwrap().to_string();
    args.extend(["lock", "nb", "--", "touch", &marker_s]);
    let mut cmd = sb.command(&args);
    for var in remove {
        cmd.env_remove(var);
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
        marker.exists(),
    )
}

#[test]
fn a_fallback_socket_folder_made_by_another_user_is_refused() {
    if !can_act_as_nobody() {
        return;
    }
    let sb = Sandbox::new();
    let r = sb.repo("nb");
    // No `socket` key and no XDG_RUNTIME_DIR: the fallback $TMPDIR/gitlockd-<uid>.
    sb.write_config_text(&format!(
        "[defaults]\ndebounce = \"100ms\"\n\n[[notebook]]\nname = \"nb\"\npath = {:?}\n",
        r.path.display().to_string()
    ));
    let tmp = sb.root.join("tmp");
    chmod(&sb.root, 0o755);
    chmod(&tmp, 0o1777);
    // SAFETY: getuid cannot fail.
    let dir = tmp.join(format!("gitlockd-{}", unsafe { libc::getuid() }));
    std::fs::create_dir(&dir).unwrap();
    chown(&dir, NOBODY);
    chmod(&dir, 0o777);

    // The daemon refuses to bind there.
    let log = sb.start_refused_without(1, &["XDG_RUNTIME_DIR"]);
    assert!(
        log.contains(&dir.display().to_string()) && log.contains(&format!("uid {NOBODY}")),
        "{log}"
    );
    assert!(!dir.join("gitlockd.sock").exists());
    assert!(!dir.join("gitlockd.sock.lock").exists());

    // The other user's fake daemon there is not believed: the command never
    // runs "under" a lock nobody holds.
    let _fake = FakeDaemon::start(&dir.join("gitlockd.sock"));
    let (code, stderr, ran) = lock_touch(&sb, &[], &["XDG_RUNTIME_DIR"]);
    assert!(!ran, "CMD ran under a faked lock; stderr: {stderr}");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&dir.display().to_string()) && stderr.contains(&format!("uid {NOBODY}")),
        "{stderr}"
    );
    // Our own folder mode matters too: 0777 and ours is refused as well.
    chown(&dir, 0);
    let (code, stderr, ran) = lock_touch(&sb, &[], &["XDG_RUNTIME_DIR"]);
    assert!(!ran && code == Some(1), "{code:?} {stderr}");
    assert!(stderr.contains("writable by other users"), "{stderr}");
}

#[test]
fn a_server_running_as_another_user_is_not_believed() {
    if !can_act_as_nobody() {
        return;
    }
    let sb = Sandbox::new();
    // A folder like /tmp: root's, sticky, anyone may add a socket to it.
    let shared = sb.root.join("shared");
    std::fs::create_dir(&shared).unwrap();
    chmod(&sb.root, 0o755);
    chmod(&shared, 0o1777);
    let socket = shared.join("fake.sock");
    let _fake = FakeDaemon::start(&socket);
    let (code, stderr, ran) = lock_touch(&sb, &["--socket", socket.to_str().unwrap()], &[]);
    assert!(!ran, "CMD ran under a faked lock; stderr: {stderr}");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("runs as uid {NOBODY}")),
        "{stderr}"
    );
    // Plain requests are refused the same way.
    let out = sb
        .command(&["--socket", socket.to_str().unwrap(), "status"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("runs as uid"));
}

// ---------------------------------------------------------------------------
// Item 5: a subscribed connection keeps taking requests, max_hold applies

/// Reads lines until the answer to `id`, skipping events.
fn answer_to(c: &mut Client, id: u64) -> Value {
    let end = Instant::now() + LONG;
    loop {
        assert!(Instant::now() < end, "no answer to request {id}");
        if let Some(line) = c.recv_within(Duration::from_millis(200)) {
            if line.get("event").is_none() {
                assert_eq!(line["id"], json!(id), "{line}");
                return line;
            }
        }
    }
}

#[test]
fn a_subscribed_connection_still_unlocks_and_max_hold_still_applies() {
    let (sb, repos, d) = setup_with(&["nb"], "max_hold = \"2s\"");
    let mut a = sb.client();
    let mut other = sb.client();
    a.ok("lock", json!({"notebook": "nb"}));
    a.ok("subscribe", json!({}));
    let id = a.send("unlock", json!({"notebook": "nb"}));
    let answer = answer_to(&mut a, id);
    assert_eq!(answer["depth"], json!(0), "{answer}");
    wait_unheld(&mut other, "nb");
    // Its own lock events arrive on the same stream.
    let id = a.send("lock", json!({"notebook": "nb"}));
    assert_eq!(answer_to(&mut a, id)["depth"], json!(1));
    // Past max_hold the subscribed holder is cut off like any other.
    let t = Instant::now();
    let lines = a.wait_closed(LONG);
    assert!(
        t.elapsed() >= Duration::from_millis(1800),
        "cut early: {:?}",
        t.elapsed()
    );
    assert!(
        lines.iter().all(|l| l.get("event").is_some()),
        "only events after the lock answer: {lines:?}"
    );
    wait_unheld(&mut other, "nb");
    assert!(d.log_text().contains("max_hold"));
    repos[0].assert_fsck_clean();
}

// ---------------------------------------------------------------------------
// Item 6: a subscriber that does not read is dropped, memory stays bounded

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Whether the daemon closed its end of `s`, even with unread data pending.
fn peer_hung_up(s: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0
}

#[test]
fn a_subscriber_that_never_reads_is_dropped_and_memory_stays_bounded() {
    let (sb, _repos, d) = setup_with(&["nb"], "");
    let before = rss_kib(d.pid());
    let mut sub = sb.client();
    sub.ok("subscribe", json!({"notebook": "nb"}));
    // From here on `sub` reads nothing while lock events pour in.
    let mut a = sb.client();
    let start = Instant::now();
    let mut rounds = 0u64;
    loop {
        a.ok("lock", json!({"notebook": "nb"}));
        a.ok("unlock", json!({"notebook": "nb"}));
        rounds += 1;
        if rounds.is_multiple_of(50) && peer_hung_up(sub.stream()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the silent subscriber was never dropped after {rounds} rounds; \
             daemon RSS grew from {before} KiB to {} KiB",
            rss_kib(d.pid())
        );
    }
    assert!(d.log_text().contains("too slowly"), "{}", d.log_text());
    let after = rss_kib(d.pid());
    assert!(
        after < before + 64 * 1024,
        "daemon RSS grew from {before} KiB to {after} KiB"
    );
    // The subscriber's stream ends; whatever whole lines it holds are events,
    // the too_slow error (if it got through) last.
    let mut rest = Vec::new();
    sub.stream().set_read_timeout(Some(LONG)).unwrap();
    let mut reader = sub.stream().try_clone().unwrap();
    reader
        .read_to_end(&mut rest)
        .expect("the connection closes");
    let text = String::from_utf8_lossy(&rest);
    let whole: Vec<Value> = text
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!whole.is_empty(), "the stream had events");
    for (i, ev) in whole.iter().enumerate() {
        if ev["event"] == json!("error") {
            assert_eq!(ev["code"], json!("too_slow"), "{ev}");
            assert_eq!(i, whole.len() - 1, "too_slow is the last line");
        } else {
            assert_eq!(ev["event"], json!("lock"), "{ev}");
        }
    }
    // Everyone else is still served.
    a.ok("ping", json!({}));
    let mut fresh = sb.client();
    fresh.ok("subscribe", json!({"notebook": "nb"}));
    a.ok("lock", json!({"notebook": "nb"}));
    let ev = fresh.recv();
    assert_eq!(
        (ev["event"].clone(), ev["held"].clone()),
        (json!("lock"), json!(true))
    );
}

// ---------------------------------------------------------------------------
// Item 7: `kill -9` of `gitlockd lock` leaves no CMD running without the lock

#[test]
fn killing_the_lock_wrapper_keeps_the_lock_until_cmd_ends() {
    let (sb, repos, _d) = setup_with(&["nb"], "");
    let fifo = sb.root.join("go");
    let c_fifo = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
    let pidfile = sb.root.join("cmd.pid");
    let done = sb.root.join("done");
    let script = format!(
        "[ -e /proc/$$/fd/$GITLOCKD_LOCK_FD ] && echo $$ > {pid}; read x < {fifo}; echo done > {done}",
        pid = pidfile.display(),
        fifo = fifo.display(),
        done = done.display(),
    );
    let mut wrapper = sb.gl_spawn(&["lock", "nb", "--", "sh", "-c", &script]);
    let cmd_pid: i32 = wait_for(LONG, "CMD to start under the lock", || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    let mut other = sb.client();
    assert!(held(&mut other, "nb"));
    wrapper.kill().unwrap();
    wrapper.wait().unwrap();
    // CMD runs on, and the lock stays held while it does.
    holds_for(WINDOW, "the lock held while CMD runs", || {
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(cmd_pid, 0) } == 0;
        alive && held(&mut other, "nb")
    });
    other.err(
        "lock",
        json!({"notebook": "nb", "timeout_ms": 200}),
        "timeout",
    );
    // CMD ends: the lock goes with it.
    std::fs::write(&fifo, "go\n").unwrap();
    wait_for(LONG, "CMD to finish", || done.exists().then_some(()));
    wait_unheld(&mut other, "nb");
    other.ok("lock", json!({"notebook": "nb", "timeout_ms": 5000}));
    repos[0].assert_fsck_clean();
}

// ---------------------------------------------------------------------------
// Item 10: edge lines, accept failures, reload's exit code

#[test]
fn an_unterminated_last_line_gets_bad_request() {
    let (sb, _repos, _d) = setup_with(&["nb"], "");
    let mut s = UnixStream::connect(&sb.socket).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    s.write_all(b"{\"id\":1,\"cmd\":\"ping\"}").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["error"]["code"], json!("bad_request"), "{text}");
    assert!(
        lines[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("newline"),
        "{text}"
    );
}

#[test]
fn accept_failures_are_logged_once_per_burst() {
    let sb = Sandbox::new();
    let r = sb.repo("nb");
    sb.write_config("", &[("nb", &r.path, "")]);
    let log = sb.root.join("daemon.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = sb.command(&["--config", sb.config.to_str().unwrap()]);
    // SAFETY: setrlimit is async-signal-safe; it only lowers our own limit.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut d = Daemon { child, log };
    d.wait_ready(&sb);
    d.wait_serving(&sb, &["nb"]);
    // More connections than the daemon has descriptors: the rest wait in
    // the backlog and accept(2) fails with EMFILE.
    let conns: Vec<UnixStream> = (0..100)
        .map(|_| UnixStream::connect(&sb.socket).unwrap())
        .collect();
    d.wait_log("accept failed", LONG);
    let count = || d.log_text().matches("accept failed").count();
    // The burst goes on (retried every 50 ms) without another line.
    holds_for(Duration::from_secs(1), "one accept failure line", || {
        count() == 1
    });
    drop(conns);
    // The end of the burst is logged, with how many attempts failed quietly,
    // at the first accept after a quiet second: keep connecting until then.
    let deadline = Instant::now() + LONG;
    while !d.log_text().contains("accepting connections again") {
        assert!(Instant::now() < deadline, "burst end never logged");
        sb.client().ok("ping", json!({}));
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = d.log_text();
    let failures: u64 = log
        .lines()
        .find(|l| l.contains("accepting connections again"))
        .and_then(|l| l.split("failures=").nth(1))
        .and_then(|n| n.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no failure count in {log}"));
    assert!(failures > 5, "retried {failures} times in the burst");
    sb.client().ok("ping", json!({}));
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(LONG), Some(0));
}

#[test]
fn reload_with_an_invalid_config_exits_2() {
    let (sb, repos, _d) = setup_with(&["nb"], "");
    let good = std::fs::read_to_string(&sb.config).unwrap();
    sb.write_config_text(&format!("{good}\nno_such_key = 3\n"));
    let out = sb.gl(&["reload"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no_such_key"), "{stderr}");
    assert!(stderr.contains("old one stays"), "{stderr}");
    // The old config is still in force.
    assert_eq!(sb.client().status_names(), ["nb"]);
    // A valid config whose new notebook cannot start (its repository's
    // config is broken) is applied; the CLI says which notebook failed and
    // exits 1 (a runtime error, not a config one), and the notebook is listed
    // in status with state "error" while it is retried.
    let plain = sb.root.join("books/plain");
    std::fs::create_dir_all(&plain).unwrap();
    let init = std::process::Command::new("git")
        .args(["init", "-q"])
        .arg(&plain)
        .status()
        .unwrap();
    assert!(init.success());
    std::fs::write(plain.join(".git/config"), "[core\n").unwrap();
    sb.write_config_text(&format!(
        "{good}\n[[notebook]]\nname = \"plain\"\npath = {:?}\n",
        plain.display().to_string()
    ));
    let out = sb.gl(&["reload"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("plain") && stderr.contains("new config is in force"),
        "{stderr}"
    );
    assert_eq!(sb.client().status_names(), ["nb", "plain"]);
    assert_eq!(sb.client().status_of("plain")["state"], json!("error"));
    sb.write_config_text(&good);
    let out = sb.gl(&["reload"]);
    assert_eq!(out.status.code(), Some(0));
    repos[0].write("after.md", "after\n");
    repos[0].wait_committed("after.md", "after\n");
}
