//! The systemd user unit and the daemon's side of the sd_notify protocol.
//!
//! * `systemd-analyze --user --man=no verify` accepts systemd/gitlockd.service
//!   without printing anything (it exits 0 on warnings, so any output fails).
//! * The daemon sends READY=1, RELOADING=1 + MONOTONIC_USEC, READY=1 and
//!   STOPPING=1 to a NOTIFY_SOCKET this test binds, at the right moments.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{answers_ping, bin, monotonic_usec, Sandbox};

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/gitlockd.service");

fn unit_text() -> String {
    std::fs::read_to_string(UNIT).unwrap()
}

/// `systemd-analyze` on PATH, or None (the test then says it skipped).
fn systemd_analyze() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("systemd-analyze"))
        .find(|p| p.is_file())
}

/// The unit with ExecStart pointing at the binary under test, in a fresh dir.
fn unit_copy(dir: &Path, text: &str) -> PathBuf {
    let exec = format!("ExecStart=\"{}\" ", bin().display());
    let patched = text.replace("ExecStart=/usr/bin/gitlockd ", &exec);
    assert_ne!(
        patched, text,
        "the unit's ExecStart should start with /usr/bin/gitlockd"
    );
    let path = dir.join("gitlockd.service");
    std::fs::write(&path, patched).unwrap();
    path
}

/// Runs `systemd-analyze --user --man=no verify UNIT`; returns (success, all output).
fn verify(analyze: &Path, unit: &Path) -> (bool, String) {
    verify_with_home(analyze, unit, None)
}

