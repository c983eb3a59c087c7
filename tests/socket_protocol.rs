//! The control socket against the real daemon (interface.md sections 3 and 4):
//! binding, peer credentials, every command and error code, the lock as seen
//! by clients, bad input, and a deterministic fuzz of the request parser.
//!
//! Real daemon, real socket, real client processes; waits are polls with
//! deadlines, "nothing happens" checks are bounded windows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use gitlockd::control::protocol::{parse_line, ErrorCode, COMMANDS, MAX_LINE};
use serde_json::{json, Value};
use support::{setup, setup_with, wait_for, wait_unheld, Client, Daemon, Rng, Sandbox, LONG};

const WINDOW: Duration = Duration::from_millis(600);

/// Every error code of the contract.
const CODES: &[&str] = &[
    "bad_request",
    "unknown_command",
    "not_found",
    "timeout",
    "not_held",
    "forbidden",
    "too_large",
    "conflict",
    "git",
    "internal",
];

/// The daemon answers `ping` before its notebooks are open (the registry is
/// filled after start-up): wait until `status` lists them all.
fn wait_notebooks(sb: &Sandbox, names: &[&str]) {
    let mut c = sb.client();
    wait_for(LONG, "the notebooks to be open", || {
        let s = c.ok("status", json!({}));
        let listed = s["notebooks"].as_array().unwrap().len();
        (listed == names.len()).then_some(())
    });
}

fn status_lock(c: &mut Client, nb: &str) -> Value {
    c.status_of(nb)["lock"].clone()
}

fn wait_waiters(c: &mut Client, nb: &str, n: u64) {
    wait_for(LONG, &format!("{nb} to have {n} waiter(s)"), || {
        (status_lock(c, nb)["waiters"] == json!(n)).then_some(())
    });
}

fn daemon_alive(d: &mut Daemon) -> bool {
    d.child.try_wait().unwrap().is_none()
}

// ---------------------------------------------------------------------------
// The socket itself

#[test]
fn socket_is_0600_and_removed_on_clean_exit() {
    let (sb, _repos, mut d) = setup(&["nb"]);
    let meta = std::fs::symlink_metadata(&sb.socket).unwrap();
    assert!(
        std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()),
        "not a socket"
    );
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "socket mode");
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(LONG), Some(0), "clean exit code");
    assert!(
        !sb.socket.exists(),
        "socket file must be removed on clean exit"
    );
}

