//! A notebook never silently stops: unreadable files, notebooks that cannot
//! start, crashes, and config the daemon could not serve.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod as_user;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use as_user::{give_to_nobody, start_as_nobody, status_as_nobody, NOBODY};
use serde_json::{json, Value};
use support::{wait_for, Sandbox};

fn entries(status: &Value, key: &str) -> Vec<String> {
    status[key]
        .as_array()
        .unwrap_or_else(|| panic!("status lacks {key}: {status}"))
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_unreadable_file_is_skipped_and_committed_once_readable() {
    let sb = Sandbox::new();
    let mut repo = sb.repo("nb");
    repo.write("seed.txt", "seed\n");
    sb.write_config("", &[("nb", &repo.path, "")]);
    give_to_nobody(&sb, &mut repo);
    let d = start_as_nobody(&sb);
    repo.wait_committed("seed.txt", "seed\n");

    // Written by root (as `sudo vim` would), mode 000: the daemon cannot read it.
    let secret = repo.path.join("secret.txt");
    std::fs::write(&secret, "secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    repo.write("notes.txt", "notes\n");
    std::process::Command::new("chown")
        .arg(format!("{NOBODY}:{NOBODY}"))
        .arg(repo.path.join("notes.txt"))
        .status()
        .unwrap();
    repo.wait_committed("notes.txt", "notes\n");
    assert_eq!(
        repo.blob("secret.txt"),
        None,
        "an unreadable file has no blob"
    );
    let st = wait_for(Duration::from_secs(10), "secret.txt listed", || {
        let st = status_as_nobody(&sb, "nb");
        entries(&st, "skipped_unreadable")
            .contains(&"secret.txt".to_string())
            .then_some(st)
    });
    assert_ne!(st["state"], json!("error"), "{st}");

    // Later saves still commit while the file stays unreadable.
    repo.write("notes.txt", "notes 2\n");
    repo.wait_committed("notes.txt", "notes 2\n");
    let log = d.log_text();
    assert_eq!(
        log.matches("cannot be read").count(),
        1,
        "warned once per path:\n{log}"
    );

    // Readable again: committed, and gone from the list.
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    repo.wait_committed("secret.txt", "secret\n");
    wait_for(Duration::from_secs(10), "secret.txt unlisted", || {
        entries(&status_as_nobody(&sb, "nb"), "skipped_unreadable")
            .is_empty()
            .then_some(())
    });
    // A tracked file that changes and turns unreadable, found by the
    // start-up rescan of a restarted daemon: the rest is still committed.
    drop(d);
    std::fs::write(&secret, "secret 2\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    repo.write("notes.txt", "notes 3\n");
    let d = start_as_nobody(&sb);
    repo.wait_committed("notes.txt", "notes 3\n");
    assert_eq!(repo.blob("secret.txt").as_deref(), Some("secret\n"));
    wait_for(Duration::from_secs(10), "secret.txt listed again", || {
        entries(&status_as_nobody(&sb, "nb"), "skipped_unreadable")
            .contains(&"secret.txt".to_string())
            .then_some(())
    });
    repo.assert_fsck_clean();
    drop(d);

    // An unreadable folder (tracked files inside): the same, at start-up
    // and from events.
    repo.write("private/p.txt", "p\n");
    let d = start_as_nobody(&sb);
    repo.wait_committed("private/p.txt", "p\n");
    repo.write("private/p.txt", "p 2\n");
    let private = repo.path.join("private");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o000)).unwrap();
    repo.write("notes.txt", "notes 4\n");
    repo.wait_committed("notes.txt", "notes 4\n");
    drop(d);
    repo.write("notes.txt", "notes 5\n");
    let d = start_as_nobody(&sb);
    repo.wait_committed("notes.txt", "notes 5\n");
    let problem = status_as_nobody(&sb, "nb")["watch_problem"].clone();
    assert!(
        problem.as_str().is_some_and(|p| p.contains("private")),
        "{problem}"
    );
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o755)).unwrap();
    repo.wait_committed("private/p.txt", "p 2\n");
    wait_for(Duration::from_secs(10), "the folder watched again", || {
        let st = status_as_nobody(&sb, "nb");
        (st["watch_problem"].is_null() && st["watches"] == json!(2)).then_some(())
    });
    repo.assert_fsck_clean();
    drop(d);
}

