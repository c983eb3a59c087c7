//! Daily use against the real daemon: restore / undo (new commits, never a
//! rewrite), pause that outlives a restart, `pause --for`, `status
//! --pending`, `diff` by the committer's rules, `events`, local times.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::{ok, text, wait_for, Daemon, Repo, Sandbox};

const LONG: Duration = Duration::from_secs(20);

/// A notebook `nb` whose first commit "base" (made by git) holds `a.md`
/// ("a\n"), served with `extra` in its config entry. Bind all three: the
/// daemon is dropped first, so a failure prints its log, then the repository.
fn nb_with_a(extra: &str) -> (Sandbox, Repo, Daemon) {
    let sb = Sandbox::new();
    let r = sb.repo("nb");
    r.write("a.md", "a\n");
    commit_at(&r, "base", 0);
    let d = sb.serve_one("nb", &r, extra);
    (sb, r, d)
}

/// Commits everything with git, at `secs_ago` seconds in the past.
fn commit_at(r: &Repo, message: &str, secs_ago: u64) -> String {
    let when = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - secs_ago;
    let date = format!("@{when} +0000");
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(&r.path);
    for (k, v) in &r.env {
        cmd.env(k, v);
    }
    cmd.env("GIT_COMMITTER_DATE", &date)
        .env("GIT_AUTHOR_DATE", &date);
    let out = cmd
        .args(["add", "-A"])
        .output()
        .and_then(|_| {
            let mut cmd = Command::new("git");
            cmd.arg("-C").arg(&r.path);
            for (k, v) in &r.env {
                cmd.env(k, v);
            }
            cmd.env("GIT_COMMITTER_DATE", &date)
                .env("GIT_AUTHOR_DATE", &date)
                .args(["commit", "-q", "-m", message])
                .output()
        })
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    r.head().unwrap()
}

fn is_ancestor(r: &Repo, old: &str, new: &str) -> bool {
    r.git_output(&["merge-base", "--is-ancestor", old, new])
        .status
        .success()
}