/// What a forked child running as `uid` saw when pinging `socket`:
/// `Err(errno)` when connect failed, `Ok(first line or "")` otherwise.
fn ping_as_uid(socket: &Path, uid: u32) -> Result<String, i32> {
    use std::os::unix::ffi::OsStrExt;
    // Everything the child needs is prepared before fork: after fork in a
    // threaded process only async-signal-safe calls (raw syscalls) are made.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = socket.as_os_str().as_bytes();
    assert!(bytes.len() < addr.sun_path.len());
    for (i, b) in bytes.iter().enumerate() {
        addr.sun_path[i] = *b as libc::c_char;
    }
    let request = b"{\"id\":1,\"cmd\":\"ping\"}\n";
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (r, w) = (fds[0], fds[1]);
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        unsafe {
            libc::close(r);
            let mut out = [0u8; 512];
            let mut n: usize;
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(uid) != 0
                || libc::setuid(uid) != 0
            {
                libc::write(w, b"S".as_ptr().cast(), 1);
                libc::_exit(3);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let tv = libc::timeval {
                tv_sec: 5,
                tv_usec: 0,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
            if libc::connect(
                fd,
                (&addr as *const libc::sockaddr_un).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            ) != 0
            {
                let errno = *libc::__errno_location();
                out[0] = b'E';
                out[1] = errno as u8;
                libc::write(w, out.as_ptr().cast(), 2);
                libc::_exit(0);
            }
            out[0] = b'L';
            n = 1;
            libc::write(fd, request.as_ptr().cast(), request.len());
            while n < out.len() {
                let got = libc::read(fd, out.as_mut_ptr().add(n).cast(), out.len() - n);
                if got <= 0 {
                    break;
                }
                let start = n;
                n += got as usize;
                if out[start..n].contains(&b'\n') {
                    break;
                }
            }
            libc::write(w, out.as_ptr().cast(), n);
            libc::_exit(0);
        }
    }
    unsafe { libc::close(w) };
    let end = Instant::now() + LONG;
    loop {
        let mut status = 0;
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            break;
        }
        if Instant::now() >= end {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the uid {uid} child hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(r) };
    let mut got = Vec::new();
    file.read_to_end(&mut got).unwrap();
    match got.first() {
        Some(b'E') => Err(i32::from(got[1])),
        Some(b'L') => Ok(String::from_utf8_lossy(&got[1..]).to_string()),
        other => panic!("child reported {other:?} ({got:?})"),
    }
}

#[test]
fn another_uid_is_refused_forbidden() {
    let (sb, _repos, mut d) = setup(&["nb"]);
    const NOBODY: u32 = 65534;
    // Let uid nobody reach the socket file: with the socket's own 0600 mode
    // the kernel refuses it first ...
    std::fs::set_permissions(&sb.root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(sb.root.join("run"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        ping_as_uid(&sb.socket, NOBODY),
        Err(libc::EACCES),
        "socket mode 0600 must keep another uid out"
    );
    // ... and with the mode opened up, the peer credentials still refuse it.
    std::fs::set_permissions(&sb.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let line = ping_as_uid(&sb.socket, NOBODY).expect("connect as nobody");
    let resp: Value = serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("uid nobody must get a forbidden line, got {line:?} ({e})"));
    assert_eq!(resp["ok"], json!(false), "{resp}");
    assert_eq!(resp["error"]["code"], json!("forbidden"), "{resp}");
    // The CLI run as nobody reports it too (a real client process).
    let out = sb
        .command(&["--socket", sb.socket.to_str().unwrap(), "status"])
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "CLI as another uid: {stderr}");
    assert!(stderr.contains("forbidden"), "CLI message: {stderr}");
    // We are still served.
    sb.client().ok("ping", json!({}));
    assert!(daemon_alive(&mut d));
    assert!(d.log_text().contains("another user"), "refusal logged");
}

#[test]
fn second_daemon_on_the_same_socket_exits_1_and_first_keeps_serving() {
    let (sb, repos, mut first) = setup(&["nb"]);
    let mut c = sb.client();
    c.ok("lock", json!({"notebook": "nb"}));
    let mut second = sb.spawn(&[]);
    assert_eq!(second.wait_exit(LONG), Some(1), "second daemon exit code");
    let log = second.log_text();
    assert!(
        log.contains("already running") && log.contains(sb.socket.to_str().unwrap()),
        "clear message naming the socket: {log}"
    );
    // The first one is unharmed: same connection, new connections, the socket file.
    assert!(daemon_alive(&mut first));
    assert!(
        sb.socket.exists(),
        "the second daemon removed the first's socket"
    );
    assert_eq!(c.ok("unlock", json!({"notebook": "nb"}))["depth"], json!(0));
    sb.client().ok("ping", json!({}));
    repos[0].write("after.txt", "after\n");
    repos[0].wait_committed("after.txt", "after\n");
}

#[test]
fn stale_socket_after_kill9_is_replaced() {
    let (sb, repos, mut d) = setup(&["nb"]);
    d.kill9();
    assert!(sb.socket.exists(), "kill -9 leaves the socket file behind");
    assert!(
        UnixStream::connect(&sb.socket).is_err(),
        "nobody answers on it"
    );
    repos[0].write("while-down.txt", "down\n");
    let d2 = sb.start();
    wait_notebooks(&sb, &["nb"]);
    let mut c = sb.client();
    assert_eq!(c.ok("ping", json!({}))["protocol"], json!(1));
    repos[0].wait_committed("while-down.txt", "down\n");
    assert!(
        d2.log_text().contains("stale"),
        "replacement logged: {}",
        d2.log_text()
    );
    repos[0].assert_fsck_clean();
}

/// interface.md section 5: readiness comes after the notebooks are open, and
/// clients (the conformance harness among them) take "answers ping" as ready:
/// the first answer must already know every notebook.
#[test]
fn first_answer_already_knows_the_notebooks() {
    for _ in 0..5 {
        let sb = Sandbox::new();
        let r = sb.repo("nb");
        r.write("base.txt", "base\n");
        r.git(&["add", "-A"]);
        r.git(&["commit", "-q", "-m", "base"]);
        sb.write_config("", &[("nb", &r.path, "")]);
        let _d = sb.start(); // returns on the first ping answered
        let mut c = sb.client();
        let s = c.ok("status", json!({}));
        assert_eq!(s["notebooks"].as_array().unwrap().len(), 1, "{s}");
        c.ok("lock", json!({"notebook": "nb", "timeout_ms": 5000}));
    }
}

// ---------------------------------------------------------------------------
// Every command

#[test]
fn ping_and_id_echo() {
    let (sb, _repos, _d) = setup(&["nb"]);
    let mut c = sb.client();
    let r = c.ok("ping", json!({}));
    assert!(r["version"].as_str().is_some_and(|v| !v.is_empty()), "{r}");
    assert_eq!(r["protocol"], json!(1));
    for id in [
        json!("text"),
        json!({"a": [1, null]}),
        json!(1.5),
        json!(-3),
    ] {
        c.send_raw(format!("{}\n", json!({"id": id, "cmd": "ping"})).as_bytes());
        let r = c.recv();
        assert_eq!(r["id"], id);
        assert_eq!(r["ok"], json!(true));
    }
    c.send_raw(b"{\"cmd\":\"ping\"}\n");
    let r = c.recv();
    assert_eq!(r["id"], Value::Null, "absent id echoed as null: {r}");
    // Pipelined requests are answered in order, one line each.
    c.send_raw(
        b"{\"id\":1,\"cmd\":\"ping\"}\n{\"id\":2,\"cmd\":\"nope\"}\n{\"id\":3,\"cmd\":\"ping\"}\n",
    );
    let ids: Vec<Value> = (0..3).map(|_| c.recv()["id"].clone()).collect();
    assert_eq!(ids, vec![json!(1), json!(2), json!(3)]);
}

#[test]
fn status_fields_filter_and_while_held() {
    let (sb, repos, _d) = setup(&["nb", "other"]);
    let mut c = sb.client();
    let all = c.ok("status", json!({}));
    let list = all["notebooks"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "{all}");
    assert!(names.contains(&"nb") && names.contains(&"other"), "{all}");
    let e = c.status_of("nb");
    for key in [
        "name",
        "path",
        "branch",
        "head",
        "pending",
        "paused",
        "state",
        "lock",
        "last_commit",
        "last_error",
    ] {
        assert!(e.get(key).is_some(), "status lacks {key}: {e}");
    }
    for key in ["held", "mode", "holders", "waiters"] {
        assert!(e["lock"].get(key).is_some(), "status.lock lacks {key}: {e}");
    }
    assert_eq!(e["path"], json!(repos[0].path.display().to_string()));
    assert_eq!(e["branch"], json!("main"));
    assert_eq!(e["head"], json!(repos[0].head().unwrap()));
    assert_eq!(e["paused"], json!(false));
    assert_eq!(e["lock"]["held"], json!(false));
    assert_eq!(
        e["lock"]["holders"],
        json!([]),
        "status must not list itself: {e}"
    );
    assert_eq!(e["lock"]["waiters"], json!(0));
    assert!(e["pending"].is_u64(), "{e}");

    // Filter by name and by absolute path.
    let one = c.ok("status", json!({"notebook": "other"}));
    assert_eq!(one["notebooks"].as_array().unwrap().len(), 1);
    assert_eq!(one["notebooks"][0]["name"], json!("other"));
    let by_path = c.ok(
        "status",
        json!({"notebook": repos[1].path.display().to_string()}),
    );
    assert_eq!(by_path["notebooks"][0]["name"], json!("other"));
    c.err("status", json!({"notebook": "missing"}), "not_found");

    // While another connection holds the notebook, status answers at once and
    // shows exactly that holder.
    let mut holder = sb.client();
    holder.ok("lock", json!({"notebook": "nb"}));
    holder.ok("lock", json!({"notebook": "nb"}));
    let t = Instant::now();
    let e = c.status_of("nb");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "status waited {:?}",
        t.elapsed()
    );
    assert_eq!(
        e["head"],
        json!(repos[0].head().unwrap()),
        "HEAD while held: {e}"
    );
    assert_eq!(e["lock"]["held"], json!(true), "{e}");
    assert_eq!(e["lock"]["mode"], json!("exclusive"), "{e}");
    let holders = e["lock"]["holders"].as_array().unwrap();
    assert_eq!(holders.len(), 1, "only the holder, not the asker: {e}");
    assert_eq!(holders[0]["depth"], json!(2), "{e}");
    assert_eq!(e["lock"]["waiters"], json!(0), "{e}");
    // The holder asking status does not become a holder twice either.
    let mine = holder.status_of("nb");
    assert_eq!(
        mine["lock"]["holders"].as_array().unwrap().len(),
        1,
        "{mine}"
    );
    assert_eq!(mine["lock"]["holders"][0]["depth"], json!(2), "{mine}");
    // The other notebook is untouched.
    assert_eq!(c.status_of("other")["lock"]["held"], json!(false));
}

#[test]
fn lock_unlock_depth_reentrancy_not_held() {
    let (sb, _repos, _d) = setup(&["nb"]);
    let mut a = sb.client();
    a.err("unlock", json!({"notebook": "nb"}), "not_held");
    assert_eq!(a.ok("lock", json!({"notebook": "nb"}))["depth"], json!(1));
    assert_eq!(a.ok("lock", json!({"notebook": "nb"}))["depth"], json!(2));
    assert_eq!(
        a.ok("lock", json!({"notebook": "nb", "timeout_ms": 0}))["depth"],
        json!(3),
        "re-entering never waits"
    );
    let mut b = sb.client();
    b.err("unlock", json!({"notebook": "nb"}), "not_held");
    b.err(
        "lock",
        json!({"notebook": "nb", "timeout_ms": 200}),
        "timeout",
    );
    assert_eq!(a.ok("unlock", json!({"notebook": "nb"}))["depth"], json!(2));
    assert_eq!(a.ok("unlock", json!({"notebook": "nb"}))["depth"], json!(1));
    b.err(
        "lock",
        json!({"notebook": "nb", "timeout_ms": 200}),
        "timeout",
    );
    assert_eq!(a.ok("unlock", json!({"notebook": "nb"}))["depth"], json!(0));
    a.err("unlock", json!({"notebook": "nb"}), "not_held");
    assert_eq!(
        b.ok("lock", json!({"notebook": "nb", "timeout_ms": 5000}))["depth"],
        json!(1)
    );
    a.err("lock", json!({"notebook": "missing"}), "not_found");
    a.err("unlock", json!({"notebook": "missing"}), "not_found");
}

#[test]
fn shared_holders_together_exclusive_waits() {
    let (sb, repos, _d) = setup(&["nb"]);
    let mut a = sb.client();
    let mut b = sb.client();
    let mut x = sb.client();
    let mut obs = sb.client();
    assert_eq!(
        a.ok(
            "lock",
            json!({"notebook": "nb", "shared": true, "timeout_ms": 2000})
        )["depth"],
        json!(1)
    );
    assert_eq!(
        b.ok(
            "lock",
            json!({"notebook": "nb", "shared": true, "timeout_ms": 2000})
        )["depth"],
        json!(1),
        "two shared holders at once"
    );
    let l = status_lock(&mut obs, "nb");
    assert_eq!(l["mode"], json!("shared"), "{l}");
    assert_eq!(l["holders"].as_array().unwrap().len(), 2, "{l}");
    // An exclusive request waits for both.
    x.send("lock", json!({"notebook": "nb", "timeout_ms": 20000}));
    wait_waiters(&mut obs, "nb", 1);
    assert!(
        x.recv_within(WINDOW).is_none(),
        "exclusive granted while shared held"
    );
    a.ok("unlock", json!({"notebook": "nb"}));
    assert!(
        x.recv_within(WINDOW).is_none(),
        "exclusive granted while one shared holder remains"
    );
    // A new shared request does not overtake the queued exclusive one.
    let mut c = sb.client();
    c.err(
        "lock",
        json!({"notebook": "nb", "shared": true, "timeout_ms": 300}),
        "timeout",
    );
    b.ok("unlock", json!({"notebook": "nb"}));
    let got = x
        .recv_within(LONG)
        .expect("exclusive granted after shared holders left");
    assert_eq!(got["ok"], json!(true), "{got}");
    assert_eq!(got["depth"], json!(1));
    let l = status_lock(&mut obs, "nb");
    assert_eq!(l["mode"], json!("exclusive"), "{l}");
    assert_eq!(l["holders"].as_array().unwrap().len(), 1, "{l}");
    drop(x);
    // A shared hold blocks auto-commit too.
    wait_unheld(&mut obs, "nb");
    a.ok(
        "lock",
        json!({"notebook": "nb", "shared": true, "timeout_ms": 2000}),
    );
    repos[0].write("shared.txt", "during shared\n");
    repos[0].assert_head_stays(WINDOW, "while the lock is held shared");
    wait_waiters(&mut obs, "nb", 1); // the auto-commit queues behind the reader
    a.ok("unlock", json!({"notebook": "nb"}));
    repos[0].wait_committed("shared.txt", "during shared\n");
}

#[test]
fn lock_timeout_leaves_no_waiter() {
    let (sb, _repos, _d) = setup(&["nb"]);
    let mut a = sb.client();
    let mut b = sb.client();
    a.ok("lock", json!({"notebook": "nb"}));
    let t = Instant::now();
    let r = b.err(
        "lock",
        json!({"notebook": "nb", "timeout_ms": 400}),
        "timeout",
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(380),
        "gave up early: {took:?}"
    );
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{r}"
    );
    let l = status_lock(&mut b, "nb");
    assert_eq!(
        l["waiters"],
        json!(0),
        "a timed-out wait leaves no waiter: {l}"
    );
    assert!(
        l["timeouts"].as_u64().unwrap_or(0) >= 1,
        "timeouts counted: {l}"
    );
    // Nobody is handed the lock when A lets go: the timed-out request is gone.
    a.ok("unlock", json!({"notebook": "nb"}));
    wait_unheld(&mut b, "nb");
    let l = status_lock(&mut b, "nb");
    assert_eq!(l["holders"], json!([]), "{l}");
    // B's connection is still usable and gets it at once.
    assert_eq!(
        b.ok("lock", json!({"notebook": "nb", "timeout_ms": 0}))["depth"],
        json!(1)
    );
    // The configured default timeout (5s in these tests) applies without timeout_ms.
    let t = Instant::now();
    a.err("lock", json!({"notebook": "nb"}), "timeout");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(4800) && took < Duration::from_secs(15),
        "default lock.timeout: {took:?}"
    );
}

