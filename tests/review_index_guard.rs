//! Safety review of the index guard (git/index.rs) and of the index kept in
//! memory between commits (git/index_cache.rs): whatever the `git` CLI
//! writes to the index between two of gitlockd's commits must survive them,
//! and must not go into gitlockd's commits either.

mod git_util;

use std::path::PathBuf;

use git_util::*;
use gitlockd::git::GitError;

/// `git diff --cached --name-status` (what the user has staged).
fn staged(d: &std::path::Path) -> String {
    git(d, &["diff", "--cached", "--name-status"])
}

#[test]
fn staging_by_git_between_two_commits_survives_the_second() {
    let (dir, gm) = notebook();
    let d = dir.path();
    write(d, "a.md", "a\n");
    write(d, "b.md", "b\n");
    write(d, "x.sh", "x\n");
    auto(&gm, &["a.md", "b.md", "x.sh"]);
    // The commit above left its index in gitlockd's memory. Now the user
    // stages by hand, within the same second, keeping the index's size:
    write(d, "b.md", "B\n");
    git(d, &["add", "b.md"]);
    git(d, &["update-index", "--chmod=+x", "x.sh"]);
    let before = staged(d);
    assert_eq!(before, "M\tb.md\nM\tx.sh\n");
    // gitlockd commits another file.
    write(d, "c.md", "c\n");
    let outcome = auto(&gm, &["c.md"]);
    assert!(outcome.commit.is_some());
    assert_eq!(
        git(d, &["show", "--name-only", "--format=", "HEAD"]),
        "c.md\n"
    );
    assert_eq!(git(d, &["show", "HEAD:b.md"]), "b\n");
    // The user's staging is still there, untouched.
    assert_eq!(staged(d), before, "{}", report(d));
    assert_eq!(git(d, &["ls-files", "-s", "x.sh"]).get(..6), Some("100755"));
    // And a removal from the index by git (`git rm --cached`) too.
    git(d, &["rm", "-q", "--cached", "a.md"]);
    write(d, "e.md", "e\n");
    auto(&gm, &["e.md"]);
    assert_eq!(staged(d), "D\ta.md\nM\tb.md\nM\tx.sh\n", "{}", report(d));
    assert_eq!(git(d, &["show", "HEAD:a.md"]), "a\n");
    assert_fsck_clean(d);
}

#[test]
fn a_commit_by_git_between_two_commits_is_never_reverted() {
    let (dir, gm) = notebook();
    let d = dir.path();
    write(d, "a.md", "a\n");
    auto(&gm, &["a.md"]);
    // The user commits a change of their own, and deletes a file with git.
    write(d, "a.md", "by the user\n");
    write(d, "u.md", "u\n");
    git(d, &["add", "a.md", "u.md"]);
    git(d, &["commit", "-q", "-m", "user"]);
    git(d, &["rm", "-q", "u.md"]);
    git(d, &["commit", "-q", "-m", "user rm"]);
    write(d, "c.md", "c\n");
    auto(&gm, &["c.md"]);
    assert_eq!(git(d, &["show", "HEAD:a.md"]), "by the user\n");
    assert!(git_try(d, &["cat-file", "-e", "HEAD:u.md"]).status.code() != Some(0));
    assert_eq!(
        git(d, &["log", "--format=%s", "-3"]).lines().nth(1),
        Some("user rm")
    );
    assert_status_clean(d);
    assert_fsck_clean(d);
}

#[test]
fn a_held_index_lock_stops_the_commit_without_touching_anything() {
    let (dir, gm) = notebook();
    let d = dir.path();
    write(d, "a.md", "a\n");
    auto(&gm, &["a.md"]);
    let head = git(d, &["rev-parse", "HEAD"]);
    let index = std::fs::read(d.join(".git/index")).expect("index");
    // Another git process holds the lock (as `git add` does while it works).
    std::fs::write(d.join(".git/index.lock"), b"").expect("lock");
    write(d, "b.md", "b\n");
    let err = try_auto(&gm, &["b.md"]).expect_err("must refuse");
    assert!(matches!(err, GitError::IndexLocked { .. }), "{err:?}");
    assert_eq!(git(d, &["rev-parse", "HEAD"]), head);
    assert_eq!(std::fs::read(d.join(".git/index")).expect("index"), index);
    assert_eq!(std::fs::read(d.join(".git/index.lock")).expect("lock"), b"");
    // Meanwhile the lock holder wrote the index (its `git add`).
    std::fs::remove_file(d.join(".git/index.lock")).expect("unlock");
    write(d, "u.md", "u\n");
    git(d, &["add", "u.md"]);
    let outcome = gm
        .auto_commit_on_change(&[PathBuf::from("b.md")], &opts())
        .expect("auto-commit");
    assert!(outcome.commit.is_some());
    assert_eq!(staged(d), "A\tu.md\n", "{}", report(d));
    assert_fsck_clean(d);
}

#[test]
fn git_writing_the_index_in_a_loop_never_loses_its_staging() {
    // The user's git keeps rewriting the index while gitlockd commits: after
    // each of our commits, every file the user staged is still staged.
    let (dir, gm) = notebook();
    let d = dir.path().to_path_buf();
    write(&d, "base.md", "base\n");
    auto(&gm, &["base.md"]);
    let user = {
        let d = d.clone();
        std::thread::spawn(move || {
            for i in 0..40 {
                write(&d, &format!("u/{i:02}.md"), "u\n");
                // gitlockd's own write may hold index.lock: git refuses, try again.
                loop {
                    let out = git_try(&d, &["add", &format!("u/{i:02}.md")]);
                    if out.status.success() {
                        break;
                    }
                    let err = String::from_utf8_lossy(&out.stderr);
                    assert!(err.contains("index.lock"), "git add: {err}");
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
        })
    };
    for i in 0..40 {
        write(&d, &format!("g/{i:02}.md"), "g\n");
        // The user's git may hold index.lock at that moment: try again.
        loop {
            match try_auto(&gm, &[&format!("g/{i:02}.md")]) {
                Ok(_) => break,
                Err(GitError::IndexLocked { .. }) => {
                    std::thread::sleep(std::time::Duration::from_millis(2))
                }
                Err(e) => panic!("auto-commit: {e:?}"),
            }
        }
    }
    user.join().expect("user's git");
    let staged = staged(&d);
    for i in 0..40 {
        assert!(
            staged.contains(&format!("A\tu/{i:02}.md\n")),
            "u/{i:02}.md lost\n{staged}"
        );
    }
    let committed = git(&d, &["ls-tree", "-r", "--name-only", "HEAD"]);
    assert!(
        !committed.contains("u/"),
        "the user's staging went into our commits"
    );
    for i in 0..40 {
        assert!(committed.contains(&format!("g/{i:02}.md")), "{committed}");
    }
    assert_fsck_clean(&d);
}
