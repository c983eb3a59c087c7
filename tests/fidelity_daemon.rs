//! Issue 9 through the real daemon: tracked-but-ignored files are committed
//! on save, a rejecting hook keeps the change pending with its reason in
//! `last_error`, status says which path commits, and a repository that needs
//! `git` is refused at start (and by check-config) when there is none.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::json;
use support::*;

#[test]
fn tracked_ignored_files_are_committed_on_save_untracked_ignored_never() {
    let sb = Sandbox::new();
    let repo = sb.repo("nb");
    repo.write(".gitignore", "*.log\nbuild/\n");
    repo.write("keep.log", "v1\n");
    repo.write("build/out.txt", "o1\n");
    repo.write("a.md", "a\n");
    repo.git(&["add", "-A"]);
    repo.git(&["add", "-f", "keep.log", "build/out.txt"]);
    repo.git(&["commit", "-q", "-m", "start"]);
    sb.write_config("", &[("nb", &repo.path, "")]);
    let _d = sb.start();

    repo.write("keep.log", "v2\n");
    repo.wait_committed("keep.log", "v2\n");
    // Inside an ignored directory that holds a tracked file.
    repo.write("build/out.txt", "o2\n");
    repo.wait_committed("build/out.txt", "o2\n");
    repo.write("other.log", "never\n");
    repo.write("build/new.txt", "never\n");
    repo.write("a.md", "b\n");
    repo.wait_committed("a.md", "b\n");
    assert_eq!(repo.blob("other.log"), None);
    assert_eq!(repo.blob("build/new.txt"), None);
    // A deletion of a tracked ignored file is committed too.
    std::fs::remove_file(repo.path.join("keep.log")).unwrap();
    wait_for(
        Duration::from_secs(10),
        "keep.log deletion committed",
        || repo.blob("keep.log").is_none().then_some(()),
    );
    repo.assert_fsck_clean();
}

fn hook(repo: &Repo, name: &str, body: &str) {
    let path = repo.path.join(".git/hooks").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_rejecting_hook_keeps_the_change_pending_until_the_next_save_fixes_it() {
    let sb = Sandbox::new();
    let repo = sb.repo("nb");
    repo.write("a.md", "a\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "start"]);
    hook(
        &repo,
        "pre-commit",
        "if git diff --cached | grep -q SECRET; then echo 'pre-commit: SECRET found' >&2; exit 1; fi",
    );
    sb.write_config("", &[("nb", &repo.path, "")]);
    let _d = sb.start();
    let mut c = sb.client();
    let st = c.status_of("nb");
    assert_eq!(st["commit_via"], "git", "{st}");
    assert_eq!(st["git_features"], json!(["pre-commit hook"]), "{st}");

    let head = repo.head();
    repo.write("a.md", "SECRET\n");
    let st = c.wait_last_error("nb", &["pre-commit: SECRET found"]);
    assert_eq!(repo.head(), head, "nothing committed");
    assert!(st["pending"].as_u64().unwrap() >= 1, "{st}");
    repo.write("a.md", "clean\n");
    repo.wait_committed("a.md", "clean\n");
    c.wait_error_cleared("nb");
    assert!(!repo.git(&["log", "--format=%B"]).contains("SECRET"));
}

#[test]
fn hooks_false_skips_the_hooks() {
    let sb = Sandbox::new();
    let repo = sb.repo("nb");
    repo.write("a.md", "a\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "start"]);
    hook(&repo, "pre-commit", "echo 'always refuses' >&2; exit 1");
    sb.write_config("hooks = false", &[("nb", &repo.path, "")]);
    let _d = sb.start();
    repo.write("a.md", "b\n");
    repo.wait_committed("a.md", "b\n");
    let st = sb.client().status_of("nb");
    assert_eq!(st["commit_via"], "libgit2", "{st}");
}

#[test]
fn a_repository_needing_git_is_refused_without_git() {
    let sb = Sandbox::new();
    let repo = sb.repo("nb");
    repo.git(&["config", "commit.gpgsign", "true"]);
    sb.write_config("", &[("nb", &repo.path, "")]);
    // A PATH without git.
    let empty = sb.root.join("nopath");
    std::fs::create_dir_all(&empty).unwrap();
    let out = sb
        .command(&["check-config", "--config", sb.config.to_str().unwrap()])
        .env("PATH", &empty)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stdout.contains("commits through git: commit.gpgsign"),
        "{stdout}"
    );
    assert!(
        stderr.contains("commit.gpgsign") && stderr.contains("install git"),
        "{stderr}"
    );

    // The daemon itself stays up (another notebook would keep working): the
    // notebook is refused, shown in status with the reason, and retried.
    let mut d = sb.spawn(&[("PATH", empty.to_str().unwrap())]);
    d.wait_ready(&sb);
    let st = sb.client().status_of("nb");
    assert_eq!(st["state"], json!("error"), "{st}");
    let err = st["last_error"].as_str().unwrap_or_default().to_string();
    assert!(
        err.contains("commit.gpgsign") && err.contains("install git"),
        "{st}"
    );
    let log = d.log_text();
    assert!(
        log.contains("commit.gpgsign") && log.contains("install git"),
        "{log}"
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(20)), Some(0));

    // With git in PATH, check-config passes and says which path commits.
    assert_eq!(sb.check_config().code, Some(0));
}

#[test]
fn a_failing_filter_holds_back_only_its_file_and_commits_it_once_it_works() {
    let sb = Sandbox::new();
    let repo = sb.repo("nb");
    let flag = repo.path.join(".git/locked");
    repo.git(&[
        "config",
        "filter.crypt.clean",
        &format!(
            "sh -c 'if [ -e {} ]; then echo \"git-crypt: repository is locked\" >&2; exit 1; fi; tr a-z n-za-m'",
            flag.display()
        ),
    ]);
    repo.git(&["config", "filter.crypt.required", "true"]);
    repo.write(".gitattributes", "*.sec filter=crypt\n");
    repo.write("a.md", "a\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "start"]);
    std::fs::write(&flag, "").unwrap();
    sb.write_config("", &[("nb", &repo.path, "")]);
    let _d = sb.start();
    let mut c = sb.client();

    repo.write("k.sec", "secret\n");
    repo.write("a.md", "plain change\n");
    repo.wait_committed("a.md", "plain change\n");
    let st = c.wait_last_error("nb", &["k.sec", "repository is locked"]);
    assert!(st["pending"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(repo.blob("k.sec"), None);
    // Unlocked: the next change (or the backoff) commits it, encrypted.
    std::fs::remove_file(&flag).unwrap();
    repo.write("k.sec", "secret2\n");
    repo.wait_committed("k.sec", "frperg2\n");
    c.wait_error_cleared("nb");
    repo.assert_fsck_clean();
    // The plaintext never entered the object database.
    for text in ["secret\n", "secret2\n"] {
        let probe = repo.path.join(".git/probe");
        std::fs::write(&probe, text).unwrap();
        let id = repo.git(&["hash-object", "--no-filters", probe.to_str().unwrap()]);
        assert!(
            !repo.git_output(&["cat-file", "-e", &id]).status.success(),
            "{text:?} is in the odb"
        );
    }
}