#[test]
fn commit_paths_message_null_and_absolute() {
    let (sb, repos, _d) = setup(&["nb"]);
    let r = &repos[0];
    let mut a = sb.client();
    // Hold the lock so no auto-commit interferes; commits run inside the hold.
    a.ok("lock", json!({"notebook": "nb"}));
    let before = r.head().unwrap();
    r.write("a.txt", "a\n");
    r.write("b.txt", "b\n");
    r.write("sub/c.txt", "c\n");
    let res = a.ok(
        "commit",
        json!({"notebook": "nb", "paths": ["a.txt"], "message": "only a"}),
    );
    let id = res["commit"].as_str().expect("commit id").to_string();
    assert_eq!(r.head().unwrap(), id);
    assert_eq!(r.git(&["log", "-1", "--format=%s"]), "only a");
    assert_eq!(r.git(&["rev-parse", "HEAD~1"]), before);
    assert_eq!(
        r.git(&["diff-tree", "--no-commit-id", "--name-only", "-r", "HEAD"]),
        "a.txt"
    );
    // An absolute path inside the notebook is accepted.
    let abs = r.path.join("sub/c.txt").display().to_string();
    let res = a.ok("commit", json!({"notebook": "nb", "paths": [abs]}));
    assert!(res["commit"].is_string(), "{res}");
    assert_eq!(r.blob("sub/c.txt").as_deref(), Some("c\n"));
    assert_eq!(r.blob("b.txt"), None, "b.txt not named");
    // Everything else, with the default message.
    let res = a.ok("commit", json!({"notebook": "nb"}));
    assert!(res["commit"].is_string(), "{res}");
    assert_eq!(r.blob("b.txt").as_deref(), Some("b\n"));
    assert!(!r.git(&["log", "-1", "--format=%s"]).is_empty());
    // Nothing changed: null, and no empty commit.
    let head = r.head();
    let res = a.ok("commit", json!({"notebook": "nb"}));
    assert_eq!(res["commit"], Value::Null, "{res}");
    let res = a.ok("commit", json!({"notebook": "nb", "paths": ["a.txt"]}));
    assert_eq!(res["commit"], Value::Null, "{res}");
    assert_eq!(r.head(), head);
    a.err("commit", json!({"notebook": "missing"}), "not_found");
    a.err(
        "commit",
        json!({"notebook": "nb", "paths": ["../x"]}),
        "forbidden",
    );
    a.err(
        "commit",
        json!({"notebook": "nb", "paths": "a.txt"}),
        "bad_request",
    );
    a.err(
        "commit",
        json!({"notebook": "nb", "message": 5}),
        "bad_request",
    );
    assert_eq!(r.status_porcelain(), "", "index in step");
    drop(a);
    r.assert_fsck_clean();
}

