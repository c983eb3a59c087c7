//! A notebook never silently stops: unreadable files, refused watches,
//! notebooks that cannot start, and config the daemon could not serve.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use support::{wait_for, Daemon, Repo, Sandbox};

/// An unprivileged user for the daemon: root reads files whatever their
/// mode, so an unreadable file needs a daemon that is not root.
const NOBODY: u32 = 65534;

/// Hands the whole sandbox to [`NOBODY`] and lets root's git CLI (the
/// oracle) read a repository it does not own.
fn give_to_nobody(sb: &Sandbox, repo: &mut Repo) {
    give_to(sb, repo, NOBODY);
}

/// [`give_to_nobody`] for any uid.
fn give_to(sb: &Sandbox, repo: &mut Repo, uid: u32) {
    let status = std::process::Command::new("chown")
        .args(["-R", &format!("{uid}:{uid}")])
        .arg(&sb.root)
        .status()
        .unwrap();
    assert!(status.success());
    repo.env.extend([
        ("GIT_CONFIG_COUNT".to_string(), "1".to_string()),
        ("GIT_CONFIG_KEY_0".to_string(), "safe.directory".to_string()),
        ("GIT_CONFIG_VALUE_0".to_string(), "*".to_string()),
    ]);
}

/// Starts the daemon as [`NOBODY`] and waits until it answers.
fn start_as_nobody(sb: &Sandbox) -> Daemon {
    start_as(sb, NOBODY)
}

