//! `GitManager::auto_commit_overdue` (a batch past `max_delay`): a file that
//! changes while it is staged is committed as it was read, a state the file
//! really had, instead of being left for a recheck; git, as referee, must
//! then see the file exactly as it is (no change hidden by stale stat data).

mod git_util;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use git_util::*;
use gitlockd::git::AutoCommitOptions;

fn opts() -> AutoCommitOptions {
    AutoCommitOptions {
        notebook: "nb".into(),
        ..AutoCommitOptions::default()
    }
}

fn version(n: u64) -> String {
    format!("version {n:08} {}\n", "y".repeat(100))
}

/// Empty (a save caught between truncation and write) or a whole version.
fn is_real_state(content: &str) -> bool {
    content.is_empty()
        || content
            .strip_prefix("version ")
            .and_then(|rest| rest.get(..8))
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| content == version(n))
}

#[test]
fn an_overdue_commit_takes_a_file_that_never_stops_changing_as_read() {
    let (dir, gm) = notebook();
    let root = dir.path().to_path_buf();
    write(&root, "log.txt", "base\n");
    let rel = [PathBuf::from("log.txt")];
    assert!(gm
        .auto_commit_on_change(&rel, &opts())
        .unwrap()
        .commit
        .is_some());

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, path) = (stop.clone(), root.join("log.txt"));
        std::thread::spawn(move || {
            let mut n = 0u64;
            // As fast as it can: every read overlaps a rewrite.
            while !stop.load(Ordering::SeqCst) {
                std::fs::write(&path, version(n)).unwrap();
                n += 1;
            }
        })
    };
    // Each overdue commit lands, whatever the writer does meanwhile.
    for _ in 0..3 {
        let head = git(&root, &["rev-parse", "HEAD"]);
        let outcome = gm.auto_commit_overdue(&rel, &opts()).unwrap();
        assert!(
            outcome.recheck.is_empty(),
            "left for a recheck: {outcome:?}"
        );
        if outcome.commit.is_none() {
            // Only when what was read is what HEAD holds already.
            assert_eq!(git(&root, &["rev-parse", "HEAD"]), head);
            continue;
        }
        let blob = git(&root, &["show", "HEAD:log.txt"]);
        assert!(is_real_state(&blob), "committed {blob:?}");
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();

    // git sees the file as it is: modified exactly when it differs from HEAD.
    let on_disk = std::fs::read_to_string(root.join("log.txt")).unwrap();
    let committed = git(&root, &["show", "HEAD:log.txt"]);
    let status = git(&root, &["status", "--porcelain", "--", "log.txt"]);
    assert_eq!(
        status.is_empty(),
        on_disk == committed,
        "git status {status:?} for a file {} HEAD",
        if on_disk == committed {
            "equal to"
        } else {
            "unlike"
        }
    );
    // And the next commit takes the last version.
    gm.auto_commit_on_change(&rel, &opts()).unwrap();
    assert_eq!(git(&root, &["show", "HEAD:log.txt"]), on_disk);
    assert_status_clean(&root);
    assert_fsck_clean(&root);
}

#[test]
fn an_overdue_commit_of_a_quiet_file_is_an_ordinary_commit() {
    let (dir, gm) = notebook();
    let root = dir.path().to_path_buf();
    write(&root, "a.md", "one\n");
    let rel = [PathBuf::from("a.md")];
    let outcome = gm.auto_commit_overdue(&rel, &opts()).unwrap();
    assert!(outcome.commit.is_some());
    assert_eq!(git(&root, &["show", "HEAD:a.md"]), "one\n");
    // Its stat data is the file's (not smudged): `git diff-files`, which
    // lists entries whose stat data differs without hashing, lists nothing.
    assert_eq!(git(&root, &["diff-files", "--name-only"]), "");
    assert_status_clean(&root);
    assert_fsck_clean(&root);
}