/// [`verify`] with HOME (what `%h` expands to) set to `home`.
fn verify_with_home(analyze: &Path, unit: &Path, home: Option<&Path>) -> (bool, String) {
    let runtime = tempfile::tempdir().unwrap();
    std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut cmd = Command::new(analyze);
    cmd.args(["--user", "--man=no", "verify"])
        .arg(unit)
        .env_clear();
    for key in ["PATH", "HOME", "USER", "LANG"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    if let Some(home) = home {
        cmd.env("HOME", home);
    }
    let out = cmd
        .env("XDG_RUNTIME_DIR", runtime.path())
        .env("SYSTEMD_COLORS", "0")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn unit_passes_systemd_analyze_verify_without_output() {
    let Some(analyze) = systemd_analyze() else {
        support::skip("systemd-analyze is not installed: the unit was not verified");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(dir.path(), &unit_text());
    let (ok, output) = verify(&analyze, &unit);
    assert!(
        ok && output.trim().is_empty(),
        "systemd-analyze verify must exit 0 and print nothing; ok={ok}, output:\n{output}"
    );

    // The check itself must be able to fail: systemd-analyze exits 0 on an
    // unknown key, and only prints a warning.
    let broken_dir = tempfile::tempdir().unwrap();
    let broken = unit_copy(
        broken_dir.path(),
        &unit_text().replace("[Service]\n", "[Service]\nNoSuchSetting=yes\n"),
    );
    let (_, output) = verify(&analyze, &broken);
    assert!(
        output.contains("NoSuchSetting"),
        "systemd-analyze should warn about an unknown key; output:\n{output}"
    );
}

#[test]
fn unit_edited_for_cargo_install_verifies() {
    // What the README tells a `cargo install` user to do: ExecStart
    // at %h/.cargo/bin/gitlockd. Verified with a HOME holding that binary.
    let Some(analyze) = systemd_analyze() else {
        support::skip("systemd-analyze is not installed");
        return;
    };
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".cargo/bin")).unwrap();
    std::os::unix::fs::symlink(bin(), home.path().join(".cargo/bin/gitlockd")).unwrap();
    let text = unit_text().replace(
        "ExecStart=/usr/bin/gitlockd ",
        "ExecStart=%h/.cargo/bin/gitlockd ",
    );
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("gitlockd.service");
    std::fs::write(&unit, text).unwrap();
    let (ok, output) = verify_with_home(&analyze, &unit, Some(home.path()));
    assert!(ok && output.trim().is_empty(), "ok={ok}, output:\n{output}");
}

/// `Key=value` lines of the unit (comments skipped), in order.
fn settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn setting(text: &str, key: &str) -> Option<String> {
    settings(text)
        .into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[test]
fn unit_has_the_promised_settings() {
    let text = unit_text();
    let want = [
        ("Type", "notify"),
        (
            "ExecStart",
            "/usr/bin/gitlockd --config %h/.config/gitlockd/config.toml",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", "2"),
        ("NoNewPrivileges", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("SystemCallArchitectures", "native"),
        ("Documentation", "man:gitlockd(1)"),
        ("WantedBy", "default.target"),
    ];
    for (key, value) in want {
        assert_eq!(
            setting(&text, key).as_deref(),
            Some(value),
            "{key}= in {UNIT}"
        );
    }
    // Options that need mount namespaces in a user manager (so unprivileged
    // user namespaces) or that could hide the user's notebooks stay out.
    for key in [
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateUsers",
        "PrivateDevices",
        "ReadOnlyPaths",
        "InaccessiblePaths",
        "TemporaryFileSystem",
    ] {
        assert_eq!(
            setting(&text, key),
            None,
            "{key}= must not be set in {UNIT}"
        );
    }
    // Stopping commits everything pending, waiting up to lock.timeout for a
    // held lock: systemd must not SIGKILL the daemon before that.
    let stop = setting(&text, "TimeoutStopSec").expect("TimeoutStopSec=");
    let stop = humantime::parse_duration(&stop).unwrap();
    // A stop with a held lock waits at most lock.timeout in all; the unit
    // keeps a wide margin (the commits themselves, a raised lock.timeout).
    assert!(
        stop >= 2 * gitlockd::config::DEFAULT_LOCK_TIMEOUT + Duration::from_secs(10),
        "TimeoutStopSec={stop:?} should leave a wide margin over the default lock.timeout"
    );
}

// ---------------------------------------------------------------------------
// NOTIFY_SOCKET

/// CLOCK_MONOTONIC in microseconds, as systemd's MONOTONIC_USEC.
/// The next datagram on `sock` as text, waiting at most `timeout`.
fn next_message(sock: &UnixDatagram, timeout: Duration, what: &str) -> String {
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => String::from_utf8(buf[..n].to_vec()).unwrap(),
        Err(e) => panic!("no notification ({what}) within {timeout:?}: {e}"),
    }
}

/// `KEY=VALUE` pairs of one notification.
fn fields(msg: &str) -> Vec<(&str, &str)> {
    msg.lines().filter_map(|l| l.split_once('=')).collect()
}

fn field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    fields(msg)
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Nothing else queued on the socket.
fn assert_drained(sock: &UnixDatagram) {
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    if let Ok(n) = sock.recv(&mut buf) {
        panic!(
            "unexpected extra notification: {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    sock.set_nonblocking(false).unwrap();
}

fn expect_ready(msg: &str, notebooks: usize) {
    assert_eq!(
        field(msg, "READY"),
        Some("1"),
        "expected READY=1, got {msg:?}"
    );
    assert_eq!(
        field(msg, "STATUS"),
        Some(format!("watching {notebooks} notebook(s)").as_str()),
        "STATUS in {msg:?}"
    );
}

#[test]
fn notifications_on_start_reload_and_stop() {
    let sb = Sandbox::new();
    let nb1 = sb.repo("nb1");
    let nb2 = sb.repo("nb2");
    sb.write_config("", &[("nb1", &nb1.path, "")]);
    let notify_path = sb.root.join("run/notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();

    let mut daemon = sb.spawn(&[("NOTIFY_SOCKET", notify_path.to_str().unwrap())]);

    // Start: READY=1 once the control socket serves and the notebook is watched.
    let ready = next_message(&notify, Duration::from_secs(20), "READY=1 after start");
    expect_ready(&ready, 1);
    assert!(
        answers_ping(&sb.socket, Duration::from_secs(5)),
        "READY=1 sent before the socket answers ping"
    );
    assert_eq!(sb.client().status_of("nb1")["name"], "nb1");
    assert_drained(&notify);

    // SIGHUP with an added notebook: RELOADING=1 stamped with CLOCK_MONOTONIC
    // between the signal and its arrival, then READY=1 with the new count.
    // nb2 waits 30 s of quiet, so only the SIGTERM flush can commit its change.
    let slow = "debounce = \"30s\"\nmax_delay = \"1h\"";
    sb.write_config("", &[("nb1", &nb1.path, ""), ("nb2", &nb2.path, slow)]);
    let before = monotonic_usec();
    daemon.signal(libc::SIGHUP);
    let reloading = next_message(&notify, Duration::from_secs(20), "RELOADING=1 after SIGHUP");
    let after = monotonic_usec();
    assert_eq!(field(&reloading, "RELOADING"), Some("1"), "{reloading:?}");
    let stamp: u64 = field(&reloading, "MONOTONIC_USEC")
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"))
        .parse()
        .unwrap();
    assert!(
        (before..=after).contains(&stamp),
        "MONOTONIC_USEC={stamp} not within [{before}, {after}]"
    );
    let ready = next_message(&notify, Duration::from_secs(20), "READY=1 after reload");
    expect_ready(&ready, 2);
    assert_eq!(sb.client().status_of("nb2")["name"], "nb2");
    assert_drained(&notify);

    // An invalid config on SIGHUP: still RELOADING=1 then READY=1 (systemd
    // would otherwise leave the unit "reloading"); the old config stays.
    std::fs::write(&sb.config, "this is = = not toml\n").unwrap();
    daemon.signal(libc::SIGHUP);
    let reloading = next_message(&notify, Duration::from_secs(20), "RELOADING=1 (bad config)");
    assert_eq!(field(&reloading, "RELOADING"), Some("1"), "{reloading:?}");
    assert!(
        field(&reloading, "MONOTONIC_USEC").is_some(),
        "{reloading:?}"
    );
    let ready = next_message(&notify, Duration::from_secs(20), "READY=1 (bad config)");
    expect_ready(&ready, 2);
    assert!(answers_ping(&sb.socket, Duration::from_secs(5)));

    // SIGTERM: a change still pending is committed, STOPPING=1 is sent, the
    // socket file goes away and the exit code is 0.
    nb2.write("last.md", "written just before stop\n");
    support::wait_for(Duration::from_secs(10), "nb2 has a pending change", || {
        (sb.client().status_of("nb2")["pending"]
            .as_u64()
            .unwrap_or(0)
            > 0)
        .then_some(())
    });
    daemon.signal(libc::SIGTERM);
    let stopping = next_message(&notify, Duration::from_secs(20), "STOPPING=1 after SIGTERM");
    assert_eq!(field(&stopping, "STOPPING"), Some("1"), "{stopping:?}");
    assert_eq!(daemon.wait_exit(Duration::from_secs(40)), Some(0));
    assert!(
        !sb.socket.exists(),
        "the control socket should be removed on exit"
    );
    assert_eq!(
        nb2.blob("last.md").as_deref(),
        Some("written just before stop\n"),
        "pending change not committed on SIGTERM\n{}",
        daemon.log_text()
    );
    assert_drained(&notify);
}

#[test]
fn notifications_reach_an_abstract_notify_socket() {
    // systemd may hand out "@name" (abstract namespace) notify sockets.
    let sb = Sandbox::new();
    let nb = sb.repo("nb");
    sb.write_config("", &[("nb", &nb.path, "")]);
    let name = format!("gitlockd-test-{}-{}", std::process::id(), monotonic_usec());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let notify = UnixDatagram::bind_addr(&addr).unwrap();

    let mut daemon = sb.spawn(&[("NOTIFY_SOCKET", &format!("@{name}"))]);
    let ready = next_message(&notify, Duration::from_secs(20), "READY=1 (abstract)");
    expect_ready(&ready, 1);
    daemon.signal(libc::SIGTERM);
    let stopping = next_message(&notify, Duration::from_secs(20), "STOPPING=1 (abstract)");
    assert_eq!(field(&stopping, "STOPPING"), Some("1"), "{stopping:?}");
    assert_eq!(daemon.wait_exit(Duration::from_secs(40)), Some(0));
}

#[test]
fn no_notify_socket_no_problem_and_unreachable_socket_is_harmless() {
    // A NOTIFY_SOCKET nobody listens on must not stop the daemon starting,
    // reloading or stopping cleanly.
    let sb = Sandbox::new();
    let nb = sb.repo("nb");
    sb.write_config("", &[("nb", &nb.path, "")]);
    let gone = sb.root.join("run/nobody.sock");
    let mut daemon = sb.spawn(&[("NOTIFY_SOCKET", gone.to_str().unwrap())]);
    daemon.wait_ready(&sb);
    daemon.signal(libc::SIGHUP);
    let start = Instant::now();
    support::wait_for(Duration::from_secs(10), "reload logged", || {
        daemon.log_text().contains("SIGHUP").then_some(())
    });
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(answers_ping(&sb.socket, Duration::from_secs(5)));
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(Duration::from_secs(40)), Some(0));
}

/// TimeoutStopSec= from the unit.
fn unit_timeout_stop() -> Duration {
    humantime::parse_duration(&setting(&unit_text(), "TimeoutStopSec").unwrap()).unwrap()
}

#[test]
fn stop_with_a_held_lock_ends_within_the_units_stop_timeout() {
    // The unit's TimeoutStopSec is sized for the default lock.timeout (30 s).
    // Shutdown waits scale with lock.timeout, so run with a 4 s lock.timeout
    // and a held lock, and check the stop ends within the same proportion of
    // TimeoutStopSec: systemd would not have to SIGKILL the daemon.
    let sb = Sandbox::new();
    let nb = sb.repo("nb");
    sb.write_config("", &[("nb", &nb.path, "")]);
    let lock_timeout = Duration::from_secs(4);
    let text = std::fs::read_to_string(&sb.config)
        .unwrap()
        .replace("timeout = \"5s\"", "timeout = \"4s\"");
    std::fs::write(&sb.config, text).unwrap();
    let mut daemon = sb.start();
    // The socket answers while notebooks still open.
    support::wait_for(Duration::from_secs(20), "nb listed in status", || {
        let resp = sb.client().request("status", serde_json::json!({}));
        resp["notebooks"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n["name"] == "nb"))
            .then_some(())
    });

    let mut holder = sb
        .command(&[
            "--socket",
            sb.socket.to_str().unwrap(),
            "lock",
            "nb",
            "--",
            "sleep",
            "120",
        ])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    support::wait_for(Duration::from_secs(10), "the lock is held", || {
        (sb.client().status_of("nb")["lock"]["held"] == true).then_some(())
    });
    nb.write("blocked.md", "waits for the lock\n");
    // Let the auto-commit round start and queue for the lock.
    support::wait_for(
        Duration::from_secs(10),
        "an auto-commit waits for the lock",
        || {
            (sb.client().status_of("nb")["lock"]["waiters"]
                .as_u64()
                .unwrap_or(0)
                > 0)
            .then_some(())
        },
    );

    let start = Instant::now();
    daemon.signal(libc::SIGTERM);
    let code = daemon.wait_exit(Duration::from_secs(60));
    let took = start.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code, Some(0));
    let budget = unit_timeout_stop()
        .mul_f64(lock_timeout.as_secs_f64() / gitlockd::config::DEFAULT_LOCK_TIMEOUT.as_secs_f64());
    assert!(
        took < budget,
        "stopping took {took:?} with lock.timeout={lock_timeout:?}; the unit's TimeoutStopSec \
         scaled the same way allows {budget:?}\n{}",
        daemon.log_text()
    );
}

/// Known daemon bug (reported, not fixed here; fails about 6 runs in 10): a
/// change made less than the watcher's batch window (watch.rs BATCH_WINDOW,
/// 100 ms) before SIGTERM is not committed on stop. The final flush in
/// notebook.rs calls drain_watch_events() before watcher.stop(), so the batch
/// the watch pump still holds never arrives. It is committed at the next
/// start, so nothing is lost, but the spec says SIGTERM commits everything
/// pending. Run with `cargo test --test systemd -- --ignored`.
#[test]
fn change_made_just_before_sigterm_is_committed() {
    let sb = Sandbox::new();
    let nb = sb.repo("nb");
    sb.write_config("", &[("nb", &nb.path, "debounce = \"30s\"")]);
    let mut daemon = sb.start();
    nb.write("late.md", "late\n");
    std::thread::sleep(Duration::from_millis(20));
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(Duration::from_secs(40)), Some(0));
    assert_eq!(
        nb.blob("late.md").as_deref(),
        Some("late\n"),
        "{}",
        daemon.log_text()
    );
}

/// Runs the daemon with stderr in a file and JOURNAL_STREAM naming that very
/// file (as systemd does for the journal); SIGHUP with a broken config (an
/// error), then SIGTERM. Returns the log text.
fn run_under_fake_journal() -> String {
    use std::os::unix::fs::MetadataExt;
    let sb = Sandbox::new();
    let nb = sb.repo("nb");
    sb.write_config("", &[("nb", &nb.path, "")]);
    let log = sb.root.join("journal.log");
    let file = std::fs::File::create(&log).unwrap();
    let meta = file.metadata().unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let child = sb
        .command(&["--config", sb.config.to_str().unwrap()])
        .env("JOURNAL_STREAM", stream)
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut daemon = support::Daemon {
        child,
        log: log.clone(),
    };
    daemon.wait_ready(&sb);
    support::wait_for(Duration::from_secs(10), "ready logged", || {
        daemon
            .log_text()
            .contains("gitlockd is ready")
            .then_some(())
    });
    std::fs::write(&sb.config, "not = = toml\n").unwrap();
    daemon.signal(libc::SIGHUP);
    support::wait_for(Duration::from_secs(10), "reload error logged", || {
        daemon.log_text().contains("reload failed").then_some(())
    });
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(Duration::from_secs(40)), Some(0));
    daemon.log_text()
}

#[test]
fn journal_log_lines_have_priorities_and_no_timestamps() {
    let text = run_under_fake_journal();
    let ready = text
        .lines()
        .find(|l| l.contains("gitlockd is ready"))
        .unwrap();
    assert!(ready.starts_with("<6>gitlockd is ready"), "{ready:?}");
    let failed = text.lines().find(|l| l.contains("reload failed")).unwrap();
    assert!(failed.starts_with("<3>"), "{failed:?}");
    // Every line starts a new record with a priority, or continues a
    // multi-line message; no timestamps (the journal adds its own).
    assert!(
        !text.contains("Z  INFO"),
        "timestamped lines in journal mode:\n{text}"
    );
}

/// Known daemon bug (reported, not fixed here): in journal mode the
/// key=value fields carry ANSI escapes (italic keys, dimmed `=`), because
/// src/logging.rs only calls `.with_ansi(..)` on the non-journal branch and
/// tracing-subscriber's default is ANSI on. journalctl then shows
/// `ESC[3mnotebookESC[0mESC[2m=ESC[0mdemo`. Fix: `.with_ansi(false)` before
/// `.event_format(JournalFormat)`.
#[test]
fn journal_log_lines_have_no_ansi_escapes() {
    let text = run_under_fake_journal();
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escapes in journal output:\n{text:?}"
    );
}