#[test]
fn log_limit_and_path() {
    let (sb, repos, _d) = setup(&["nb"]);
    let r = &repos[0];
    r.write("x.txt", "1\n");
    r.git(&["add", "-A"]);
    r.git(&["commit", "-q", "-m", "x one"]);
    r.write("y.txt", "1\n");
    r.git(&["add", "-A"]);
    r.git(&["commit", "-q", "-m", "y one\n\nbody line"]);
    r.write("x.txt", "2\n");
    r.git(&["add", "-A"]);
    r.git(&["commit", "-q", "-m", "x two"]);
    let mut c = sb.client();
    let all = c.ok("log", json!({"notebook": "nb"}));
    let commits = all["commits"].as_array().unwrap();
    assert_eq!(commits.len(), 4, "{all}");
    let summaries: Vec<&str> = commits
        .iter()
        .map(|e| e["summary"].as_str().unwrap())
        .collect();
    assert_eq!(summaries, ["x two", "y one", "x one", "base"]);
    assert_eq!(commits[0]["id"], json!(r.head().unwrap()));
    assert!(commits[1]["message"]
        .as_str()
        .unwrap()
        .contains("body line"));
    assert_eq!(commits[0]["author_name"], json!("Test User"));
    assert_eq!(commits[0]["author_email"], json!("test@example.invalid"));
    let time = commits[0]["time"].as_str().unwrap();
    assert!(
        time.len() >= 20 && time.as_bytes()[4] == b'-' && time.contains('T'),
        "RFC 3339: {time}"
    );
    let two = c.ok("log", json!({"notebook": "nb", "limit": 2}));
    assert_eq!(two["commits"].as_array().unwrap().len(), 2);
    let x = c.ok("log", json!({"notebook": "nb", "path": "x.txt"}));
    let xs: Vec<&str> = x["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["summary"].as_str().unwrap())
        .collect();
    assert_eq!(xs, ["x two", "x one"]);
    let abs = r.path.join("y.txt").display().to_string();
    let y = c.ok("log", json!({"notebook": "nb", "path": abs, "limit": 5}));
    assert_eq!(y["commits"].as_array().unwrap().len(), 1, "{y}");
    c.err(
        "log",
        json!({"notebook": "nb", "limit": "2"}),
        "bad_request",
    );
    c.err("log", json!({"notebook": "nb", "limit": -1}), "bad_request");
    c.err(
        "log",
        json!({"notebook": "nb", "path": ".git/config"}),
        "forbidden",
    );
    c.err("log", json!({"notebook": "missing"}), "not_found");
}

#[test]
fn show_text_binary_rev_not_found() {
    use base64::Engine as _;
    let (sb, repos, _d) = setup(&["nb"]);
    let r = &repos[0];
    r.write("t.txt", "old ü\n");
    std::fs::write(r.path.join("bin.dat"), [0u8, 159, 146, 150, 255, 10]).unwrap();
    r.git(&["add", "-A"]);
    r.git(&["commit", "-q", "-m", "one"]);
    let first = r.head().unwrap();
    r.write("t.txt", "new\n");
    r.git(&["commit", "-q", "-am", "two"]);
    let mut c = sb.client();
    let s = c.ok("show", json!({"notebook": "nb", "path": "t.txt"}));
    assert_eq!(s["content"], json!("new\n"), "{s}");
    assert_eq!(s["commit"], json!(r.head().unwrap()));
    let s = c.ok(
        "show",
        json!({"notebook": "nb", "path": "t.txt", "rev": first}),
    );
    assert_eq!(s["content"], json!("old ü\n"), "{s}");
    assert_eq!(s["commit"], json!(first));
    let s = c.ok(
        "show",
        json!({"notebook": "nb", "path": "t.txt", "rev": "HEAD~1"}),
    );
    assert_eq!(s["content"], json!("old ü\n"), "{s}");
    let s = c.ok("show", json!({"notebook": "nb", "path": "bin.dat"}));
    assert!(s.get("content").is_none(), "binary is not `content`: {s}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s["content_base64"].as_str().expect("content_base64"))
        .unwrap();
    assert_eq!(bytes, [0u8, 159, 146, 150, 255, 10]);
    c.err(
        "show",
        json!({"notebook": "nb", "path": "nope.txt"}),
        "not_found",
    );
    c.err(
        "show",
        json!({"notebook": "nb", "path": "t.txt", "rev": "no-such-rev"}),
        "not_found",
    );
    c.err(
        "show",
        json!({"notebook": "nb", "path": "t.txt", "rev": "0123456789012345678901234567890123456789"}),
        "not_found",
    );
    c.err("show", json!({"notebook": "nb"}), "bad_request");
    c.err("show", json!({"notebook": "nb", "path": 3}), "bad_request");
    c.err(
        "show",
        json!({"notebook": "missing", "path": "t.txt"}),
        "not_found",
    );
}

#[test]
fn diff_default_path_and_revisions() {
    let (sb, repos, _d) = setup(&["nb"]);
    let r = &repos[0];
    let mut c = sb.client();
    c.ok("pause", json!({"notebook": "nb"}));
    r.write("base.txt", "changed\n");
    r.write("other.txt", "other\n");
    r.git(&["add", "other.txt"]);
    let d = c.ok("diff", json!({"notebook": "nb"}));
    let patch = d["patch"].as_str().unwrap();
    assert!(
        patch.contains("-base") && patch.contains("+changed"),
        "{patch}"
    );
    let d = c.ok("diff", json!({"notebook": "nb", "path": "base.txt"}));
    let patch = d["patch"].as_str().unwrap();
    assert!(
        patch.contains("+changed") && !patch.contains("other.txt"),
        "{patch}"
    );
    let d = c.ok(
        "diff",
        json!({"notebook": "nb", "path": "nothing-here.txt"}),
    );
    assert_eq!(d["patch"], json!(""), "{d}");
    // Between two revisions.
    r.git(&["commit", "-q", "-am", "two"]);
    let d = c.ok(
        "diff",
        json!({"notebook": "nb", "from": "HEAD~1", "to": "HEAD"}),
    );
    let patch = d["patch"].as_str().unwrap();
    assert!(
        patch.contains("+changed") && patch.contains("+other"),
        "{patch}"
    );
    let d = c.ok("diff", json!({"notebook": "nb"}));
    assert_eq!(d["patch"], json!(""), "clean tree: {d}");
    c.err(
        "diff",
        json!({"notebook": "nb", "from": "no-such-rev"}),
        "not_found",
    );
    c.err(
        "diff",
        json!({"notebook": "nb", "path": "../x"}),
        "forbidden",
    );
    c.err("diff", json!({"notebook": "nb", "to": true}), "bad_request");
}

#[test]
fn pause_and_resume() {
    let (sb, repos, _d) = setup(&["nb"]);
    let r = &repos[0];
    let mut c = sb.client();
    assert_eq!(
        c.ok("pause", json!({"notebook": "nb"}))["paused"],
        json!(true)
    );
    assert_eq!(c.status_of("nb")["paused"], json!(true));
    r.write("p.txt", "paused\n");
    r.assert_head_stays(WINDOW, "while paused");
    wait_for(LONG, "pending to count the change", || {
        (c.status_of("nb")["pending"].as_u64().unwrap_or(0) >= 1).then_some(())
    });
    assert_eq!(
        c.ok("resume", json!({"notebook": "nb"}))["paused"],
        json!(false)
    );
    assert_eq!(c.status_of("nb")["paused"], json!(false));
    r.wait_committed("p.txt", "paused\n");
    c.err("pause", json!({"notebook": "missing"}), "not_found");
    c.err("resume", json!({}), "bad_request");
}

#[test]
fn reload_returns_the_configured_names() {
    let (sb, repos, _d) = setup(&["nb"]);
    let mut c = sb.client();
    assert_eq!(c.ok("reload", json!({}))["notebooks"], json!(["nb"]));
    let extra = sb.repo("extra");
    sb.write_config(
        "",
        &[("nb", &repos[0].path, ""), ("extra", &extra.path, "")],
    );
    let names = c.ok("reload", json!({}))["notebooks"].clone();
    let mut names: Vec<String> = serde_json::from_value(names).unwrap();
    names.sort();
    assert_eq!(names, ["extra", "nb"]);
    c.status_of("extra");
    extra.write("new.txt", "new\n");
    extra.wait_committed("new.txt", "new\n");
}

/// Reads events until one matches, within a deadline.
fn next_event(sub: &mut Client, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + LONG;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {what} event in time");
        if let Some(ev) = sub.recv_within(left) {
            if pred(&ev) {
                return ev;
            }
        }
    }
}

#[test]
fn subscribe_commit_and_lock_events() {
    let (sb, repos, _d) = setup(&["nb", "other"]);
    let r = &repos[0];
    let mut sub = sb.client();
    let ok = sub.ok("subscribe", json!({}));
    assert_eq!(ok["ok"], json!(true));
    r.write("ev.txt", "event\n");
    let ev = next_event(&mut sub, "commit", |e| e["event"] == json!("commit"));
    assert_eq!(ev["notebook"], json!("nb"), "{ev}");
    r.wait_committed("ev.txt", "event\n");
    assert_eq!(ev["commit"], json!(r.head().unwrap()), "{ev}");
    assert_eq!(ev["paths"], json!(["ev.txt"]), "{ev}");
    // Lock events for another client's lock/unlock.
    let mut a = sb.client();
    a.ok("lock", json!({"notebook": "nb"}));
    let ev = next_event(&mut sub, "lock held", |e| {
        e["event"] == json!("lock") && e["held"] == json!(true)
    });
    assert_eq!(ev["notebook"], json!("nb"), "{ev}");
    a.ok("unlock", json!({"notebook": "nb"}));
    let ev = next_event(&mut sub, "lock released", |e| {
        e["event"] == json!("lock") && e["held"] == json!(false)
    });
    assert_eq!(ev["notebook"], json!("nb"), "{ev}");
    // A commit on request is announced too, with its paths.
    a.ok("pause", json!({"notebook": "nb"}));
    r.write("req.txt", "by request\n");
    let id = a.ok("commit", json!({"notebook": "nb", "paths": ["req.txt"]}))["commit"].clone();
    let ev = next_event(&mut sub, "commit on request", |e| {
        e["event"] == json!("commit") && e["commit"] == id
    });
    assert_eq!(ev["paths"], json!(["req.txt"]), "{ev}");

    // A filtered subscription sees only its notebook.
    let mut only = sb.client();
    only.ok("subscribe", json!({"notebook": "other"}));
    repos[1].write("o.txt", "o\n");
    let ev = next_event(&mut only, "commit in other", |e| {
        e["event"] == json!("commit")
    });
    assert_eq!(ev["notebook"], json!("other"));
    a.ok("lock", json!({"notebook": "nb"}));
    // The nb lock must not show up on the filtered stream.
    let end = Instant::now() + WINDOW;
    while Instant::now() < end {
        if let Some(ev) = only.recv_within(Duration::from_millis(100)) {
            assert_eq!(
                ev["notebook"],
                json!("other"),
                "filtered stream leaked {ev}"
            );
        }
    }
    let mut bad = sb.client();
    bad.err("subscribe", json!({"notebook": "missing"}), "not_found");
}

#[test]
fn unknown_command_and_bad_requests_keep_the_connection() {
    let (sb, _repos, _d) = setup(&["nb"]);
    let mut c = sb.client();
    c.err("frobnicate", json!({}), "unknown_command");
    let lines: &[(&[u8], &str)] = &[
        (b"this is not json", "bad_request"),
        (b"{\"cmd\":\"ping\"", "bad_request"),
        (b"[1,2,3]", "bad_request"),
        (b"\"ping\"", "bad_request"),
        (b"42", "bad_request"),
        (b"null", "bad_request"),
        (b"{}", "bad_request"),
        (b"{\"id\":9}", "bad_request"),
        (b"{\"cmd\":null}", "bad_request"),
        (b"{\"cmd\":[\"ping\"]}", "bad_request"),
        (b"{\"cmd\":\"lock\"}", "bad_request"),
        (b"{\"cmd\":\"lock\",\"notebook\":5}", "bad_request"),
        (
            b"{\"cmd\":\"lock\",\"notebook\":\"nb\",\"timeout_ms\":\"1s\"}",
            "bad_request",
        ),
        (
            b"{\"cmd\":\"lock\",\"notebook\":\"nb\",\"timeout_ms\":1.5}",
            "bad_request",
        ),
        (
            b"{\"cmd\":\"lock\",\"notebook\":\"nb\",\"shared\":\"yes\"}",
            "bad_request",
        ),
        (b"{\"cmd\":\"status\",\"notebook\":[]}", "bad_request"),
        (
            b"{\"cmd\":\"commit\",\"notebook\":\"nb\",\"paths\":[1]}",
            "bad_request",
        ),
        (b"{\"cmd\":\"PING\"}", "unknown_command"),
        (b"{\"cmd\":\"\"}", "unknown_command"),
        (b"\xff\xfe{\"cmd\":\"ping\"}", "bad_request"),
    ];
    for (i, (line, code)) in lines.iter().enumerate() {
        c.send_raw(line);
        c.send_raw(b"\n");
        let r = c.recv();
        assert_eq!(
            r["ok"],
            json!(false),
            "line {i} {:?}: {r}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(
            r["error"]["code"],
            json!(code),
            "line {i} {:?}: {r}",
            String::from_utf8_lossy(line)
        );
        assert!(
            r["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{r}"
        );
        // The connection stays usable.
        c.ok("ping", json!({}));
    }
    // The id is echoed on failures when it can be read.
    c.send_raw(b"{\"id\":\"k\",\"cmd\":\"lock\",\"notebook\":1}\n");
    assert_eq!(c.recv()["id"], json!("k"));
    // Empty lines are not requests: each gets bad_request, and the
    // connection goes on. CRLF is accepted.
    c.send_raw(b"\n   \n{\"id\":5,\"cmd\":\"ping\"}\r\n");
    for blank in 0..2 {
        let r = c.recv();
        assert_eq!(
            (r["id"].clone(), r["error"]["code"].clone()),
            (Value::Null, json!("bad_request")),
            "blank line {blank}: {r}"
        );
    }
    let r = c.recv();
    assert_eq!(
        (r["id"].clone(), r["ok"].clone()),
        (json!(5), json!(true)),
        "{r}"
    );
}

#[test]
fn too_large_line_is_answered_then_closed() {
    let (sb, _repos, mut d) = setup(&["nb"]);
    let mut c = sb.client();
    c.ok("lock", json!({"notebook": "nb"}));
    // Exactly MAX_LINE bytes is still a (bad) request, not too_large.
    let mut ok_size = vec![b' '; MAX_LINE - 1];
    ok_size[0] = b'x';
    ok_size.push(b'\n');
    c.send_raw(&ok_size);
    assert_eq!(c.recv()["error"]["code"], json!("bad_request"));
    // One byte more than allowed: too_large, then EOF; the lock goes with it.
    let mut big = b"{\"id\":1,\"cmd\":\"ping\",\"pad\":\"".to_vec();
    big.resize(MAX_LINE + 16, b'a');
    big.extend_from_slice(b"\"}\n");
    let writer = {
        let mut s = c.stream().try_clone().unwrap();
        std::thread::spawn(move || {
            // The daemon stops reading at the limit: the rest may not be taken.
            let _ = s.write_all(&big);
        })
    };
    let lines = c.wait_closed(LONG);
    writer.join().unwrap();
    assert_eq!(lines.len(), 1, "one answer, then close: {lines:?}");
    assert_eq!(lines[0]["error"]["code"], json!("too_large"), "{lines:?}");
    let mut other = sb.client();
    wait_unheld(&mut other, "nb");
    // A huge line with no newline at all behaves the same.
    let mut c2 = sb.client();
    let s = c2.stream().try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'{'; 64 * 1024];
        let mut s = s;
        for _ in 0..40 {
            if s.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let lines = c2.wait_closed(LONG);
    writer.join().unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["error"]["code"], json!("too_large"));
    other.ok("ping", json!({}));
    assert!(daemon_alive(&mut d));
}

#[test]
fn forbidden_paths() {
    let (sb, repos, _d) = setup(&["nb"]);
    let r = &repos[0];
    let outside = sb.root.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "secret\n").unwrap();
    std::os::unix::fs::symlink(&outside, r.path.join("out")).unwrap();
    r.wait_committed("base.txt", "base\n");
    let mut c = sb.client();
    let elsewhere = outside.join("secret.txt").display().to_string();
    let sibling = r
        .path
        .parent()
        .unwrap()
        .join("elsewhere.txt")
        .display()
        .to_string();
    let bad = [
        "../x",
        "a/../../x",
        "..",
        elsewhere.as_str(),
        sibling.as_str(),
        "/etc/passwd",
        "out/secret.txt",
        ".git/config",
        ".git",
        "sub/../.git/HEAD",
        ".GIT/config",
    ];
    for p in bad {
        c.err("show", json!({"notebook": "nb", "path": p}), "forbidden");
        c.err("log", json!({"notebook": "nb", "path": p}), "forbidden");
        c.err("diff", json!({"notebook": "nb", "path": p}), "forbidden");
        c.err(
            "commit",
            json!({"notebook": "nb", "paths": [p]}),
            "forbidden",
        );
    }
    let git_config = r.path.join(".git/config").display().to_string();
    c.err(
        "show",
        json!({"notebook": "nb", "path": git_config}),
        "forbidden",
    );
    // Nothing outside leaked into the repository.
    assert!(r
        .git(&["ls-tree", "-r", "--name-only", "HEAD"])
        .lines()
        .all(|l| !l.contains("secret")));
    // Harmless spellings inside the notebook still work.
    c.ok("show", json!({"notebook": "nb", "path": "./base.txt"}));
    c.ok("show", json!({"notebook": "nb", "path": "x/../base.txt"}));
}