/// [`start_as_nobody`] for any uid.
fn start_as(sb: &Sandbox, uid: u32) -> Daemon {
    let log = sb.root.join(format!("daemon-{uid}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = sb.command(&["--config", sb.config.to_str().unwrap()]);
    cmd.env("RUST_LOG", "info,gitlockd=debug")
        .uid(uid)
        .gid(uid)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    let d = Daemon {
        child: cmd.spawn().unwrap(),
        log,
    };
    wait_for(Duration::from_secs(20), "the daemon answers nobody", || {
        let out = sb
            .command(&["--socket", sb.socket.to_str().unwrap(), "status", "--json"])
            .uid(uid)
            .gid(uid)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        out.status.success().then_some(())
    });
    d
}

/// One notebook's `status` entry, asked as [`NOBODY`] (the daemon refuses other users).
fn status_as_nobody(sb: &Sandbox, name: &str) -> Value {
    status_as(sb, NOBODY, name)
}

/// [`status_as_nobody`] for any uid.
fn status_as(sb: &Sandbox, uid: u32, name: &str) -> Value {
    let mut cmd = sb.command(&["--socket", sb.socket.to_str().unwrap(), "status", "--json"]);
    let out = cmd.uid(uid).gid(uid).stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    all["notebooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == json!(name))
        .cloned()
        .unwrap_or_else(|| panic!("status lacks {name}: {all}"))
}

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
    let out = sb
        .command(&["check-config", "--config", sb.config.to_str().unwrap()])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("notebook \"b\".path"), "{text}");
    assert!(text.contains("of notebook \"a\""), "{text}");
    assert!(text.contains("notebook \"plain\".path"), "{text}");
    assert!(text.contains("git init"), "{text}");

    let mut d = sb.spawn(&[]);
    assert_eq!(
        d.wait_exit(Duration::from_secs(20)),
        Some(2),
        "{}",
        d.log_text()
    );
    assert_eq!(a.count(), 1, "nothing was committed into a's history");
}

/// The `watches` and `watch_problem` of notebook `name`.
fn watch_state(sb: &Sandbox, name: &str) -> (u64, Value) {
    let st = sb.client().status_of(name);
    (st["watches"].as_u64().unwrap(), st["watch_problem"].clone())
}

#[test]
fn refused_watches_mean_rescans_on_a_timer_until_the_watches_come_back() {
    let sb = Sandbox::new();
    let repo = sb.repo("nb");
    for dir in ["a", "b", "c"] {
        repo.write(&format!("{dir}/f.txt"), "0\n");
    }
    repo.commit_all("first");
    // max_delay is the rescan period while folders are unwatched.
    sb.write_config("max_delay = \"1s\"", &[("nb", &repo.path, "")]);
    // Root + one folder: two of a, b, c get no watch.
    let d = sb.spawn(&[("GITLOCKD_WATCH_LIMIT", "2")]);
    d.wait_ready(&sb);
    let (watches, problem) = watch_state(&sb, "nb");
    assert_eq!(watches, 2);
    assert!(
        problem
            .as_str()
            .is_some_and(|p| p.contains("GITLOCKD_WATCH_LIMIT=2")),
        "{problem}"
    );

    // Every folder's change is committed, the unwatched ones by the timer.
    for dir in ["a", "b", "c"] {
        repo.write(&format!("{dir}/f.txt"), "1\n");
    }
    for dir in ["a", "b", "c"] {
        repo.wait_committed(&format!("{dir}/f.txt"), "1\n");
    }
    // And again: the timer keeps going, not just once after start.
    for dir in ["a", "b", "c"] {
        repo.write(&format!("{dir}/f.txt"), "2\n");
    }
    for dir in ["a", "b", "c"] {
        repo.wait_committed(&format!("{dir}/f.txt"), "2\n");
    }

    // Fewer folders than the limit: the watches come back, the problem goes.
    std::fs::remove_dir_all(repo.path.join("b")).unwrap();
    std::fs::remove_dir_all(repo.path.join("c")).unwrap();
    wait_for(Duration::from_secs(10), "watch_problem cleared", || {
        let (watches, problem) = watch_state(&sb, "nb");
        (problem.is_null() && watches == 2).then_some(())
    });
    d.wait_log("every folder is watched again", Duration::from_secs(5));
    wait_for(Duration::from_secs(10), "deletions committed", || {
        repo.status_porcelain().is_empty().then_some(())
    });
    // Watched normally again: a save is committed after the debounce.
    repo.write("a/f.txt", "3\n");
    repo.wait_committed("a/f.txt", "3\n");
    repo.assert_fsck_clean();
}

#[test]
fn a_notebook_without_any_watch_still_commits_on_the_timer() {
    let sb = Sandbox::new();
    let repo = sb.repo("nb");
    repo.write("seed.txt", "0\n");
    repo.commit_all("first");
    sb.write_config("max_delay = \"1s\"", &[("nb", &repo.path, "")]);
    // Not even the root gets a watch: no watcher at all.
    let d = sb.spawn(&[("GITLOCKD_WATCH_LIMIT", "0")]);
    d.wait_ready(&sb);
    let (watches, problem) = watch_state(&sb, "nb");
    assert_eq!(watches, 0);
    assert!(
        problem
            .as_str()
            .is_some_and(|p| p.contains("GITLOCKD_WATCH_LIMIT=0")),
        "{problem}"
    );
    for round in 1..=2 {
        repo.write("seed.txt", &format!("{round}\n"));
        repo.wait_committed("seed.txt", &format!("{round}\n"));
    }
    repo.assert_fsck_clean();
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
fn a_notebook_folder_deleted_and_restored_is_watched_again() {
    let sb = Sandbox::new();
    let repo = sb.repo("nb");
    repo.write("a.txt", "0\n");
    repo.commit_all("first");
    sb.write_config("max_delay = \"1s\"", &[("nb", &repo.path, "")]);
    let d = sb.start();
    // A backup copy, the folder deleted, the backup put back: a new folder.
    let backup = sb.root.join("books/nb.bak");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(&repo.path)
        .arg(&backup)
        .status()
        .unwrap();
    assert!(cp.success());
    std::fs::remove_dir_all(&repo.path).unwrap();
    wait_for(
        Duration::from_secs(10),
        "watch_problem names the folder",
        || {
            let (_, problem) = watch_state(&sb, "nb");
            problem
                .as_str()
                .is_some_and(|p| p.contains("moved or deleted"))
                .then_some(())
        },
    );
    std::fs::rename(&backup, &repo.path).unwrap();
    wait_for(Duration::from_secs(10), "watched again", || {
        let (watches, problem) = watch_state(&sb, "nb");
        (problem.is_null() && watches == 1).then_some(())
    });
    d.wait_log("every folder is watched again", Duration::from_secs(1));
    for round in 1..=2 {
        repo.write("a.txt", &format!("{round}\n"));
        repo.wait_committed("a.txt", &format!("{round}\n"));
    }
    repo.assert_fsck_clean();
}

/// Issue 11: the quiet period runs from the last event, so the watcher's
/// 100 ms batching window is not added to the debounce.
#[test]
fn a_save_is_committed_debounce_after_it_not_debounce_plus_the_batch_window() {
    let sb = Sandbox::new();
    let repo = sb.repo("nb");
    repo.write("seed.txt", "0\n");
    repo.commit_all("first");
    let debounce = Duration::from_millis(300);
    sb.write_config("", &[("nb", &repo.path, "debounce = \"300ms\"")]);
    let _d = sb.start();
    let mut sub = sb.client();
    sub.ok("subscribe", json!({"notebook": "nb"}));
    let mut beyond = Vec::new();
    for i in 0..7 {
        std::fs::write(repo.path.join("seed.txt"), format!("v{i}\n")).unwrap();
        let saved = std::time::Instant::now();
        loop {
            let ev = sub.recv();
            if ev["event"] == json!("commit") {
                break;
            }
        }
        beyond.push(saved.elapsed().saturating_sub(debounce));
        std::thread::sleep(Duration::from_millis(50 + 13 * i));
    }
    beyond.sort();
    let median = beyond[beyond.len() / 2];
    eprintln!("save→commit beyond a 300 ms debounce: median {median:?}, all {beyond:?}");
    // The window alone added 100 ms; what remains is the commit itself.
    assert!(
        median < Duration::from_millis(70),
        "median {median:?} beyond debounce: {beyond:?}"
    );
}

/// A uid of its own for the instance test: inotify instances are counted
/// per user, so using up this one's disturbs nobody else.
const INSTANCE_HOG: u32 = 64_999;

#[test]
fn no_inotify_instance_left_means_rescans_until_one_is_free_again() {
    use std::io::BufRead;
    let sb = Sandbox::new();
    let mut repo = sb.repo("nb");
    repo.write("seed.txt", "0\n");
    repo.commit_all("first");
    sb.write_config("max_delay = \"1s\"", &[("nb", &repo.path, "")]);
    give_to(&sb, &mut repo, INSTANCE_HOG);
    // Another process of the same user holds every inotify instance the
    // kernel allows that user (fs.inotify.max_user_instances).
    let mut hog = KillOnDrop(
        std::process::Command::new("python3")
            .args([
                "-c",
                "import ctypes, sys, time\n\
             libc = ctypes.CDLL(None)\n\
             n = 0\n\
             while libc.inotify_init() >= 0: n += 1\n\
             print(n, flush=True)\n\
             time.sleep(120)\n",
            ])
            .uid(INSTANCE_HOG)
            .gid(INSTANCE_HOG)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufReader::new(hog.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.trim().parse::<u32>().unwrap() > 0, "hog: {line:?}");

    let d = start_as(&sb, INSTANCE_HOG);
    let st = status_as(&sb, INSTANCE_HOG, "nb");
    let problem = st["watch_problem"].as_str().unwrap_or_default().to_string();
    assert!(problem.contains("max_user_instances"), "{st}");
    // Nothing watches, and still every save is committed (by the timer).
    for round in 1..=2 {
        repo.write("seed.txt", &format!("{round}\n"));
        repo.wait_committed("seed.txt", &format!("{round}\n"));
    }

    // Instances free again: the next retry watches the notebook.
    drop(hog);
    wait_for(Duration::from_secs(10), "watching again", || {
        let st = status_as(&sb, INSTANCE_HOG, "nb");
        (st["watch_problem"].is_null() && st["watches"] == json!(1)).then_some(())
    });
    d.wait_log("watching the notebook again", Duration::from_secs(1));
    repo.write("seed.txt", "3\n");
    repo.wait_committed("seed.txt", "3\n");
    repo.assert_fsck_clean();
}

/// A helper process, killed (and reaped) when the test ends, even by a panic.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    let out = sb
        .command(&["check-config", "--config", sb.config.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("notebook \"nb\".debounce"), "{text}");
    assert!(text.contains("too large: at most \"8760h\""), "{text}");
    let mut d = sb.spawn(&[]);
    assert_eq!(
        d.wait_exit(Duration::from_secs(20)),
        Some(2),
        "{}",
        d.log_text()
    );
    assert!(!d.log_text().contains("panicked"), "{}", d.log_text());
}
