//! A notebook never silently stops watching: refused watches, no inotify
//! instance, a folder deleted and restored, and the debounce measured from
//! the last event.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod as_user;
mod support;

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use as_user::{give_to, start_as, status_as};
use serde_json::{json, Value};
use support::{wait_for, Daemon, Sandbox};

/// The `watches` and `watch_problem` of notebook `name`.
fn watch_state(sb: &Sandbox, name: &str) -> (u64, Value) {
    let st = sb.client().status_of(name);
    (st["watches"].as_u64().unwrap(), st["watch_problem"].clone())
}

/// Starts the daemon with at most `limit` inotify watches for notebook
/// "nb" (more folders than that): status must report `limit` watches and a
/// watch problem that names the limit.
fn start_with_watch_limit(sb: &Sandbox, limit: u64) -> Daemon {
    let d = sb.spawn(&[("GITLOCKD_WATCH_LIMIT", &limit.to_string())]);
    d.wait_ready(sb);
    let (watches, problem) = watch_state(sb, "nb");
    assert_eq!(watches, limit);
    assert!(
        problem
            .as_str()
            .is_some_and(|p| p.contains(&format!("GITLOCKD_WATCH_LIMIT={limit}"))),
        "{problem}"
    );
    d
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
    let d = start_with_watch_limit(&sb, 2);

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
    let _d = start_with_watch_limit(&sb, 0);
    for round in 1..=2 {
        repo.write("seed.txt", &format!("{round}\n"));
        repo.wait_committed("seed.txt", &format!("{round}\n"));
    }
    repo.assert_fsck_clean();
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