#[test]
fn notebook_by_name_path_subdirectory_and_unknown() {
    let (sb, repos, _d) = setup(&["nb"]);
    let r = &repos[0];
    r.write("deep/er/f.txt", "f\n");
    r.wait_committed("deep/er/f.txt", "f\n");
    let mut c = sb.client();
    let sub = r.path.join("deep/er").display().to_string();
    let root = r.path.display().to_string();
    for arg in [root.as_str(), sub.as_str()] {
        assert_eq!(c.status_of("nb")["name"], json!("nb"));
        let s = c.ok("status", json!({"notebook": arg}));
        assert_eq!(s["notebooks"][0]["name"], json!("nb"), "{arg}: {s}");
        let l = c.ok("log", json!({"notebook": arg, "limit": 1}));
        assert_eq!(l["commits"].as_array().unwrap().len(), 1);
        // Paths stay relative to the notebook root, not the directory named.
        let s = c.ok("show", json!({"notebook": arg, "path": "deep/er/f.txt"}));
        assert_eq!(s["content"], json!("f\n"));
        assert_eq!(c.ok("lock", json!({"notebook": arg}))["depth"], json!(1));
        assert_eq!(
            c.ok("unlock", json!({"notebook": "nb"}))["depth"],
            json!(0),
            "same lock by name"
        );
    }
    for arg in ["missing", "", "relative/path"] {
        c.err("status", json!({"notebook": arg}), "not_found");
        c.err("log", json!({"notebook": arg}), "not_found");
        c.err("lock", json!({"notebook": arg}), "not_found");
    }
    let outside = sb.root.join("books").display().to_string();
    c.err("lock", json!({"notebook": outside}), "not_found");
}

// ---------------------------------------------------------------------------
// The lock, as clients see it

#[test]
fn lock_blocks_auto_commits_until_unlock_or_close() {
    let (sb, repos, _d) = setup(&["nb"]);
    let r = &repos[0];
    let mut a = sb.client();
    a.ok("lock", json!({"notebook": "nb"}));
    r.write("held.txt", "one\n");
    r.assert_head_stays(Duration::from_millis(1000), "while a client holds the lock");
    a.ok("unlock", json!({"notebook": "nb"}));
    r.wait_committed("held.txt", "one\n");
    // Closing the connection releases at every depth.
    let mut a = sb.client();
    a.ok("lock", json!({"notebook": "nb"}));
    a.ok("lock", json!({"notebook": "nb"}));
    r.write("held.txt", "two\n");
    r.assert_head_stays(
        Duration::from_millis(1000),
        "while a client holds the lock at depth 2",
    );
    drop(a);
    r.wait_committed("held.txt", "two\n");
    let mut o = sb.client();
    wait_unheld(&mut o, "nb");
    assert_eq!(r.status_porcelain(), "");
    r.assert_fsck_clean();
}

/// Kills a pid on drop (the orphaned CMD of a killed `gitlockd lock`).
struct KillOnDrop(Option<i32>);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn lock_released_when_the_client_and_its_cmd_are_killed() {
    let (sb, repos, _d) = setup(&["nb"]);
    let r = &repos[0];
    let pidfile = sb.root.join("tmp/cmd.pid");
    let script = format!("echo $$ > {}; exec sleep 100", pidfile.display());
    let mut client = sb.gl_spawn(&["lock", "nb", "--", "sh", "-c", &script]);
    let mut cmd_pid = KillOnDrop(None);
    let pid: i32 = wait_for(LONG, "the locked CMD to start", || {
        std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    });
    cmd_pid.0 = Some(pid);
    let mut obs = sb.client();
    let l = status_lock(&mut obs, "nb");
    assert_eq!(l["held"], json!(true), "{l}");
    let label = l["holders"][0]["label"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        label.contains(&client.id().to_string()),
        "holder label names the client pid {}: {l}",
        client.id()
    );
    r.write("k.txt", "while killed\n");
    r.assert_head_stays(WINDOW, "while `gitlockd lock` holds");
    client.kill().unwrap(); // SIGKILL
    client.wait().unwrap();
    // The orphaned CMD inherited the connection: it keeps the lock while it
    // runs, so it never runs without it (like flock(1)).
    assert_eq!(unsafe { libc::kill(pid, 0) }, 0, "CMD still runs");
    let mut b = sb.client();
    b.err(
        "lock",
        json!({"notebook": "nb", "timeout_ms": 300}),
        "timeout",
    );
    // Once CMD is killed too, the lock is released at once.
    let t = Instant::now();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let got = b.ok("lock", json!({"notebook": "nb", "timeout_ms": 10000}));
    assert_eq!(got["depth"], json!(1));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "lock released only after {:?}",
        t.elapsed()
    );
    drop(b);
    r.wait_committed("k.txt", "while killed\n");
}