#[test]
fn restore_writes_an_old_version_as_a_new_commit_and_keeps_the_current_one() {
    let sb = Sandbox::new();
    let r = sb.repo("nb");
    r.write("a.md", "one\n");
    let first = commit_at(&r, "one", 0);
    r.write("a.md", "two\n");
    commit_at(&r, "two", 0);
    let _d = sb.serve_one("nb", &r, "");
    // An edit the daemon has not committed yet must survive the restore.
    ok(sb.gl(&["pause", "nb"]));
    r.write("a.md", "three, not committed\n");
    let before = r.head().unwrap();

    let out = ok(sb.gl(&["restore", "nb", "a.md", "--rev", &first]));
    let new = r.head().unwrap();
    assert_eq!(out.trim(), new, "prints the new commit");
    assert_eq!(r.read("a.md").as_deref(), Some("one\n"));
    assert_eq!(r.blob("a.md").as_deref(), Some("one\n"));
    assert!(is_ancestor(&r, &before, &new), "history was only added to");
    assert_eq!(r.git(&["show", "HEAD~1:a.md"]), "three, not committed");
    assert!(r
        .git(&["log", "-1", "--format=%s"])
        .contains("restore a.md"));
    assert_eq!(r.status_porcelain(), "");

    // Already as it was: nothing to commit.
    let out = ok(sb.gl(&["restore", "nb", "a.md", "--rev", &first]));
    assert!(out.contains("nothing to commit"), "{out}");
    assert_eq!(r.head().unwrap(), new);

    // A path the revision does not have: not found, nothing written.
    let out = sb.gl(&["restore", "nb", "nope.md", "--rev", &first]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("nope.md"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(r.head().unwrap(), new);
    r.assert_fsck_clean();
}

#[test]
fn restore_at_takes_the_state_of_that_time() {
    let sb = Sandbox::new();
    let r = sb.repo("nb");
    r.write("a.md", "three hours ago\n");
    commit_at(&r, "old", 3 * 3600);
    r.write("a.md", "one hour ago\n");
    commit_at(&r, "newer", 3600);
    r.write("a.md", "now\n");
    commit_at(&r, "now", 0);
    let _d = sb.serve_one("nb", &r, "");

    ok(sb.gl(&["restore", "nb", "a.md", "--at", "2h"]));
    assert_eq!(r.read("a.md").as_deref(), Some("three hours ago\n"));
    assert_eq!(r.blob("a.md").as_deref(), Some("three hours ago\n"));
    ok(sb.gl(&["restore", "nb", "a.md", "--at", "30m"]));
    assert_eq!(r.blob("a.md").as_deref(), Some("one hour ago\n"));

    // Older than the history: not found, naming where it starts and the fix.
    let out = sb.gl(&["restore", "nb", "a.md", "--at", "100h"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the history starts at")
            && text(&out.stderr).contains("use a shorter --at"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn restore_goes_through_gits_smudge_filter() {
    let sb = Sandbox::new();
    let r = sb.repo("nb");
    // Stored upper case, checked out lower case: a raw blob in the work
    // tree would show upper case.
    r.git(&["config", "filter.shout.clean", "tr a-z A-Z"]);
    r.git(&["config", "filter.shout.smudge", "tr A-Z a-z"]);
    r.write(".gitattributes", "*.txt filter=shout\n");
    r.write("f.txt", "quiet words\n");
    let first = commit_at(&r, "first", 0);
    r.write("f.txt", "other words\n");
    commit_at(&r, "second", 0);
    assert_eq!(r.blob("f.txt").as_deref(), Some("OTHER WORDS\n"));
    let _d = sb.serve_one("nb", &r, "");

    ok(sb.gl(&["restore", "nb", "f.txt", "--rev", &first]));
    assert_eq!(r.read("f.txt").as_deref(), Some("quiet words\n"));
    assert_eq!(r.blob("f.txt").as_deref(), Some("QUIET WORDS\n"));
    assert_eq!(r.status_porcelain(), "");
}

#[test]
fn undo_reverts_a_commit_as_a_new_commit() {
    let sb = Sandbox::new();
    let r = sb.repo("nb");
    r.write("a.md", "a1\n");
    r.write("keep.md", "keep\n");
    commit_at(&r, "base", 0);
    r.write("a.md", "a2\n");
    r.write("b.md", "added\n");
    let target = commit_at(&r, "change a, add b", 0);
    r.write("keep.md", "keep, later\n");
    let later = commit_at(&r, "later, other file", 0);
    let _d = sb.serve_one("nb", &r, "");

    let out = ok(sb.gl(&["undo", "nb", &target]));
    let new = r.head().unwrap();
    assert_eq!(out.trim(), new);
    assert!(is_ancestor(&r, &later, &new));
    assert_eq!(r.read("a.md").as_deref(), Some("a1\n"));
    assert!(!r.path.join("b.md").exists());
    assert_eq!(r.blob("b.md"), None);
    assert_eq!(r.blob("keep.md").as_deref(), Some("keep, later\n"));
    let message = r.git(&["log", "-1", "--format=%B"]);
    assert!(message.contains(&target), "{message}");
    assert_eq!(r.status_porcelain(), "");

    // Default: HEAD (the undo itself) is undone, bringing the change back.
    ok(sb.gl(&["undo", "nb"]));
    assert_eq!(r.read("a.md").as_deref(), Some("a2\n"));
    assert_eq!(r.read("b.md").as_deref(), Some("added\n"));
    r.assert_fsck_clean();
}

#[test]
fn undo_refuses_when_a_file_changed_since_and_writes_nothing() {
    let sb = Sandbox::new();
    let r = sb.repo("nb");
    r.write("a.md", "a1\n");
    commit_at(&r, "base", 0);
    r.write("a.md", "a2\n");
    let target = commit_at(&r, "a2", 0);
    r.write("a.md", "a3\n");
    commit_at(&r, "a3", 0);
    let _d = sb.serve_one("nb", &r, "");
    let head = r.head().unwrap();

    let out = sb.gl(&["undo", "nb", &target]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("a.md") && err.contains("later commit"),
        "{err}"
    );
    assert_eq!(r.head().unwrap(), head);
    assert_eq!(r.read("a.md").as_deref(), Some("a3\n"));

    // Not committed yet (paused): refused too, the edit untouched.
    ok(sb.gl(&["pause", "nb"]));
    r.write("a.md", "a4, not committed\n");
    let out = sb.gl(&["undo", "nb"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not committed yet"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(r.read("a.md").as_deref(), Some("a4, not committed\n"));
    assert_eq!(r.head().unwrap(), head);
    // No conflict markers, nothing half-done.
    assert!(!r.path.join(".git/MERGE_HEAD").exists());
}

#[test]
fn a_pause_survives_a_restart_and_resume_commits_what_collected() {
    let (sb, r, mut d) = nb_with_a("");
    ok(sb.gl(&["pause", "nb"]));
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(LONG), Some(0));
    r.write("a.md", "written while stopped and paused\n");
    let head = r.head().unwrap();

    let _d = sb.start();
    let mut c = sb.client();
    wait_for(LONG, "the notebook to be open", || {
        let s = c.ok("status", json!({}));
        (s["notebooks"].as_array().unwrap().len() == 1).then_some(())
    });
    assert_eq!(c.status_of("nb")["paused"], json!(true));
    r.assert_head_stays(Duration::from_millis(800), "paused across the restart");
    assert_eq!(r.head().unwrap(), head);

    // A reload keeps it too.
    ok(sb.gl(&["reload"]));
    assert_eq!(sb.client().status_of("nb")["paused"], json!(true));

    ok(sb.gl(&["resume", "nb"]));
    r.wait_committed("a.md", "written while stopped and paused\n");
    assert_eq!(sb.client().status_of("nb")["paused"], json!(false));
}

#[test]
fn pause_for_ends_by_itself_and_commits() {
    let (sb, r, _d) = nb_with_a("");
    let out = ok(sb.gl(&["pause", "nb", "--for", "2s"]));
    assert!(out.contains("paused until"), "{out}");
    let status = sb.client().status_of("nb");
    assert_eq!(status["paused"], json!(true));
    assert!(status["paused_until"].is_string(), "{status}");
    r.write("a.md", "during the pause\n");
    support::holds_for(Duration::from_millis(800), "no commit while paused", || {
        r.blob("a.md").as_deref() == Some("a\n")
    });
    r.wait_committed("a.md", "during the pause\n");
    assert_eq!(sb.client().status_of("nb")["paused"], json!(false));
}

#[test]
fn status_pending_and_diff_follow_the_committers_rules() {
    let (sb, r, _d) = nb_with_a("ignore = [\"*.tmp\"]");
    ok(sb.gl(&["pause", "nb"]));
    r.write("a.md", "changed\n");
    r.write("new.md", "new\n");
    r.write("scratch.tmp", "ignored by glob\n");
    r.write(".a.md.swp", "editor temporary\n");

    let out = ok(sb.gl(&["status", "--pending"]));
    assert!(out.contains("nb: 2 pending"), "{out}");
    assert!(
        out.contains("  a.md\n") && out.contains("  new.md\n"),
        "{out}"
    );
    assert!(
        !out.contains("scratch.tmp") && !out.contains(".swp"),
        "{out}"
    );
    let json_out: Value =
        serde_json::from_str(&ok(sb.gl(&["status", "--json", "--pending"]))).unwrap();
    assert_eq!(
        json_out["notebooks"][0]["pending_paths"],
        json!(["a.md", "new.md"])
    );

    let diff = ok(sb.gl(&["diff", "nb"]));
    assert!(diff.contains("+changed") && diff.contains("+new"), "{diff}");
    assert!(
        !diff.contains("scratch.tmp") && !diff.contains(".swp"),
        "{diff}"
    );
}

/// Reads `gitlockd events --json` lines until one satisfies `want`.
fn wait_event(rx: &mpsc::Receiver<String>, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {what} event within {LONG:?}"));
        let event: Value = serde_json::from_str(&line).unwrap();
        if want(&event) {
            return event;
        }
    }
}

#[test]
fn events_stream_commits_errors_and_sync_failures() {
    let sb = Sandbox::new();
    let r = sb.repo("nb");
    r.write("a.md", "a\n");
    commit_at(&r, "base", 0);
    r.git(&["remote", "add", "origin", "/nonexistent/remote.git"]);
    let _d = sb.serve_one(
        "nb",
        &r,
        "[notebook.sync]\nremote = \"origin\"\nbranch = \"main\"\npull_interval = \"0s\"\n",
    );
    let mut child = sb
        .command(&[
            "--socket",
            sb.socket.to_str().unwrap(),
            "events",
            "nb",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    // The subscription is in place once a lock event arrives.
    let mut c = sb.client();
    wait_for(LONG, "the events client to subscribe", || {
        c.ok("lock", json!({"notebook": "nb"}));
        c.ok("unlock", json!({"notebook": "nb"}));
        rx.recv_timeout(Duration::from_millis(300)).ok()
    });

    r.write("a.md", "b\n");
    let e = wait_event(&rx, "commit", |e| e["event"] == "commit");
    assert_eq!(e["notebook"], "nb");
    assert_eq!(e["paths"], json!(["a.md"]));

    // A pre-commit hook that refuses: a new error.
    std::fs::create_dir_all(r.path.join(".git/hooks")).unwrap();
    let hook = r.path.join(".git/hooks/pre-commit");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho refused by the test hook >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    r.write("a.md", "c\n");
    let e = wait_event(&rx, "error", |e| e["event"] == "error");
    assert_eq!(e["notebook"], "nb");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("refused by the test hook"),
        "{e}"
    );
    std::fs::remove_file(&hook).unwrap();

    // A sync that cannot reach its remote.
    let out = sb.gl(&["sync", "nb"]);
    assert_ne!(out.status.code(), Some(0));
    let e = wait_event(&rx, "sync", |e| e["event"] == "sync");
    assert_eq!(e["state"], "error");
    assert!(
        e["message"].as_str().unwrap().contains("nonexistent"),
        "{e}"
    );

    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn human_times_are_local() {
    let (sb, r, _d) = nb_with_a("");
    let secs = r.git(&["log", "-1", "--format=%at"]);
    // POSIX TZ: nine hours east of UTC, no tz database needed.
    let tz = "XYZ-9";
    let want = Command::new("date")
        .env("TZ", tz)
        .args(["-d", &format!("@{secs}"), "+%Y-%m-%d %H:%M:%S"])
        .output()
        .unwrap();
    let want = text(&want.stdout).trim().to_string();
    let out = sb
        .command(&["--socket", sb.socket.to_str().unwrap(), "log", "nb"])
        .env("TZ", tz)
        .output()
        .unwrap();
    let log = text(&out.stdout);
    assert!(!want.is_empty());
    assert!(log.contains(&want), "want {want} in {log}");
}

#[test]
fn a_mistyped_notebook_name_gets_a_suggestion() {
    let sb = Sandbox::new();
    let r = sb.repo("notes");
    r.write("a.md", "a\n");
    commit_at(&r, "base", 0);
    sb.write_config("", &[("notes", r.path.as_path(), "")]);
    let _d = sb.start();
    wait_for(LONG, "the notebook to be open", || {
        let s = sb.client().ok("status", json!({}));
        (s["notebooks"].as_array().unwrap().len() == 1).then_some(())
    });
    let out = sb.gl(&["log", "ntoes"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("did you mean \"notes\"?"), "{err}");
    let out = sb.gl(&["log", "zzzzzz"]);
    assert!(!text(&out.stderr).contains("did you mean"));
}

/// The README's divergence recipe, run as written (inside the notebook,
/// every conflicted file at once, EDITOR a script): it refuses to commit
/// while a conflict marker is left, and commits the merge once resolved.
#[test]
fn readme_divergence_recipe_resolves_many_files_and_refuses_markers() {
    let sb = Sandbox::new();
    let remote = sb.root.join("books/remote.git");
    let git_in = |dir: &std::path::Path, args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .envs(sb.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    };
    std::fs::create_dir_all(&remote).unwrap();
    git_in(&remote, &["init", "-q", "--bare", "-b", "main"]);
    let seed = sb.repo("seed");
    seed.write("README.md", "shared\n");
    seed.write("my notes.md", "shared\n");
    commit_at(&seed, "seed", 0);
    seed.git(&["push", "-q", remote.to_str().unwrap(), "main"]);
    let books = sb.root.join("books");
    git_in(&books, &["clone", "-q", remote.to_str().unwrap(), "a"]);
    git_in(&books, &["clone", "-q", remote.to_str().unwrap(), "b"]);
    let (a, b) = (
        sb.open_repo(&books.join("a")),
        sb.open_repo(&books.join("b")),
    );
    for (r, side) in [(&a, "a"), (&b, "b")] {
        r.write("README.md", &format!("version {side}\n"));
        r.write("my notes.md", &format!("notes {side}\n"));
        commit_at(r, &format!("{side}'s edit"), 0);
    }
    a.git(&["push", "-q", "origin", "main"]);
    let _d = sb.serve_one(
        "nb",
        &b,
        "[notebook.sync]\nremote = \"origin\"\npull_interval = \"0s\"\n",
    );
    let resp = sb.client().ok("sync", json!({"notebook": "nb"}));
    assert_eq!(resp["integrated"], "diverged", "{resp}");

    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("Resolving a divergence").unwrap();
    let block = &readme[start..];
    let block = &block[block.find("```sh\n").unwrap() + 6..];
    let recipe = block[..block.find("```").unwrap()].replace("~/notes", b.path.to_str().unwrap());
    let bin_dir = support::bin().parent().unwrap().to_path_buf();
    let run = |editor: &str| {
        let script_path = sb.root.join("editor.sh");
        std::fs::write(&script_path, format!("#!/bin/sh\n{editor}\n")).unwrap();
        std::fs::set_permissions(
            &script_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let recipe_path = sb.root.join("recipe.sh");
        std::fs::write(&recipe_path, &recipe).unwrap();
        // `xargs -o` gives the editor the terminal: run under a pty.
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
        let out = Command::new("script")
            .args([
                "-qec",
                &format!("sh {}", recipe_path.display()),
                "/dev/null",
            ])
            .env_clear()
            .envs(sb.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PATH", path)
            .env("GITLOCKD_SOCKET", &sb.socket)
            .env("EDITOR", &script_path)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.code(), text(&out.stdout))
    };
    let head = b.head().unwrap();

    // An editor that fixes one file only: refused, nothing committed.
    let (code, out) = run(r#"printf 'fixed\n' > "$1""#);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("conflict markers left"), "{out}");
    assert_eq!(b.head().unwrap(), head);
    b.git(&["merge", "--abort"]);

    // An editor that resolves every file it is given.
    let (code, out) = run(r#"for f in "$@"; do printf 'resolved\n' > "$f"; done"#);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        b.git(&["rev-list", "--parents", "-n1", "HEAD"])
            .split(' ')
            .count(),
        3
    );
    assert_eq!(b.blob("README.md").as_deref(), Some("resolved\n"));
    assert_eq!(b.blob("my notes.md").as_deref(), Some("resolved\n"));
    assert_eq!(b.status_porcelain(), "");
    b.assert_fsck_clean();
}
