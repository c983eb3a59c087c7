//! Client tests without the daemon: pure helpers, and `run_with_io` against a
//! tiny fake server that answers canned JSON lines on a real Unix socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use gitlockd::cli::Cli;
use gitlockd::client::*;
use serde_json::{json, Value};

/// What the fake daemon does with one request.
enum Reply {
    /// Success with these extra fields.
    Ok(Value),
    /// Failure with this code and message.
    Err(&'static str, String),
    /// This exact line (a newline is added).
    Raw(String),
    /// Close the connection without answering.
    Close,
    /// Success with these fields, then close the connection.
    OkThenClose(Value),
}

/// A fake daemon: records `(connection number, request)` and answers with a handler.
struct Fake {
    /// Keeps the socket's folder alive.
    _dir: tempfile::TempDir,
    /// The socket path.
    socket: PathBuf,
    /// Every request received, with the number of its connection.
    requests: Arc<Mutex<Vec<(usize, Value)>>>,
}

impl Fake {
    fn start(handler: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> Fake {
        let dir = short_tempdir();
        let socket = dir.path().join("s");
        let listener = UnixListener::bind(&socket).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let recorded = Arc::clone(&requests);
        std::thread::spawn(move || {
            for (conn_no, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { return };
                let handler = Arc::clone(&handler);
                let recorded = Arc::clone(&recorded);
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    for line in BufReader::new(stream).lines() {
                        let Ok(line) = line else { return };
                        let req: Value = serde_json::from_str(&line).unwrap();
                        recorded.lock().unwrap().push((conn_no, req.clone()));
                        let id = req.get("id").cloned().unwrap_or(Value::Null);
                        let reply = handler(&req);
                        let close = matches!(reply, Reply::OkThenClose(_));
                        let answer = match reply {
                            Reply::Ok(fields) | Reply::OkThenClose(fields) => {
                                let mut m = json!({"id": id, "ok": true});
                                if let Value::Object(f) = fields {
                                    m.as_object_mut().unwrap().extend(f);
                                }
                                m.to_string()
                            }
                            Reply::Err(code, message) => json!({"id": id, "ok": false,
                                "error": {"code": code, "message": message}})
                            .to_string(),
                            Reply::Raw(line) => line,
                            Reply::Close => return,
                        };
                        if writer.write_all(format!("{answer}\n").as_bytes()).is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        Fake {
            _dir: dir,
            socket,
            requests,
        }
    }

    /// The requests received so far.
    fn requests(&self) -> Vec<(usize, Value)> {
        self.requests.lock().unwrap().clone()
    }
}

/// A temp dir with a short path (sun_path is 108 bytes).
fn short_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("glc")
        .tempdir_in("/tmp")
        .unwrap()
}

/// The result of one client run.
struct Outcome {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Outcome {
    fn stdout(&self) -> String {
        String::from_utf8(self.stdout.clone()).unwrap()
    }
}

/// Run `gitlockd ARGS...` as the client in `cwd` against `socket`.
fn client(socket: &Path, cwd: &Path, args: &[&str]) -> Outcome {
    let mut argv = vec!["gitlockd"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with_io(&cli, socket, cwd, &mut out, &mut err);
    Outcome {
        code,
        stdout: out,
        stderr: String::from_utf8(err).unwrap(),
    }
}

/// `gitlockd lock LOCK_ARGS -- touch MARK` against `socket`, in a new
/// short temp dir: the outcome, and whether CMD ran (MARK exists).
fn lock_touch(socket: &Path, lock_args: &[&str]) -> (Outcome, bool) {
    let dir = short_tempdir();
    let mark = dir.path().join("ran");
    let mut args = vec!["lock"];
    args.extend_from_slice(lock_args);
    args.extend(["--", "touch", mark.to_str().unwrap()]);
    let out = client(socket, dir.path(), &args);
    (out, mark.exists())
}

/// A fake that grants every lock and unlock and answers nothing else.
fn locking_fake() -> Fake {
    Fake::start(|req| match req["cmd"].as_str().unwrap() {
        "lock" => Reply::Ok(json!({"depth": 1})),
        "unlock" => Reply::Ok(json!({"depth": 0})),
        other => Reply::Err("unknown_command", format!("no {other}")),
    })
}

#[test]
fn unreachable_socket_exits_69_and_names_the_path() {
    let dir = short_tempdir();
    let socket = dir.path().join("missing.sock");
    let out = client(&socket, dir.path(), &["status"]);
    assert_eq!(out.code, 69, "{}", out.stderr);
    assert!(
        out.stderr.contains(socket.to_str().unwrap()),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("systemctl --user start gitlockd"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("gitlockd --config FILE"),
        "{}",
        out.stderr
    );

    // A socket file nobody listens on (ECONNREFUSED) is the same.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let out = client(&stale, dir.path(), &["pause", "nb"]);
    assert_eq!(out.code, 69, "{}", out.stderr);
    assert!(
        out.stderr.contains(stale.to_str().unwrap()),
        "{}",
        out.stderr
    );
}

#[test]
fn lock_unreachable_does_not_run_cmd() {
    let dir = short_tempdir();
    let (out, ran) = lock_touch(&dir.path().join("missing.sock"), &["nb"]);
    assert_eq!(out.code, 69, "{}", out.stderr);
    assert!(!ran);
}

#[test]
fn lock_propagates_exit_codes() {
    let fake = locking_fake();
    let dir = short_tempdir();
    for (cmd, want) in [
        (vec!["true"], 0),
        (vec!["sh", "-c", "exit 7"], 7),
        (vec!["sh", "-c", "kill -TERM $$"], 143),
    ] {
        let mut args = vec!["lock", "notes", "--"];
        args.extend(cmd.iter().copied());
        let out = client(&fake.socket, dir.path(), &args);
        assert_eq!(out.code, want, "{cmd:?}: {}", out.stderr);
    }
    // Every run: lock, then unlock on the same connection.
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 6, "{reqs:?}");
    for pair in reqs.chunks(2) {
        let (c1, lock) = &pair[0];
        let (c2, unlock) = &pair[1];
        assert_eq!(c1, c2);
        assert_eq!(lock["cmd"], "lock");
        assert_eq!(lock["notebook"], "notes");
        assert_eq!(lock["shared"], false);
        assert!(lock.get("timeout_ms").is_none(), "{lock}");
        assert_eq!(unlock["cmd"], "unlock");
        assert_eq!(unlock["notebook"], "notes");
        assert_ne!(lock["id"], unlock["id"]);
    }
}

#[test]
fn lock_sends_timeout_and_shared() {
    let fake = locking_fake();
    let dir = short_tempdir();
    let out = client(
        &fake.socket,
        dir.path(),
        &[
            "lock",
            "--timeout",
            "1500ms",
            "--shared",
            "nb",
            "--",
            "true",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lock = &fake.requests()[0].1;
    assert_eq!(lock["timeout_ms"], 1500);
    assert_eq!(lock["shared"], true);
}

#[test]
fn lock_keeps_the_connection_while_cmd_runs() {
    let fake = locking_fake();
    let dir = short_tempdir();
    let started = Instant::now();
    let out = client(
        &fake.socket,
        dir.path(),
        &["lock", "nb", "--", "sleep", "0.3"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].0, reqs[1].0, "unlock on the lock's connection");
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn lock_timeout_exits_75_without_running_cmd() {
    let fake = Fake::start(|_| Reply::Err("timeout", "waited 1s for the lock on notes".into()));
    let (out, ran) = lock_touch(&fake.socket, &["notes", "--timeout", "1s"]);
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert!(!ran, "CMD ran after a timeout");
    assert!(out.stderr.contains("waited 1s"), "{}", out.stderr);
    assert!(out.stderr.contains("(timeout)"), "{}", out.stderr);
}

#[test]
fn lock_daemon_closing_before_answer_does_not_run_cmd() {
    let fake = Fake::start(|_| Reply::Close);
    let (out, ran) = lock_touch(&fake.socket, &["nb"]);
    assert_eq!(out.code, 69, "{}", out.stderr);
    assert!(!ran);
}

#[test]
fn lock_cmd_not_found_or_not_executable() {
    let fake = locking_fake();
    let dir = short_tempdir();
    let out = client(
        &fake.socket,
        dir.path(),
        &["lock", "nb", "--", "gitlockd-no-such-command-xyz"],
    );
    assert_eq!(out.code, 127, "{}", out.stderr);
    assert!(
        out.stderr.contains("gitlockd-no-such-command-xyz"),
        "{}",
        out.stderr
    );

    let script = dir.path().join("noexec.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = client(
        &fake.socket,
        dir.path(),
        &["lock", "nb", "--", script.to_str().unwrap()],
    );
    assert_eq!(out.code, 126, "{}", out.stderr);
    // The lock is still released.
    let unlocks = fake
        .requests()
        .iter()
        .filter(|(_, r)| r["cmd"] == "unlock")
        .count();
    assert_eq!(unlocks, 2);
}

#[test]
fn lock_by_path_fallback_unlocks_the_same_notebook() {
    let fake = Fake::start(|req| {
        let nb = req["notebook"].as_str().unwrap_or_default();
        match (req["cmd"].as_str().unwrap(), nb.starts_with('/')) {
            (_, false) => Reply::Err("not_found", format!("no notebook named {nb:?}")),
            ("lock", true) => Reply::Ok(json!({"depth": 1})),
            (_, true) => Reply::Ok(json!({"depth": 0})),
        }
    });
    let dir = short_tempdir();
    let cwd = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir(cwd.join("book")).unwrap();
    let out = client(&fake.socket, &cwd, &["lock", "book", "--", "true"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let reqs = fake.requests();
    let want = cwd.join("book");
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert_eq!(reqs[1].1["notebook"], want.to_str().unwrap());
    assert_eq!(reqs[2].1["cmd"], "unlock");
    assert_eq!(reqs[2].1["notebook"], want.to_str().unwrap());
}

#[test]
fn lock_lost_while_cmd_runs_still_returns_cmd_status() {
    let fake = Fake::start(|_| Reply::OkThenClose(json!({"depth": 1})));
    let dir = short_tempdir();
    let out = client(
        &fake.socket,
        dir.path(),
        &["lock", "nb", "--", "sh", "-c", "sleep 0.2; exit 3"],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    // Only the lock: the connection was gone, so no unlock was sent.
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn name_not_found_retries_with_the_path() {
    let fake = Fake::start(|req| {
        let nb = req["notebook"].as_str().unwrap_or_default();
        if nb.starts_with('/') {
            Reply::Ok(json!({"paused": true}))
        } else {
            Reply::Err("not_found", format!("no notebook named {nb:?}"))
        }
    });
    let dir = short_tempdir();
    let cwd = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir(cwd.join("book")).unwrap();
    let out = client(&fake.socket, &cwd, &["pause", "book"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout(), "book: paused\n");
    let reqs = fake.requests();
    assert_eq!(reqs[0].1["notebook"], "book");
    assert_eq!(reqs[1].1["notebook"], cwd.join("book").to_str().unwrap());

    // A name that is no path: one try, exit 1 with the daemon's message and code.
    let out = client(&fake.socket, &cwd, &["pause", "x"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "gitlockd: error: no notebook named \"x\" (not_found)\n"
    );
    assert_eq!(fake.requests().len(), 3);
}

#[test]
fn status_json_and_table() {
    let fake = Fake::start(|_| {
        Reply::Ok(
            json!({"notebooks": [{"name": "notes", "path": "/n", "branch": "main",
            "head": "0123456789abcdef0123456789abcdef01234567", "pending": 0, "paused": false,
            "state": "idle", "lock": {"held": false, "mode": null, "holders": [], "waiters": 0},
            "last_commit": null, "last_error": null}]}),
        )
    });
    let dir = short_tempdir();
    let out = client(&fake.socket, dir.path(), &["status", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["ok"], true);
    assert_eq!(printed["notebooks"][0]["name"], "notes");
    assert_eq!(fake.requests()[0].1, json!({"id": 1, "cmd": "status"}));

    let out = client(&fake.socket, dir.path(), &["status"]);
    let text = out.stdout();
    assert!(text.starts_with("NAME "), "{text}");
    assert!(
        text.lines().nth(1).unwrap().starts_with("notes  /n  "),
        "{text}"
    );
    assert!(text.contains(" free "), "{text}");
}

#[test]
fn commit_prints_id_or_nothing() {
    let fake = Fake::start(|req| {
        if req.get("paths").is_some() {
            Reply::Ok(json!({"commit": null}))
        } else {
            Reply::Ok(json!({"commit": "0123456789abcdef0123456789abcdef01234567"}))
        }
    });
    let dir = short_tempdir();
    let cwd = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::write(cwd.join("here.md"), "x").unwrap();
    let out = client(&fake.socket, &cwd, &["commit", "nb", "-m", "hello"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout(), "0123456789abcdef0123456789abcdef01234567\n");
    let out = client(
        &fake.socket,
        &cwd,
        &["commit", "nb", "here.md", "sub/there.md"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout(), "nothing to commit\n");
    let reqs = fake.requests();
    assert_eq!(reqs[0].1["message"], "hello");
    assert!(reqs[0].1.get("paths").is_none());
    assert_eq!(
        reqs[1].1["paths"],
        json!([cwd.join("here.md").to_str().unwrap(), "sub/there.md"])
    );
}

#[test]
fn show_writes_exact_bytes() {
    let fake = Fake::start(|req| match req["path"].as_str().unwrap() {
        "bin" => Reply::Ok(json!({"commit": "c", "content_base64": "AAEC/w=="})),
        _ => Reply::Ok(json!({"commit": "c", "content": "no newline"})),
    });
    let dir = short_tempdir();
    let out = client(
        &fake.socket,
        dir.path(),
        &["show", "nb", "bin", "--rev", "HEAD~1"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, vec![0, 1, 2, 255]);
    let out = client(&fake.socket, dir.path(), &["show", "nb", "text"]);
    assert_eq!(out.stdout(), "no newline");
    let reqs = fake.requests();
    assert_eq!(reqs[0].1["rev"], "HEAD~1");
    assert!(reqs[1].1.get("rev").is_none());
}

#[test]
fn log_diff_reload_sync_output() {
    let fake = Fake::start(|req| match req["cmd"].as_str().unwrap() {
        "log" => Reply::Ok(
            json!({"commits": [{"id": "abcdef0123456789", "summary": "s",
            "message": "s\n", "author_name": "A", "author_email": "a@x",
            "time": "2024-01-01T00:00:00Z"}]}),
        ),
        "diff" => Reply::Ok(json!({"patch": "--- a/x\n+++ b/x\n"})),
        "reload" => Reply::Ok(json!({"notebooks": ["a", "b"]})),
        "sync" => Reply::Ok(json!({"fetched": true, "integrated": "fast_forward",
            "pushed": false, "ahead": 0, "behind": 3})),
        _ => Reply::Err("unknown_command", "?".into()),
    });
    let dir = short_tempdir();
    let sock = &fake.socket;
    let out = client(sock, dir.path(), &["log", "nb", "-n", "5"]);
    // Human times are local (tests/daily_use.rs checks the conversion).
    let t = local_time("2024-01-01T00:00:00Z");
    assert_eq!(out.stdout(), format!("abcdef01  {t}  A  s\n"));
    let out = client(sock, dir.path(), &["log", "nb", "notes.md", "--json"]);
    let commits: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(commits[0]["author_email"], "a@x");
    let out = client(
        sock,
        dir.path(),
        &["diff", "nb", "--from", "HEAD~2", "--to", "HEAD"],
    );
    assert_eq!(out.stdout(), "--- a/x\n+++ b/x\n");
    let out = client(sock, dir.path(), &["reload"]);
    assert_eq!(out.stdout(), "a\nb\n");
    let out = client(sock, dir.path(), &["sync", "nb"]);
    assert_eq!(
        out.stdout(),
        "fetched: true\nintegrated: fast_forward\npushed: false\nahead: 0\nbehind: 3\n"
    );
    let reqs: Vec<Value> = fake.requests().into_iter().map(|(_, r)| r).collect();
    assert_eq!(reqs[0]["limit"], 5);
    assert!(reqs[0].get("path").is_none());
    assert_eq!(reqs[1]["path"], "notes.md");
    assert_eq!(reqs[2]["from"], "HEAD~2");
    assert_eq!(reqs[2]["to"], "HEAD");
}

#[test]
fn bad_answers_are_runtime_errors() {
    let fake = Fake::start(|req| match req["notebook"].as_str().unwrap_or_default() {
        "wrong-id" => Reply::Raw(json!({"id": 999, "ok": true}).to_string()),
        _ => Reply::Raw("this is not json".into()),
    });
    let dir = short_tempdir();
    for nb in ["wrong-id", "garbage"] {
        let out = client(&fake.socket, dir.path(), &["pause", nb]);
        assert_eq!(out.code, 1, "{nb}: {}", out.stderr);
        assert!(
            out.stderr.starts_with("gitlockd: error: unexpected answer"),
            "{}",
            out.stderr
        );
    }
}

/// Runs only inside `lock_ignores_sigint_and_forwards_sigterm`'s child process.
#[test]
fn signal_child() {
    let Ok(mark) = std::env::var("GITLOCKD_TEST_SIGNAL_CHILD") else {
        return;
    };
    let fake = locking_fake();
    let dir = short_tempdir();
    let out = client(
        &fake.socket,
        dir.path(),
        &[
            "lock",
            "nb",
            "--",
            "sh",
            "-c",
            "touch \"$0\"; exec sleep 30",
            &mark,
        ],
    );
    println!("CODE={}", out.code);
    io::stdout().flush().unwrap();
}

#[test]
fn lock_ignores_sigint_and_forwards_sigterm() {
    // Signals go to a separate process (this test binary, running only
    // `signal_child`), so other tests' children are never hit.
    let dir = short_tempdir();
    let mark = dir.path().join("started");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "signal_child", "--nocapture", "--test-threads=1"])
        .env("GITLOCKD_TEST_SIGNAL_CHILD", &mark)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !mark.exists() {
        assert!(Instant::now() < deadline, "CMD never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGINT killed the client"
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("CODE=143"), "{stdout}");
}

// ---------------------------------------------------------------------------
// Pure helpers

#[test]
fn names_and_paths() {
    for name in ["notes", "my.notes", "a_b-c", "x.", "..x", "42"] {
        assert!(is_name(name), "{name}");
    }
    for not in ["", ".", "..", "a/b", "./notes", "~/notes", "a b", "é"] {
        assert!(!is_name(not), "{not}");
    }
}

#[test]
fn notebook_classification() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir(cwd.join("nb")).unwrap();
    std::fs::create_dir(cwd.join("nb/sub")).unwrap();

    // A name that is not a path: no fallback.
    assert_eq!(
        NotebookArg::classify(Path::new("notes"), &cwd).unwrap(),
        NotebookArg::Name {
            name: "notes".into(),
            fallback: None
        }
    );
    // A name that is also a directory here: fallback to its real path.
    let nb = NotebookArg::classify(Path::new("nb"), &cwd).unwrap();
    assert_eq!(nb.first(), "nb");
    assert_eq!(nb.retry(), Some(cwd.join("nb").to_str().unwrap()));
    // Paths are made absolute, `.` and `..` resolved.
    let sub = cwd.join("nb/sub");
    assert_eq!(
        NotebookArg::classify(Path::new("."), &sub).unwrap(),
        NotebookArg::Path(sub.to_str().unwrap().into())
    );
    assert_eq!(
        NotebookArg::classify(Path::new(".."), &sub).unwrap(),
        NotebookArg::Path(cwd.join("nb").to_str().unwrap().into())
    );
    assert_eq!(
        NotebookArg::classify(Path::new("nb/sub/../sub"), &cwd).unwrap(),
        NotebookArg::Path(sub.to_str().unwrap().into())
    );
    // A missing path stays lexical.
    assert_eq!(
        NotebookArg::classify(Path::new("gone/x/../y"), &cwd).unwrap(),
        NotebookArg::Path(cwd.join("gone/y").to_str().unwrap().into())
    );
    // Symlinks are resolved.
    std::os::unix::fs::symlink(cwd.join("nb"), cwd.join("link")).unwrap();
    assert_eq!(
        NotebookArg::classify(Path::new("./link"), &cwd).unwrap(),
        NotebookArg::Path(cwd.join("nb").to_str().unwrap().into())
    );
    assert_eq!(
        NotebookArg::classify(Path::new("./link"), &cwd)
            .unwrap()
            .retry(),
        None
    );
}

#[test]
fn path_classification() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir(cwd.join("nb")).unwrap();
    std::fs::write(cwd.join("nb/a.md"), "a").unwrap();
    std::os::unix::fs::symlink("a.md", cwd.join("nb/l.md")).unwrap();
    std::os::unix::fs::symlink(cwd.join("nb"), cwd.join("nblink")).unwrap();
    let nb = cwd.join("nb");
    let s = |p: &Path| p.to_str().unwrap().to_string();

    // Not here: notebook-relative, as typed.
    assert_eq!(path_arg(Path::new("docs/x.md"), &cwd).unwrap(), "docs/x.md");
    // Exists here: absolute.
    assert_eq!(
        path_arg(Path::new("a.md"), &nb).unwrap(),
        s(&nb.join("a.md"))
    );
    // ./ and ../ always absolute, even when missing.
    assert_eq!(
        path_arg(Path::new("./new.md"), &nb).unwrap(),
        s(&nb.join("new.md"))
    );
    assert_eq!(
        path_arg(Path::new("../nb/x.md"), &nb).unwrap(),
        s(&nb.join("x.md"))
    );
    // Absolute stays absolute; the parent's symlinks resolved, the last component kept.
    assert_eq!(
        path_arg(&cwd.join("nblink/l.md"), &cwd).unwrap(),
        s(&nb.join("l.md"))
    );
    assert_eq!(path_arg(Path::new("."), &nb).unwrap(), s(&nb));
}

#[test]
fn exit_codes() {
    assert_eq!(exit_code_for("timeout"), 75);
    for code in [
        "not_found",
        "bad_request",
        "forbidden",
        "git",
        "internal",
        "weird",
    ] {
        assert_eq!(exit_code_for(code), 1, "{code}");
    }
    let unreachable = ClientError::Unreachable {
        path: "/x".into(),
        source: io::Error::from(io::ErrorKind::NotFound),
    };
    assert_eq!(unreachable.exit_code(), 69);
    assert_eq!(ClientError::Closed { path: "/x".into() }.exit_code(), 69);
    assert_eq!(ClientError::Usage("u".into()).exit_code(), 2);
    assert_eq!(ClientError::Protocol("p".into()).exit_code(), 1);
}

#[test]
fn responses() {
    let ok = parse_response(r#"{"id":3,"ok":true,"depth":1}"#, 3).unwrap();
    assert_eq!(ok["depth"], 1);
    match parse_response(
        r#"{"id":3,"ok":false,"error":{"code":"timeout","message":"waited 1s"}}"#,
        3,
    ) {
        Err(e @ ClientError::Daemon { .. }) => {
            assert_eq!(e.to_string(), "waited 1s (timeout)");
            assert_eq!(e.exit_code(), 75);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse_response(r#"{"id":4,"ok":true}"#, 3),
        Err(ClientError::Protocol(_))
    ));
    assert!(matches!(
        parse_response("nope", 1),
        Err(ClientError::Protocol(_))
    ));
    assert!(matches!(
        parse_response("[1]", 1),
        Err(ClientError::Protocol(_))
    ));
    assert!(matches!(
        parse_response(r#"{"id":1}"#, 1),
        Err(ClientError::Protocol(_))
    ));
}

/// A `status` answer as the protocol types read it.
fn status_answer(v: Value) -> gitlockd::status::StatusAnswer {
    serde_json::from_value(v).unwrap()
}

/// A typed `lock` object.
fn lock_status(v: Value) -> gitlockd::status::LockStatus {
    serde_json::from_value(v).unwrap()
}

#[test]
fn status_table() {
    let answer = status_answer(json!({"notebooks": [
        {"name": "notes", "path": "/home/u/notes", "branch": "main",
         "head": "0123456789abcdef0123456789abcdef01234567", "pending": 2, "paused": false,
         "state": "idle",
         "lock": {"held": true, "mode": "exclusive",
                  "holders": [{"owner": 4, "label": "client pid 123", "mode": "exclusive",
                               "depth": 1, "held_ms": 3}],
                  "waiters": 2},
         "last_commit": {"id": "fedcba9876543210fedcba9876543210fedcba98", "files": 1,
                         "time": "2024-01-02T03:04:05Z"},
         "last_error": null, "sync": null},
        {"name": "w", "path": "/w", "branch": null, "head": null, "pending": 3,
         "paused": true, "state": "waiting: merge in progress",
         "lock": {"held": false, "mode": null, "holders": [], "waiters": 0},
         "last_commit": null, "last_error": "git: index.lock exists\nretrying",
         "sync": {"remote": "origin", "branch": "main", "state": "diverged", "ahead": 1,
                  "behind": 2, "last_sync": null, "last_error": null, "next_try": null,
                  "diverged_ref": null}}
    ]}));
    let text = gitlockd::client::status_table(&answer);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("NAME   PATH"), "{text}");
    assert!(lines[0].ends_with("  LAST-ERROR"), "{text}");
    assert!(lines[0].contains("  SYNC  "), "{text}");
    assert!(lines[1].contains("01234567 "), "{text}");
    assert!(
        lines[1].contains("exclusive by client pid 123, 2 waiting"),
        "{text}"
    );
    let t = local_time("2024-01-02T03:04:05Z");
    assert!(lines[1].contains(&format!("fedcba98 {t}")), "{text}");
    assert!(lines[1].ends_with(" -"), "{text}");
    assert!(lines[2].contains(" 3 "), "{text}");
    assert!(lines[2].contains(" yes "), "{text}");
    assert!(lines[2].contains(" free "), "{text}");
    assert!(lines[2].contains("origin/main diverged +1 -2"), "{text}");
    assert!(
        lines[2].ends_with("git: index.lock exists retrying"),
        "{text}"
    );
    // Columns line up: LOCK starts at the same offset on every line.
    let col = lines[0].find("LOCK").unwrap();
    assert_eq!(&lines[1][col..col + 9], "exclusive");
    assert_eq!(&lines[2][col..col + 4], "free");

    let empty = gitlockd::client::status_table(&status_answer(json!({"notebooks": []})));
    assert_eq!(empty, "no notebooks configured\n");
}

#[test]
fn lock_column() {
    let f = |v: Value| lock_summary(&lock_status(v));
    let holder = |owner: u64, label: Value, mode: &str| json!({"owner": owner, "label": label, "mode": mode, "depth": 1, "held_ms": 1});
    assert_eq!(
        f(json!({"held": false, "mode": null, "holders": [], "waiters": 0})),
        "free"
    );
    assert_eq!(
        f(json!({"held": false, "mode": null, "holders": [], "waiters": 1})),
        "free, 1 waiting"
    );
    assert_eq!(
        f(json!({"held": true, "mode": "shared",
                 "holders": [holder(1, json!("vim pid 7"), "shared"), holder(2, json!("sync job"), "shared")],
                 "waiters": 1})),
        "shared by vim pid 7, sync job, 1 waiting"
    );
    // A holder without a label is named by its owner id.
    assert_eq!(
        f(json!({"held": true, "mode": "exclusive",
                 "holders": [holder(9, Value::Null, "exclusive")], "waiters": 0})),
        "exclusive by owner 9"
    );
}

#[test]
fn log_lines() {
    let commits = json!([
        {"id": "0123456789abcdef0123456789abcdef01234567", "summary": "update a.md", "message": "update a.md\n\na.md\n",
         "author_name": "Ann", "author_email": "a@x", "time": "2024-01-02T03:04:05Z"},
        {"id": "1123456789abcdef0123456789abcdef01234567", "summary": "first", "message": "first",
         "author_name": "gitlockd", "author_email": "g@x", "time": "2024-01-01T00:00:00Z"}
    ]);
    assert_eq!(
        format_log(&commits),
        format!(
            "01234567  {}  Ann       update a.md\n11234567  {}  gitlockd  first\n",
            local_time("2024-01-02T03:04:05Z"),
            local_time("2024-01-01T00:00:00Z")
        )
    );
}

#[test]
fn show_decodes() {
    let text = json!({"content": "héllo\n"});
    assert_eq!(
        show_bytes(text.as_object().unwrap()).unwrap(),
        "héllo\n".as_bytes()
    );
    let bin = json!({"content_base64": "AAH/"});
    assert_eq!(
        show_bytes(bin.as_object().unwrap()).unwrap(),
        vec![0u8, 1, 255]
    );
    assert!(show_bytes(json!({"content_base64": "!!"}).as_object().unwrap()).is_err());
    assert!(show_bytes(json!({}).as_object().unwrap()).is_err());
}

#[test]
fn answers_of_the_wrong_shape_are_refused_not_guessed() {
    // A daemon (say, another version) whose answers are not the protocol's
    // types: the client says so and exits 1; it neither prints guesses nor,
    // for `lock`, runs CMD under a lock it cannot be sure of.
    let fake = Fake::start(|req| match req["cmd"].as_str().unwrap() {
        "lock" => Reply::Ok(json!({"held": true})),
        "log" => Reply::Ok(json!({"commits": [{"id": 7}]})),
        "sync" => Reply::Ok(json!({"fetched": "yes"})),
        "status" => Reply::Ok(json!({"notebooks": [{"name": "nb"}]})),
        other => Reply::Err("unknown_command", format!("no {other}")),
    });
    let dir = short_tempdir();
    let mark = dir.path().join("ran");
    for (args, cmd) in [
        (
            vec!["lock", "nb", "--", "touch", mark.to_str().unwrap()],
            "lock",
        ),
        (vec!["log", "nb"], "log"),
        (vec!["sync", "nb"], "sync"),
        (vec!["status"], "status"),
    ] {
        let out = client(&fake.socket, dir.path(), &args);
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("unexpected answer to `{cmd}`")),
            "{args:?}: {}",
            out.stderr
        );
        assert_eq!(out.stdout(), "", "{args:?}");
    }
    assert!(!mark.exists(), "CMD ran without a well-formed lock answer");
}