#[test]
fn waiter_that_disconnects_vanishes() {
    let (sb, _repos, _d) = setup(&["nb"]);
    let mut a = sb.client();
    let mut obs = sb.client();
    a.ok("lock", json!({"notebook": "nb"}));
    let mut b = sb.client();
    b.send("lock", json!({"notebook": "nb", "timeout_ms": 60000}));
    wait_waiters(&mut obs, "nb", 1);
    drop(b);
    wait_waiters(&mut obs, "nb", 0);
    // A half-closed waiter (shutdown write) also vanishes.
    let mut c = sb.client();
    c.send("lock", json!({"notebook": "nb", "timeout_ms": 60000}));
    wait_waiters(&mut obs, "nb", 1);
    c.stream().shutdown(std::net::Shutdown::Both).unwrap();
    wait_waiters(&mut obs, "nb", 0);
    // A waiter that pipelined more requests behind its `lock`, then left.
    let mut p = sb.client();
    p.send_raw(
        b"{\"id\":1,\"cmd\":\"lock\",\"notebook\":\"nb\",\"timeout_ms\":60000}\n{\"id\":2,\"cmd\":\"ping\"}\n",
    );
    wait_waiters(&mut obs, "nb", 1);
    drop(p);
    wait_waiters(&mut obs, "nb", 0);
    a.ok("unlock", json!({"notebook": "nb"}));
    wait_unheld(&mut obs, "nb");
    let l = status_lock(&mut obs, "nb");
    assert_eq!(
        l["holders"],
        json!([]),
        "a vanished waiter was handed the lock: {l}"
    );
    assert_eq!(
        obs.ok("lock", json!({"notebook": "nb", "timeout_ms": 0}))["depth"],
        json!(1)
    );
}

#[test]
fn waiters_are_served_in_arrival_order() {
    let (sb, _repos, _d) = setup(&["nb"]);
    let mut a = sb.client();
    let mut obs = sb.client();
    a.ok("lock", json!({"notebook": "nb"}));
    let mut waiters: Vec<Client> = Vec::new();
    for i in 0..3u64 {
        let mut w = sb.client();
        w.send("lock", json!({"notebook": "nb", "timeout_ms": 60000}));
        wait_waiters(&mut obs, "nb", i + 1);
        waiters.push(w);
    }
    a.ok("unlock", json!({"notebook": "nb"}));
    for i in 0..3 {
        let got = waiters[i]
            .recv_within(LONG)
            .unwrap_or_else(|| panic!("waiter {i} not served"));
        assert_eq!(got["ok"], json!(true), "waiter {i}: {got}");
        assert_eq!(got["depth"], json!(1));
        for (j, later) in waiters.iter_mut().enumerate().skip(i + 1) {
            assert!(
                later.recv_within(Duration::from_millis(200)).is_none(),
                "waiter {j} served while {i} holds"
            );
        }
        assert_eq!(status_lock(&mut obs, "nb")["waiters"], json!(2 - i as u64));
        waiters[i].ok("unlock", json!({"notebook": "nb"}));
    }
}

#[test]
fn notebooks_do_not_block_one_another() {
    let (sb, repos, _d) = setup(&["one", "two"]);
    let mut a = sb.client();
    let mut b = sb.client();
    a.ok("lock", json!({"notebook": "one"}));
    let t = Instant::now();
    b.ok("lock", json!({"notebook": "two", "timeout_ms": 3000}));
    assert!(t.elapsed() < Duration::from_secs(2));
    b.ok("unlock", json!({"notebook": "two"}));
    repos[1].write("free.txt", "free\n");
    repos[1].wait_committed("free.txt", "free\n");
    repos[0].write("held.txt", "held\n");
    repos[0].assert_head_stays(WINDOW, "in the held notebook");
    b.ok("commit", json!({"notebook": "two"}));
    b.ok("log", json!({"notebook": "two"}));
    drop(a);
    repos[0].wait_committed("held.txt", "held\n");
}

#[test]
fn requests_on_the_holding_connection_run_inside_the_hold() {
    let (sb, repos, _d) = setup(&["nb"]);
    let r = &repos[0];
    let mut a = sb.client();
    a.ok("lock", json!({"notebook": "nb", "timeout_ms": 2000}));
    r.write("in.txt", "inside\n");
    // Each would wait the 5 s default timeout and fail if it did not re-enter.
    let t = Instant::now();
    let id = a.ok(
        "commit",
        json!({"notebook": "nb", "message": "inside the hold"}),
    )["commit"]
        .clone();
    assert!(id.is_string());
    assert_eq!(
        a.ok("log", json!({"notebook": "nb", "limit": 1}))["commits"][0]["id"],
        id
    );
    assert_eq!(
        a.ok("show", json!({"notebook": "nb", "path": "in.txt"}))["content"],
        json!("inside\n")
    );
    a.ok("diff", json!({"notebook": "nb"}));
    assert_eq!(
        a.ok("lock", json!({"notebook": "nb", "shared": true}))["depth"],
        json!(2)
    );
    a.ok("status", json!({"notebook": "nb"}));
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "requests waited: {:?}",
        t.elapsed()
    );
    // Still held at depth 2 by us: another client times out.
    let mut b = sb.client();
    b.err(
        "lock",
        json!({"notebook": "nb", "timeout_ms": 200}),
        "timeout",
    );
    b.err("log", json!({"notebook": "nb"}), "timeout");
    assert_eq!(a.ok("unlock", json!({"notebook": "nb"}))["depth"], json!(1));
    assert_eq!(a.ok("unlock", json!({"notebook": "nb"}))["depth"], json!(0));
    r.assert_fsck_clean();
}

#[test]
fn max_hold_disconnects_the_holder() {
    let (sb, repos, d) = setup_with(&["nb"], "max_hold = \"1s\"");
    let r = &repos[0];
    let mut a = sb.client();
    a.ok("lock", json!({"notebook": "nb"}));
    r.write("mh.txt", "max hold\n");
    let t = Instant::now();
    let lines = a.wait_closed(LONG);
    assert!(lines.is_empty(), "{lines:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "cut early: {:?}",
        t.elapsed()
    );
    let mut o = sb.client();
    wait_unheld(&mut o, "nb");
    r.wait_committed("mh.txt", "max hold\n");
    let log = d.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("max_hold")),
        "warned in the log: {log}"
    );
    // A client that holds no lock is not disconnected by max_hold.
    let mut idle = sb.client();
    idle.ok("ping", json!({}));
    assert!(idle.recv_within(Duration::from_millis(1500)).is_none());
    idle.ok("ping", json!({}));
}

#[test]
fn max_hold_applies_while_the_holder_waits_for_another_lock() {
    let (sb, _repos, d) = setup_with(&["one", "two"], "max_hold = \"1s\"");
    let mut o = sb.client();
    // `two` stays busy for about 3 s: B1 holds it, B2 and B3 queue behind;
    // each is cut off by max_hold 1 s after it gets it.
    let mut bs = Vec::new();
    for i in 0..3u64 {
        let mut b = sb.client();
        b.send("lock", json!({"notebook": "two", "timeout_ms": 60000}));
        if i == 0 {
            assert_eq!(b.recv()["depth"], json!(1));
        } else {
            wait_waiters(&mut o, "two", i);
        }
        bs.push(b);
    }
    // A holds `one`, then waits for `two` behind them.
    let mut a = sb.client();
    a.ok("lock", json!({"notebook": "one"}));
    a.send("lock", json!({"notebook": "two", "timeout_ms": 60000}));
    // max_hold cuts A off while it waits: it never gets `two`, and `one` is free.
    let lines = a.wait_closed(Duration::from_secs(15));
    assert!(
        lines.is_empty(),
        "A was granted `two` instead of being cut off: {lines:?}"
    );
    let l = status_lock(&mut o, "one");
    assert_eq!(l["held"], json!(false), "{l}");
    assert!(d.log_text().contains("max_hold"));
}

// ---------------------------------------------------------------------------
// Bad input never hurts others

