//! Sync through git remotes, end to end: one daemon, two notebooks cloned
//! from one bare remote, real `git` on the wire (interface.md section 6).
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::{wait_for, Repo, Sandbox};

const SYNC: &str =
    "[notebook.sync]\nremote = \"origin\"\npush_delay = \"100ms\"\npull_interval = \"1s\"\n";

/// A bare remote with one commit, and two clones of it as notebooks a and b.
fn two_clones(sb: &Sandbox) -> (Repo, Repo, Repo) {
    let remote = sb.repo("remote.git");
    remote.git(&["config", "core.bare", "true"]);
    std::fs::remove_dir_all(&remote.path).unwrap();
    std::fs::create_dir_all(&remote.path).unwrap();
    remote.git(&["init", "-q", "--bare", "-b", "main"]);
    let seed = sb.repo("seed");
    seed.write("README.md", "shared notes\n");
    seed.git(&["add", "-A"]);
    seed.git(&["commit", "-q", "-m", "seed"]);
    seed.git(&["push", "-q", remote.path.to_str().unwrap(), "main"]);
    let clone = |name: &str| {
        let path = sb.root.join("books").join(name);
        let out = std::process::Command::new("git")
            .args([
                "clone",
                "-q",
                remote.path.to_str().unwrap(),
                path.to_str().unwrap(),
            ])
            .envs(sb.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Repo {
            path,
            env: sb.env.clone(),
        }
    };
    let (a, b) = (clone("a"), clone("b"));
    (remote, a, b)
}

fn config(sb: &Sandbox, a: &Path, b: &Path) {
    sb.write_config("", &[("a", a, SYNC), ("b", b, SYNC)]);
}

fn read(repo: &Repo, rel: &str) -> Option<String> {
    std::fs::read_to_string(repo.path.join(rel)).ok()
}

fn all_blobs_free_of_conflict_markers(repo: &Repo) {
    let objects = repo.git(&["rev-list", "--all", "--objects"]);
    for line in objects.lines() {
        let oid = line.split_whitespace().next().unwrap();
        if repo.git(&["cat-file", "-t", oid]) == "blob" {
            let content = repo.git(&["cat-file", "-p", oid]);
            assert!(
                !content.contains("<<<<<<<") && !content.contains(">>>>>>>"),
                "conflict markers committed in {oid}: {content}"
            );
        }
    }
}

#[test]
fn edits_travel_both_ways_and_different_files_merge() {
    let sb = Sandbox::new();
    let (remote, a, b) = two_clones(&sb);
    config(&sb, &a.path, &b.path);
    let _d = sb.start();
    a.write("from-a.md", "written on a\n");
    wait_for(Duration::from_secs(20), "a's edit in b's work tree", || {
        (read(&b, "from-a.md").as_deref() == Some("written on a\n")).then_some(())
    });
    // Concurrent edits of different files on both sides.
    a.write("only-a.md", "a\n");
    b.write("only-b.md", "b\n");
    wait_for(Duration::from_secs(30), "both files on both sides", || {
        let ok = [&a, &b].iter().all(|r| {
            read(r, "only-a.md").as_deref() == Some("a\n")
                && read(r, "only-b.md").as_deref() == Some("b\n")
        });
        ok.then_some(())
    });
    wait_for(Duration::from_secs(20), "both pushed to the remote", || {
        let tree = remote.git(&["ls-tree", "-r", "--name-only", "main"]);
        (tree.contains("only-a.md") && tree.contains("only-b.md")).then_some(())
    });
    let mut c = sb.client();
    let st = c.status_of("a");
    assert_eq!(st["sync"]["remote"], json!("origin"), "{st}");
    assert_eq!(st["sync"]["state"], json!("ok"), "{st}");
    assert!(st["sync"]["last_sync"].is_string(), "{st}");
    for r in [&a, &b, &remote] {
        r.assert_fsck_clean();
    }
}

#[test]
fn conflicting_edits_diverge_without_touching_files_then_resume() {
    let sb = Sandbox::new();
    let (_remote, a, b) = two_clones(&sb);
    // Both sides edit README.md before any daemon runs: a real conflict.
    a.write("README.md", "version a\n");
    a.git(&["commit", "-q", "-am", "a's edit"]);
    a.git(&["push", "-q", "origin", "main"]);
    b.write("README.md", "version b\n");
    b.git(&["commit", "-q", "-am", "b's edit"]);
    sb.write_config("", &[("b", &b.path, SYNC)]);
    let _d = sb.start();
    let mut c = sb.client();
    let resp = c.ok("sync", json!({"notebook": "b"}));
    assert_eq!(resp["integrated"], json!("diverged"), "{resp}");
    assert_eq!(
        read(&b, "README.md").as_deref(),
        Some("version b\n"),
        "sync must not touch the work tree"
    );
    let diverged = "refs/gitlockd/diverged/origin/main";
    let remote_side = b.git(&["rev-parse", diverged]);
    assert_eq!(
        remote_side,
        a.git(&["rev-parse", "HEAD"]),
        "the remote side stays reachable"
    );
    assert_eq!(c.status_of("b")["sync"]["state"], json!("diverged"));
    // Local commits go on while diverged.
    b.write("more.md", "still committing\n");
    b.wait_committed("more.md", "still committing\n");
    all_blobs_free_of_conflict_markers(&b);
    // The user resolves by hand, under the lock.
    let script = format!(
        "git merge -q {diverged} >/dev/null 2>&1; printf 'merged\\n' > README.md && git add README.md && git commit -q -m resolve"
    );
    let mut cmd = sb.command(&[
        "--socket",
        sb.socket.to_str().unwrap(),
        "lock",
        "b",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let out = cmd.current_dir(&b.path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The next sync (scheduled or requested) pushes the resolution.
    let resp = c.ok("sync", json!({"notebook": "b"}));
    assert_ne!(resp["integrated"], json!("diverged"), "{resp}");
    assert_eq!(resp["ahead"], json!(0), "everything pushed: {resp}");
    let remote = Repo {
        path: sb.root.join("books/remote.git"),
        env: sb.env.clone(),
    };
    assert_eq!(
        remote.git(&["rev-parse", "main"]),
        b.git(&["rev-parse", "HEAD"])
    );
    assert_eq!(c.status_of("b")["sync"]["state"], json!("ok"));
    all_blobs_free_of_conflict_markers(&b);
    b.assert_fsck_clean();
}

#[test]
fn unreachable_remote_loses_nothing() {
    let sb = Sandbox::new();
    let (remote, a, _b) = two_clones(&sb);
    sb.write_config("", &[("a", &a.path, SYNC)]);
    let _d = sb.start();
    let away = remote.path.with_extension("away");
    std::fs::rename(&remote.path, &away).unwrap();
    a.write("offline.md", "written offline\n");
    a.wait_committed("offline.md", "written offline\n");
    let mut c = sb.client();
    wait_for(Duration::from_secs(20), "sync error in status", || {
        (c.status_of("a")["sync"]["state"] == json!("error")).then_some(())
    });
    c.err("sync", json!({"notebook": "a"}), "git");
    std::fs::rename(&away, &remote.path).unwrap();
    let resp = c.ok("sync", json!({"notebook": "a"}));
    assert_eq!(resp["pushed"], json!(true), "{resp}");
    let tree = remote.git(&["ls-tree", "-r", "--name-only", "main"]);
    assert!(tree.contains("offline.md"), "{tree}");
    remote.assert_fsck_clean();
}

#[test]
fn sync_off_is_reported_and_refused() {
    let sb = Sandbox::new();
    let nb = sb.repo("plain");
    sb.write_config("", &[("plain", &nb.path, "")]);
    let _d = sb.start();
    let mut c = sb.client();
    assert!(c.status_of("plain")["sync"].is_null());
    c.err("sync", json!({"notebook": "plain"}), "bad_request");
}

#[test]
fn no_sync_runs_while_a_client_holds_the_lock() {
    let sb = Sandbox::new();
    let (_remote, a, b) = two_clones(&sb);
    sb.write_config("", &[("b", &b.path, SYNC)]);
    let _d = sb.start();
    let mut holder = sb.client();
    holder.ok("lock", json!({"notebook": "b"}));
    let tracking = b.git(&["rev-parse", "refs/remotes/origin/main"]);
    a.write("news.md", "news\n");
    a.git(&["add", "-A"]);
    a.git(&["commit", "-q", "-m", "news"]);
    a.git(&["push", "-q", "origin", "main"]);
    // Three pull intervals pass: no fetch, no file change while held.
    let end = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < end {
        assert_eq!(
            b.git(&["rev-parse", "refs/remotes/origin/main"]),
            tracking,
            "a fetch ran inside a hold"
        );
        assert!(
            read(&b, "news.md").is_none(),
            "sync changed the work tree inside a hold"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    holder.ok("unlock", json!({"notebook": "b"}));
    wait_for(
        Duration::from_secs(20),
        "the sync after the release",
        || (read(&b, "news.md").as_deref() == Some("news\n")).then_some(()),
    );
}