#[test]
fn check_config_and_start_refuse_what_the_daemon_cannot_serve() {
    let sb = Sandbox::new();
    let a = sb.repo("a");
    a.write("a.txt", "a\n");
    a.commit_all("first");
    // b's `.git` file points at a's git directory: b would commit a's index.
    let b = sb.root.join("books/b");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(
        b.join(".git"),
        format!("gitdir: {}\n", a.path.join(".git").display()),
    )
    .unwrap();
    let plain = sb.root.join("books/plain");
    std::fs::create_dir_all(&plain).unwrap();
    sb.write_config(
        "",
        &[("a", &a.path, ""), ("b", &b, ""), ("plain", &plain, "")],
    );
    let check = sb.check_config();
    let text = check.text();
    assert_eq!(check.code, Some(2), "{text}");
    assert!(text.contains("notebook \"b\".path"), "{text}");
    assert!(text.contains("of notebook \"a\""), "{text}");
    assert!(text.contains("notebook \"plain\".path"), "{text}");
    assert!(text.contains("git init"), "{text}");

    sb.start_refused(2);
    assert_eq!(a.count(), 1, "nothing was committed into a's history");
}

#[test]
fn a_notebook_that_cannot_start_shows_an_error_and_starts_once_fixed() {
    let sb = Sandbox::new();
    let mut ok = sb.repo("ok");
    // `later` is created by gitlockd (init = true) in a folder it may not write yet.
    let locked = sb.root.join("books/locked");
    std::fs::create_dir_all(&locked).unwrap();
    let later_path = locked.join("later");
    sb.write_config(
        "",
        &[("ok", &ok.path, ""), ("later", &later_path, "init = true")],
    );
    give_to_nobody(&sb, &mut ok);
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    let d = start_as_nobody(&sb);

    // The daemon runs, the other notebook works, the broken one says why.
    let st = status_as_nobody(&sb, "later");
    assert_eq!(st["state"], json!("error"), "{st}");
    let error = st["last_error"].as_str().unwrap();
    assert!(
        error.contains("cannot create") && error.contains("later"),
        "{error}"
    );
    assert!(st["next_try"].is_string(), "{st}");
    ok.write("a.txt", "a\n");
    ok.wait_committed("a.txt", "a\n");

    // Fixed: the retry starts it, and it commits like any other.
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    wait_for(Duration::from_secs(15), "later started", || {
        (status_as_nobody(&sb, "later")["state"] != json!("error")).then_some(())
    });
    let mut later = sb.open_repo(&later_path);
    later.env = ok.env.clone();
    std::fs::write(later_path.join("b.txt"), "b\n").unwrap();
    later.wait_committed("b.txt", "b\n");
    d.wait_log("notebook started", Duration::from_secs(1));
    later.assert_fsck_clean();
}

/// A crash of `part` (debug builds: `GITLOCKD_TEST_PANIC`) is survived:
/// logged, the part restarted, and every change still committed.
fn survive_a_crash_of(part: &str, log_needle: &str) {
    let sb = Sandbox::new();
    let repo = sb.repo("nb");
    repo.write("seed.txt", "0\n");
    repo.commit_all("first");
    sb.write_config("max_delay = \"1s\"", &[("nb", &repo.path, "")]);
    let d = sb.spawn(&[("GITLOCKD_TEST_PANIC", &format!("{part}:boom.txt"))]);
    d.wait_ready(&sb);
    repo.write("boom.txt", "boom\n");
    d.wait_log(log_needle, Duration::from_secs(10));
    repo.wait_committed("boom.txt", "boom\n");
    // Alive: later saves are committed from events again.
    for round in 1..=2 {
        repo.write("seed.txt", &format!("{round}\n"));
        repo.wait_committed("seed.txt", &format!("{round}\n"));
    }
    wait_for(Duration::from_secs(10), "watching again", || {
        let st = sb.client().status_of("nb");
        (st["watch_problem"].is_null() && st["watches"] == json!(1)).then_some(())
    });
    repo.assert_fsck_clean();
}