#[test]
fn bad_input_never_hurts_a_working_client() {
    let (sb, repos, mut d) = setup(&["nb"]);
    let r = &repos[0];
    let mut a = sb.client();
    a.ok("lock", json!({"notebook": "nb"}));
    let socket = sb.socket.clone();
    let mut threads = Vec::new();
    // Garbage senders.
    for seed in 1..=4u64 {
        let socket = socket.clone();
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(seed * 7919);
            for _ in 0..10 {
                let mut s = UnixStream::connect(&socket).unwrap();
                s.set_read_timeout(Some(LONG)).unwrap();
                let mut reader = BufReader::new(s.try_clone().unwrap());
                for _ in 0..20 {
                    let mut line = random_line(&mut rng);
                    line.retain(|b| *b != b'\n' && *b != b'\r');
                    if line.iter().all(u8::is_ascii_whitespace) || parse_line(&line).request.is_ok()
                    {
                        continue;
                    }
                    line.push(b'\n');
                    s.write_all(&line).unwrap();
                    let mut answer = String::new();
                    reader.read_line(&mut answer).unwrap();
                    let v: Value = serde_json::from_str(&answer).unwrap();
                    assert_eq!(v["ok"], json!(false), "{answer}");
                }
            }
        }));
    }
    // Half-written requests, then vanish; and waiters that vanish mid-wait.
    {
        let socket = socket.clone();
        threads.push(std::thread::spawn(move || {
            for i in 0..40 {
                let mut s = UnixStream::connect(&socket).unwrap();
                let half: &[u8] = match i % 4 {
                    0 => b"{\"id\":1,\"cmd\":\"lo",
                    1 => b"{\"id\":1,\"cmd\":\"lock\",\"notebook\":\"nb\"",
                    2 => b"{\"id\":1,\"cmd\":\"lock\",\"notebook\":\"nb\",\"timeout_ms\":60000}\n",
                    _ => b"{\"id\":1,\"cmd\":\"commit\",\"notebook\":\"nb\"}\n",
                };
                s.write_all(half).unwrap();
                drop(s);
            }
        }));
    }
    // Huge lines.
    for _ in 0..2 {
        let socket = socket.clone();
        threads.push(std::thread::spawn(move || {
            let s = UnixStream::connect(&socket).unwrap();
            s.set_read_timeout(Some(LONG)).unwrap();
            let mut w = s.try_clone().unwrap();
            let writer = std::thread::spawn(move || {
                let chunk = vec![b'x'; 256 * 1024];
                for _ in 0..6 {
                    if w.write_all(&chunk).is_err() {
                        return;
                    }
                }
            });
            let mut answer = String::new();
            BufReader::new(s).read_line(&mut answer).unwrap();
            assert!(answer.contains("too_large"), "{answer}");
            writer.join().unwrap();
        }));
    }
    // 200 connections at once.
    {
        let socket = socket.clone();
        threads.push(std::thread::spawn(move || {
            let conns: Vec<UnixStream> = (0..200)
                .map(|_| UnixStream::connect(&socket).unwrap())
                .collect();
            for (i, mut s) in conns.iter().enumerate() {
                s.write_all(format!("{{\"id\":{i},\"cmd\":\"ping\"}}\n").as_bytes())
                    .unwrap();
            }
            for (i, s) in conns.iter().enumerate() {
                s.set_read_timeout(Some(LONG)).unwrap();
                let mut answer = String::new();
                BufReader::new(s).read_line(&mut answer).unwrap();
                let v: Value = serde_json::from_str(&answer).unwrap();
                assert_eq!(v["id"], json!(i));
                assert_eq!(v["ok"], json!(true));
            }
        }));
    }
    // Meanwhile A's session goes on, inside its hold.
    let mut rounds = 0;
    while threads.iter().any(|t| !t.is_finished()) || rounds < 5 {
        rounds += 1;
        r.write("a.txt", &format!("round {rounds}\n"));
        let t = Instant::now();
        let id = a.ok("commit", json!({"notebook": "nb", "paths": ["a.txt"]}))["commit"].clone();
        assert!(id.is_string(), "round {rounds}");
        assert_eq!(
            a.ok("show", json!({"notebook": "nb", "path": "a.txt"}))["content"],
            json!(format!("round {rounds}\n"))
        );
        assert_eq!(
            a.status_of("nb")["lock"]["holders"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "A starved: {:?}",
            t.elapsed()
        );
    }
    for t in threads {
        t.join().expect("a bad-input thread failed");
    }
    assert!(daemon_alive(&mut d), "daemon died");
    // A still holds exactly depth 1; once it lets go, the lock ends up free
    // (a vanished waiter handed the lock would keep it held for ever).
    let mut o = sb.client();
    assert_eq!(status_lock(&mut o, "nb")["holders"][0]["depth"], json!(1));
    assert_eq!(a.ok("unlock", json!({"notebook": "nb"}))["depth"], json!(0));
    wait_for(LONG, "the lock free with no waiter", || {
        let l = status_lock(&mut o, "nb");
        (l["held"] == json!(false) && l["waiters"] == json!(0)).then_some(())
    });
    o.ok("lock", json!({"notebook": "nb", "timeout_ms": 5000}));
    o.ok("unlock", json!({"notebook": "nb"}));
    assert_eq!(r.status_porcelain(), "");
    r.assert_fsck_clean();
}

// ---------------------------------------------------------------------------
// Fuzz of the request parser (deterministic, no extra dependency)

/// The tiny seed corpus: valid requests of every command.
const CORPUS: &[&str] = &[
    r#"{"id":1,"cmd":"ping"}"#,
    r#"{"id":"a","cmd":"status","notebook":"nb"}"#,
    r#"{"id":2,"cmd":"lock","notebook":"nb","timeout_ms":100,"shared":true}"#,
    r#"{"id":3,"cmd":"unlock","notebook":"/abs/nb"}"#,
    r#"{"id":4,"cmd":"commit","notebook":"nb","message":"m","paths":["a","b/c"]}"#,
    r#"{"id":5,"cmd":"log","notebook":"nb","path":"a","limit":3}"#,
    r#"{"id":6,"cmd":"show","notebook":"nb","path":"a","rev":"HEAD~1"}"#,
    r#"{"id":7,"cmd":"diff","notebook":"nb","path":"a","from":"HEAD","to":"HEAD~2"}"#,
    r#"{"id":8,"cmd":"pause","notebook":"nb"}"#,
    r#"{"id":9,"cmd":"resume","notebook":"nb"}"#,
    r#"{"id":null,"cmd":"reload"}"#,
    r#"{"cmd":"subscribe","notebook":"nb"}"#,
];

fn random_value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 3 { 7 } else { 9 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!(-(rng.below(1000) as i64)),
        4 => json!(rng.below(1000) as f64 / 7.0),
        5 => json!(rng
            .pick(&[
                "nb",
                "",
                "..",
                "/etc/passwd",
                ".git/config",
                "ü\u{0}\u{7f}",
                "HEAD"
            ])
            .to_string()),
        6 => json!(rng.next().to_string()),
        7 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.below(4) {
                m.insert(
                    rng.pick(&["cmd", "id", "notebook", "x"]).to_string(),
                    random_value(rng, depth + 1),
                );
            }
            Value::Object(m)
        }
    }
}

const FIELDS: &[&str] = &[
    "id",
    "cmd",
    "notebook",
    "timeout_ms",
    "shared",
    "message",
    "paths",
    "path",
    "limit",
    "rev",
    "from",
    "to",
    "extra",
];

/// One random or mutated request line.
fn random_line(rng: &mut Rng) -> Vec<u8> {
    match rng.below(6) {
        // Random bytes.
        0 => (0..rng.below(120)).map(|_| rng.next() as u8).collect(),
        // Random printable JSON-ish characters.
        1 => {
            let alphabet = b"{}[]\":,0123456789.-eE truefalsnl\\u\"cmdidnotebook";
            (0..rng.below(120)).map(|_| *rng.pick(alphabet)).collect()
        }
        // A corpus line, mutated.
        2 | 3 => {
            let mut line = rng.pick(CORPUS).as_bytes().to_vec();
            for _ in 0..1 + rng.below(4) {
                if line.is_empty() {
                    break;
                }
                let at = rng.below(line.len());
                match rng.below(5) {
                    0 => line[at] ^= 1 << rng.below(8),
                    1 => {
                        line.remove(at);
                    }
                    2 => line.insert(at, *rng.pick(b"{}[]\",:\\0a-")),
                    3 => line.truncate(at),
                    _ => {
                        let end = (at + rng.below(10)).min(line.len());
                        let seg = line[at..end].to_vec();
                        line.splice(at..at, seg);
                    }
                }
            }
            line
        }
        // A structurally valid object with random command and field types.
        4 => {
            let mut m = serde_json::Map::new();
            let cmd = if rng.below(4) == 0 {
                random_value(rng, 0)
            } else if rng.below(5) == 0 {
                json!(rng
                    .pick(&["PING", "lock ", "", "subscribe\u{0}", "nope"])
                    .to_string())
            } else {
                json!(rng.pick(COMMANDS).to_string())
            };
            if rng.below(10) != 0 {
                m.insert("cmd".into(), cmd);
            }
            for _ in 0..rng.below(6) {
                m.insert(rng.pick(FIELDS).to_string(), random_value(rng, 0));
            }
            serde_json::to_vec(&Value::Object(m)).unwrap()
        }
        // Deep nesting and long tokens.
        _ => {
            let n = 1 + rng.below(5000);
            match rng.below(3) {
                0 => [vec![b'['; n], vec![b']'; n]].concat(),
                1 => {
                    let mut v = b"{\"cmd\":\"ping\",\"id\":".to_vec();
                    v.extend(std::iter::repeat_n(b'9', n));
                    v.push(b'}');
                    v
                }
                _ => {
                    let mut v = b"{\"cmd\":\"log\",\"notebook\":\"nb\",\"limit\":".to_vec();
                    v.extend(std::iter::repeat_n(b'1', 1 + n % 40));
                    v.push(b'}');
                    v
                }
            }
        }
    }
}

