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
        (b.read("from-a.md").as_deref() == Some("written on a\n")).then_some(())
    });
    // Concurrent edits of different files on both sides.
    a.write("only-a.md", "a\n");
    b.write("only-b.md", "b\n");
    wait_for(Duration::from_secs(30), "both files on both sides", || {
        let ok = [&a, &b].iter().all(|r| {
            r.read("only-a.md").as_deref() == Some("a\n")
                && r.read("only-b.md").as_deref() == Some("b\n")
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
    let _d = sb.serve_one("b", &b, SYNC);
    let mut c = sb.client();
    let resp = c.ok("sync", json!({"notebook": "b"}));
    assert_eq!(resp["integrated"], json!("diverged"), "{resp}");
    assert_eq!(
        b.read("README.md").as_deref(),
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
    let _d = sb.serve_one("a", &a, SYNC);
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
    let _d = sb.serve_one("plain", &nb, "");
    let mut c = sb.client();
    assert!(c.status_of("plain")["sync"].is_null());
    c.err("sync", json!({"notebook": "plain"}), "bad_request");
}

#[test]
fn no_sync_runs_while_a_client_holds_the_lock() {
    let sb = Sandbox::new();
    let (_remote, a, b) = two_clones(&sb);
    let _d = sb.serve_one("b", &b, SYNC);
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
            b.read("news.md").is_none(),
            "sync changed the work tree inside a hold"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    holder.ok("unlock", json!({"notebook": "b"}));
    wait_for(
        Duration::from_secs(20),
        "the sync after the release",
        || (b.read("news.md").as_deref() == Some("news\n")).then_some(()),
    );
}

#[test]
fn merge_commits_made_by_sync_carry_the_notebook_author() {
    let sb = Sandbox::new();
    let (remote, a, b) = two_clones(&sb);
    a.write("from-a.md", "a\n");
    let ca = a.commit_all("a's file");
    a.git(&["push", "-q", "origin", "main"]);
    b.write("from-b.md", "b\n");
    let cb = b.commit_all("b's file");
    let extra =
        format!("author_name = \"Notebook Bot\"\nauthor_email = \"bot@example.org\"\n{SYNC}");
    sb.write_config("", &[("b", &b.path, &extra)]);
    let _d = sb.start();
    let merge = wait_for(
        Duration::from_secs(20),
        "b's sync merges a's commit",
        || {
            let parents = b.git(&["rev-list", "--parents", "-n", "1", "HEAD"]);
            (parents.split_whitespace().count() == 3).then_some(parents)
        },
    );
    assert!(merge.ends_with(&format!("{cb} {ca}")), "{merge}");
    assert_eq!(
        b.git(&["log", "-1", "--format=%an <%ae>|%cn <%ce>", "HEAD"]),
        "Notebook Bot <bot@example.org>|Notebook Bot <bot@example.org>"
    );
    wait_for(Duration::from_secs(20), "the merge pushed", || {
        (remote.git(&["rev-parse", "main"]) == b.git(&["rev-parse", "HEAD"])).then_some(())
    });
    assert_eq!(b.read("from-a.md").as_deref(), Some("a\n"));
    assert_eq!(b.status_porcelain(), "");
    b.assert_fsck_clean();
}

#[test]
fn ahead_counts_a_fresh_auto_commit_at_once_while_the_push_waits() {
    let sb = Sandbox::new();
    let (remote, a, _b) = two_clones(&sb);
    let slow_push =
        "[notebook.sync]\nremote = \"origin\"\npush_delay = \"1h\"\npull_interval = \"1h\"\n";
    sb.write_config("", &[("a", &a.path, slow_push)]);
    let _d = sb.start();
    let mut c = sb.client();
    // The first sync (right after start) is done: what follows waits for push_delay.
    wait_for(Duration::from_secs(20), "the first sync", || {
        c.status_of("a")["sync"]["last_sync"]
            .is_string()
            .then_some(())
    });
    let pushed = remote.git(&["rev-parse", "main"]);
    for (n, file) in [(1, "one.md"), (2, "two.md")] {
        a.write(file, "local\n");
        a.wait_committed(file, "local\n");
        wait_for(
            Duration::from_secs(5),
            &format!("status sync.ahead = {n}"),
            || {
                let st = c.status_of("a");
                (st["sync"]["ahead"] == json!(n) && st["sync"]["behind"] == json!(0)).then_some(())
            },
        );
    }
    assert_eq!(
        remote.git(&["rev-parse", "main"]),
        pushed,
        "nothing pushed yet"
    );
}

/// The process group of `pid` (field 5 of /proc/PID/stat).
fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// Whether any live (not zombie) process is in process group `pgrp`.
fn group_alive(pgrp: i32) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let Ok(stat) = std::fs::read_to_string(p.path().join("stat")) else {
            return false;
        };
        let Some(close) = stat.rfind(')') else {
            return false;
        };
        let mut f = stat[close + 1..].split_whitespace();
        let state = f.next();
        f.nth(1).and_then(|g| g.parse::<i32>().ok()) == Some(pgrp) && state != Some("Z")
    })
}

/// issue 10 item 9: a kill -9 in the middle of a sync checkout (as a
/// systemd stop kills the whole cgroup, the git child included) leaves
/// index.lock behind, and the file being rewritten missing (git unlinks the
/// old version before its smudge filter runs). The sync's crash marker lets
/// the next start remove the lock; its checkout note lets it put the file
/// back before the catch-up commit, so no deletion is committed; the sync
/// then completes.
#[test]
fn a_kill_during_a_sync_checkout_is_recovered_at_the_next_start() {
    let sb = Sandbox::new();
    let (_remote, a, b) = two_clones(&sb);
    // A smudge filter that stops on version 2 of a file until released.
    let pidfile = sb.root.join("smudge.pid");
    let release = sb.root.join("release");
    let script = sb.root.join("block.sh");
    std::fs::write(
        &script,
        format!(
            concat!(
                "#!/bin/sh\n",
                "c=$(cat)\n",
                "case \"$c\" in *v2*) if [ ! -e '{r}' ]; then\n",
                "  echo $$ > '{p}'\n",
                "  i=0\n",
                "  while [ ! -e '{r}' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n",
                "fi;; esac\n",
                "printf '%s\\n' \"$c\"\n",
            ),
            r = release.display(),
            p = pidfile.display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).unwrap();
    b.git(&["config", "filter.block.smudge", script.to_str().unwrap()]);
    b.git(&["config", "filter.block.clean", "cat"]);
    a.write(".gitattributes", "*.slow filter=block\n");
    a.write("late.slow", "v1\n");
    a.commit_all("a slow file, v1");
    a.git(&["push", "-q", "origin", "main"]);
    b.git(&["pull", "-q", "--no-rebase", "origin", "main"]);
    assert_eq!(b.read("late.slow").as_deref(), Some("v1\n"));
    a.write("late.slow", "v2\n");
    let ca = a.commit_all("the slow file, v2");
    a.git(&["push", "-q", "origin", "main"]);

    sb.write_config("", &[("b", &b.path, SYNC)]);
    let mut d = sb.start();
    let smudge_pid: i32 = wait_for(
        Duration::from_secs(20),
        "the sync's checkout smudging",
        || {
            std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        },
    );
    let git_dir = b.path.join(".git");
    let marker = std::fs::read_to_string(git_dir.join(gitlockd::recovery::MARKER))
        .expect("the crash marker is written during a sync checkout");
    assert!(
        marker.starts_with(&format!("{} ", d.pid())),
        "marker {marker:?} names the daemon {}",
        d.pid()
    );
    assert!(
        git_dir.join("index.lock").exists(),
        "the checkout holds the index"
    );
    assert!(git_dir.join(gitlockd::sync::CHECKOUT_NOTE).exists());
    assert!(
        b.read("late.slow").is_none(),
        "git unlinked v1 before smudging v2"
    );

    d.kill9();
    let pgrp = process_group(smudge_pid).expect("the smudge filter's group");
    // SAFETY: a plain kill(2) of the git checkout's own process group (it
    // runs in its own session), as a systemd stop of the cgroup would.
    unsafe {
        libc::kill(-pgrp, libc::SIGKILL);
    }
    wait_for(Duration::from_secs(10), "the git checkout killed", || {
        (!group_alive(pgrp)).then_some(())
    });
    assert!(
        git_dir.join("index.lock").exists(),
        "a killed checkout leaves index.lock behind"
    );

    std::fs::write(&release, "").unwrap();
    let d = sb.start();
    d.wait_log(
        "recovered from an interrupted write",
        Duration::from_secs(20),
    );
    d.wait_log(
        "restored files an interrupted sync checkout had removed",
        Duration::from_secs(20),
    );
    wait_for(
        Duration::from_secs(30),
        "the sync completed after the restart",
        || {
            let has_a = b
                .git_output(&["merge-base", "--is-ancestor", &ca, "HEAD"])
                .status
                .success();
            (has_a
                && b.read("late.slow").as_deref() == Some("v2\n")
                && b.status_porcelain().is_empty())
            .then_some(())
        },
    );
    assert_eq!(
        b.git(&[
            "log",
            "--diff-filter=D",
            "--format=%h %s",
            "--",
            "late.slow"
        ]),
        "",
        "no commit deletes the file the crash had unlinked"
    );
    assert!(!git_dir.join("index.lock").exists());
    assert!(!git_dir.join(gitlockd::sync::CHECKOUT_NOTE).exists());
    b.assert_fsck_clean();
}