#[test]
fn a_crash_of_the_notebook_loop_is_survived() {
    survive_a_crash_of("loop", "notebook loop crashed; restarting it");
}

#[test]
fn a_crash_of_the_watch_thread_is_survived() {
    survive_a_crash_of("pump", "file watcher died");
}

#[test]
fn a_crash_of_the_watch_thread_is_named_in_the_log() {
    let sb = Sandbox::new();
    let repo = sb.repo("nb");
    sb.write_config("", &[("nb", &repo.path, "")]);
    let d = sb.spawn(&[("GITLOCKD_TEST_PANIC", "pump:boom.txt")]);
    d.wait_ready(&sb);
    repo.write("boom.txt", "boom\n");
    d.wait_log(
        "stopped unexpectedly (GITLOCKD_TEST_PANIC=pump:boom.txt)",
        Duration::from_secs(10),
    );
}

#[test]
fn a_broken_repository_is_an_error_state_not_a_dead_daemon() {
    let sb = Sandbox::new();
    let good = sb.repo("good");
    let broken = sb.repo("broken");
    let config = broken.path.join(".git/config");
    let healthy = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, "[core\n").unwrap();
    sb.write_config(
        "",
        &[("good", &good.path, ""), ("broken", &broken.path, "")],
    );
    let d = sb.start();
    let mut c = sb.client();
    let st = c.status_of("broken");
    assert_eq!(st["state"], json!("error"), "{st}");
    assert!(
        st["last_error"].as_str().unwrap().contains("broken"),
        "{st}"
    );
    // Requests naming it say why; the other notebook works.
    let resp = c.err("commit", json!({"notebook": "broken"}), "not_found");
    assert!(
        resp["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not running"),
        "{resp}"
    );
    good.write("a.txt", "a\n");
    good.wait_committed("a.txt", "a\n");
    // The CLI names it by a path inside it as well.
    let inside = broken.path.display().to_string();
    let out = sb.gl(&["commit", &inside]);
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("is not running"), "{text}");
    let out = sb.gl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("broken"))
        .unwrap_or_default();
    assert!(line.contains("error"), "{text}");

    // Repaired: it starts at the next try and commits.
    std::fs::write(&config, healthy).unwrap();
    broken.write("b.txt", "b\n");
    broken.wait_committed("b.txt", "b\n");
    assert_ne!(sb.client().status_of("broken")["state"], json!("error"));
    d.wait_log("notebook started", Duration::from_secs(1));
    broken.assert_fsck_clean();
}

#[test]
fn a_huge_duration_is_a_config_error_not_a_panic() {
    let sb = Sandbox::new();
    let repo = sb.repo("nb");
    sb.write_config("", &[("nb", &repo.path, "debounce = \"99999999999999h\"")]);
    let check = sb.check_config();
    let text = &check.stderr;
    assert_eq!(check.code, Some(2), "{text}");
    assert!(text.contains("notebook \"nb\".debounce"), "{text}");
    assert!(text.contains("too large: at most \"8760h\""), "{text}");
    let log = sb.start_refused(2);
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_reload_tries_a_notebook_that_could_not_start_at_once() {
    let sb = Sandbox::new();
    let broken = sb.repo("broken");
    let config = broken.path.join(".git/config");
    let healthy = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, "[core\n").unwrap();
    sb.write_config("", &[("broken", &broken.path, "")]);
    let _d = sb.start();
    // Wait until the backoff has grown: the next timed try is seconds away.
    wait_for(Duration::from_secs(20), "a next try 3 s away", || {
        let st = sb.client().status_of("broken");
        let next = humantime::parse_rfc3339(st["next_try"].as_str()?).ok()?;
        let left = next.duration_since(std::time::SystemTime::now()).ok()?;
        (left > Duration::from_secs(2)).then_some(())
    });
    std::fs::write(&config, healthy).unwrap();
    let mut c = sb.client();
    c.ok("reload", json!({}));
    // Started by the reload itself, well before the timed try.
    assert_ne!(c.status_of("broken")["state"], json!("error"));
    broken.write("a.txt", "a\n");
    broken.wait_committed("a.txt", "a\n");
}