#[test]
fn parser_fuzz_never_panics_and_uses_contract_codes() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut failed) = (0usize, 0usize);
    for i in 0..20_000 {
        let line = random_line(&mut rng);
        let parsed = std::panic::catch_unwind(|| parse_line(&line)).unwrap_or_else(|_| {
            panic!(
                "parse_line panicked on case {i}: {:?}",
                String::from_utf8_lossy(&line)
            )
        });
        // The id is the object's `id`, or null.
        let as_json: Option<Value> = serde_json::from_slice(&line).ok();
        let want_id = as_json
            .as_ref()
            .and_then(|v| v.get("id"))
            .filter(|_| as_json.as_ref().is_some_and(Value::is_object))
            .cloned()
            .unwrap_or(Value::Null);
        assert_eq!(parsed.id, want_id, "case {i}");
        match parsed.request {
            Ok(_) => {
                ok += 1;
                let v = as_json.expect("accepted lines are JSON");
                assert!(COMMANDS.contains(&v["cmd"].as_str().unwrap()), "case {i}");
            }
            Err(f) => {
                failed += 1;
                assert!(CODES.contains(&f.code.as_str()), "case {i}: {:?}", f.code);
                assert!(!f.message.is_empty(), "case {i}");
                // The parser itself only ever refuses with these two.
                assert!(
                    matches!(f.code, ErrorCode::BadRequest | ErrorCode::UnknownCommand),
                    "case {i}: {:?}",
                    f.code
                );
                match &as_json {
                    Some(Value::Object(o)) => match o.get("cmd") {
                        Some(Value::String(c)) if !COMMANDS.contains(&c.as_str()) => {
                            assert_eq!(f.code, ErrorCode::UnknownCommand, "case {i}")
                        }
                        _ => assert_eq!(f.code, ErrorCode::BadRequest, "case {i}"),
                    },
                    _ => assert_eq!(f.code, ErrorCode::BadRequest, "case {i}"),
                }
            }
        }
    }
    // The generator reaches both sides.
    assert!(ok > 500 && failed > 5000, "ok {ok}, failed {failed}");
}

#[test]
fn daemon_answers_fuzzed_lines_like_the_parser() {
    let (sb, _repos, mut d) = setup(&["nb"]);
    let mut c = sb.client();
    let mut rng = Rng(42);
    let mut sent = 0;
    while sent < 1500 {
        let mut line = random_line(&mut rng);
        line.retain(|b| *b != b'\n' && *b != b'\r');
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Err(want) = parse_line(&line).request else {
            continue; // valid requests would act (lock, subscribe, reload ...)
        };
        line.push(b'\n');
        c.send_raw(&line);
        let r = c.recv();
        assert_eq!(r["ok"], json!(false), "{r}");
        assert_eq!(
            r["error"]["code"],
            json!(want.code.as_str()),
            "{:?}: {r}",
            String::from_utf8_lossy(&line)
        );
        sent += 1;
    }
    c.ok("ping", json!({}));
    assert!(daemon_alive(&mut d));
}

/// `answer` (an `ok: true` line) minus its envelope, parsed as `T` and
/// written back: the shared type must reproduce the daemon's fields exactly,
/// so client and server cannot drift apart.
fn same_through<T>(cmd: &str, answer: &Value) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut fields = answer.as_object().unwrap().clone();
    fields.remove("id");
    fields.remove("ok");
    let fields = Value::Object(fields);
    let typed: T = serde_json::from_value(fields.clone())
        .unwrap_or_else(|e| panic!("`{cmd}` answer does not parse as its type: {e}\n{fields}"));
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        fields,
        "`{cmd}` answer changes through its type"
    );
    typed
}

#[test]
fn every_answer_is_its_shared_type_exactly() {
    use gitlockd::control::answers::{
        CommitAnswer, DepthAnswer, DiffAnswer, LogAnswer, PauseAnswer, PingAnswer, ReloadAnswer,
        ShowAnswer,
    };
    use gitlockd::control::protocol::FailureLine;
    use gitlockd::status::StatusAnswer;

    let sb = Sandbox::new();
    let nb = sb.repo("nb");
    nb.write("base.txt", "base\n");
    nb.git(&["add", "base.txt"]);
    nb.git(&["commit", "-q", "-m", "base"]);
    // A repository whose config git cannot read: it cannot start, and
    // status lists it as failed (the daemon retries it).
    let broken = sb.repo("broken");
    std::fs::write(broken.path.join(".git/config"), "[[[ not a config\n").unwrap();
    sb.write_config("", &[("nb", &nb.path, ""), ("broken", &broken.path, "")]);
    let _d = sb.start();
    wait_notebooks(&sb, &["nb", "broken"]);
    let mut c = sb.client();

    same_through::<PingAnswer>("ping", &c.ok("ping", json!({})));
    let mut holder = sb.client();
    let depth: DepthAnswer = same_through("lock", &holder.ok("lock", json!({"notebook": "nb"})));
    assert_eq!(depth.depth, 1);

    // Held, paused and with a pending edit: the status entry has its
    // holders, lock metrics, paused_until and (asked for) pending paths.
    let paused: PauseAnswer = same_through(
        "pause",
        &c.ok("pause", json!({"notebook": "nb", "for_ms": 3_600_000})),
    );
    assert!(paused.until.is_some());
    nb.write("a.md", "a\n");
    let status: StatusAnswer = same_through("status", &c.ok("status", json!({"pending": true})));
    let entry = status.notebooks.iter().find(|e| e.name == "nb").unwrap();
    assert_eq!(entry.lock.holders.len(), 1, "{entry:?}");
    assert!(entry.lock.metrics.is_some(), "{entry:?}");
    assert!(entry.paused_until.is_some(), "{entry:?}");
    assert_eq!(entry.commit_via.as_deref(), Some("libgit2"), "{entry:?}");
    // The hold keeps the listing out, at once and saying why.
    let listing = entry.pending_list.as_ref().unwrap();
    assert_eq!(listing.pending_paths, None, "{entry:?}");
    assert!(
        listing
            .pending_error
            .as_deref()
            .is_some_and(|e| e.contains("held exclusive by client pid")),
        "{entry:?}"
    );
    let failed = status
        .notebooks
        .iter()
        .find(|e| e.name == "broken")
        .unwrap();
    assert_eq!(failed.state, "error", "{failed:?}");
    assert!(failed.next_try.is_some(), "{failed:?}");
    assert!(failed.lock.metrics.is_none(), "{failed:?}");
    same_through::<StatusAnswer>("status", &c.ok("status", json!({"notebook": "broken"})));
    same_through::<DepthAnswer>("unlock", &holder.ok("unlock", json!({"notebook": "nb"})));
    same_through::<PauseAnswer>("resume", &c.ok("resume", json!({"notebook": "nb"})));

    std::fs::write(nb.path.join("bin.dat"), [0u8, 0xff, 1]).unwrap();
    let commit: CommitAnswer = same_through(
        "commit",
        &c.ok("commit", json!({"notebook": "nb", "message": "typed"})),
    );
    let id = commit.commit.expect("the edits make a commit");
    assert_eq!(nb.head().unwrap(), id);
    let log: LogAnswer = same_through("log", &c.ok("log", json!({"notebook": "nb"})));
    assert_eq!(log.commits[0].id, id);
    assert_eq!(log.commits[0].summary, "typed");
    let text: ShowAnswer = same_through(
        "show",
        &c.ok("show", json!({"notebook": "nb", "path": "a.md"})),
    );
    assert_eq!(text.bytes().unwrap(), b"a\n");
    let bin: ShowAnswer = same_through(
        "show",
        &c.ok("show", json!({"notebook": "nb", "path": "bin.dat"})),
    );
    assert_eq!(bin.bytes().unwrap(), vec![0u8, 0xff, 1]);
    nb.write("a.md", "b\n");
    let diff: DiffAnswer = same_through("diff", &c.ok("diff", json!({"notebook": "nb"})));
    assert!(diff.patch.contains("+b"), "{}", diff.patch);
    // The error envelope, read back as the same type: a reload while
    // `broken` still cannot start.
    let refused = c.err("reload", json!({}), "git");
    let line: FailureLine = serde_json::from_value(refused.clone()).unwrap();
    assert_eq!(serde_json::to_value(&line).unwrap(), refused);
    assert!(line.error.message.contains("broken"), "{line:?}");
    std::fs::write(
        broken.path.join(".git/config"),
        "[core]\n\trepositoryformatversion = 0\n\tbare = false\n",
    )
    .unwrap();
    let reload: ReloadAnswer = same_through("reload", &c.ok("reload", json!({})));
    assert_eq!(
        reload.notebooks,
        vec!["nb".to_string(), "broken".to_string()]
    );
}
