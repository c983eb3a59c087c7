//! The execute bit, with git as the referee: git records 100755 from the
//! owner's execute bit alone, and with `core.fileMode=false` never looks at
//! it. Each case asks `git status` first whether git sees a change, then
//! checks that gitlockd commits exactly when git does, and that git finds
//! nothing left to commit afterwards.

mod git_util;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use git_util::*;
use gitlockd::git::{AutoCommitOptions, GitManager};

fn chmod(root: &Path, rel: &str, mode: u32) {
    std::fs::set_permissions(root.join(rel), std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn auto(gm: &GitManager, rel: &str) -> bool {
    let opts = AutoCommitOptions {
        notebook: "nb".into(),
        ..AutoCommitOptions::default()
    };
    gm.auto_commit_on_change(&[PathBuf::from(rel)], &opts)
        .expect("auto-commit")
        .commit
        .is_some()
}

/// The mode HEAD records for `rel`.
fn head_mode(root: &Path, rel: &str) -> String {
    let line = git(root, &["ls-tree", "HEAD", "--", rel]);
    line.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Whether git sees `rel` as changed against HEAD (stat and content).
fn git_sees_change(root: &Path, rel: &str) -> bool {
    !git(root, &["status", "--porcelain", "--", rel]).is_empty()
}

/// A notebook whose HEAD holds `f` with these permissions (and `core.fileMode`).
fn committed_file(perm: u32, file_mode: bool) -> (tempfile::TempDir, GitManager) {
    let (dir, gm) = notebook();
    let root = dir.path();
    let value = if file_mode { "true" } else { "false" };
    git(root, &["config", "core.fileMode", value]);
    write(root, "f", "one\n");
    chmod(root, "f", perm);
    assert!(auto(&gm, "f"), "the first commit of f");
    assert_status_clean(root);
    (dir, gm)
}

#[test]
fn group_or_other_execute_bits_are_no_change() {
    for perm in [0o654, 0o645, 0o655, 0o675] {
        let (dir, gm) = committed_file(0o644, true);
        let root = dir.path();
        chmod(root, "f", perm);
        assert!(
            !git_sees_change(root, "f"),
            "git: chmod {perm:o} is no change"
        );
        assert!(!auto(&gm, "f"), "gitlockd committed chmod {perm:o}");
        assert_eq!(head_mode(root, "f"), "100644");
        assert_status_clean(root);
    }
}

#[test]
fn the_owner_execute_bit_is_a_mode_change_both_ways() {
    let (dir, gm) = committed_file(0o644, true);
    let root = dir.path();
    chmod(root, "f", 0o744);
    assert!(git_sees_change(root, "f"), "git: u+x is a change");
    assert!(auto(&gm, "f"), "u+x committed");
    assert_eq!(head_mode(root, "f"), "100755");
    assert_status_clean(root);
    // Group and other bits on, owner's off: 644 again for git.
    chmod(root, "f", 0o655);
    assert!(git_sees_change(root, "f"), "git: u-x is a change");
    assert!(auto(&gm, "f"), "u-x committed");
    assert_eq!(head_mode(root, "f"), "100644");
    assert_status_clean(root);
    assert_fsck_clean(root);
}

#[test]
fn with_core_filemode_false_the_execute_bit_is_never_committed() {
    // A new file: git records 100644 whatever its bits.
    let (dir, gm) = committed_file(0o755, false);
    let root = dir.path();
    assert_eq!(head_mode(root, "f"), "100644");
    // Bits alone: no change for git, no commit.
    chmod(root, "f", 0o744);
    assert!(!git_sees_change(root, "f"));
    assert!(!auto(&gm, "f"));
    // Content and bits: the content is committed, the recorded mode stays.
    write(root, "f", "two\n");
    chmod(root, "f", 0o755);
    assert!(git_sees_change(root, "f"));
    assert!(auto(&gm, "f"));
    assert_eq!(head_mode(root, "f"), "100644");
    assert_eq!(git(root, &["show", "HEAD:f"]), "two\n");
    assert_status_clean(root);

    // A tracked 100755 file stays 100755 when it loses its bits.
    git(root, &["config", "core.fileMode", "true"]);
    chmod(root, "f", 0o755);
    assert!(auto(&gm, "f"), "u+x committed while core.fileMode is on");
    git(root, &["config", "core.fileMode", "false"]);
    write(root, "f", "three\n");
    chmod(root, "f", 0o644);
    assert!(auto(&gm, "f"));
    assert_eq!(head_mode(root, "f"), "100755");
    assert_status_clean(root);
    assert_fsck_clean(root);
}
