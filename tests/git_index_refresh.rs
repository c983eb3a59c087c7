//! The index kept between commits and stale stat data refreshed at a scan
//! (issue 11), on real repositories with the `git` CLI as referee.

mod git_util;

use std::path::{Path, PathBuf};

use git_util::*;
use gitlockd::git::{GitManager, RepoState};

/// Give `rel` a new mtime (an old one, `secs` after a fixed base) without
/// touching its content: its index stat data no longer matches.
fn touch_old(root: &Path, rel: &str, secs: i64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs((1_600_000_000 + secs) as u64);
    let f = std::fs::File::options()
        .write(true)
        .open(root.join(rel))
        .expect("open");
    f.set_modified(t).expect("set mtime");
}

/// Files whose index stat data does not match the work tree (git compares
/// stat data only here and refreshes nothing).
fn stat_dirty(root: &Path) -> Vec<String> {
    lines(&git(root, &["diff-files", "--name-only"]))
}

/// A notebook with `n` files committed by git, then all made stat-stale.
fn stale_notebook(n: usize) -> (tempfile::TempDir, GitManager, Vec<String>) {
    let (dir, gm) = notebook();
    let root = dir.path();
    let names: Vec<String> = (0..n).map(|i| format!("d{}/f{i}.md", i % 3)).collect();
    for (i, name) in names.iter().enumerate() {
        write(root, name, &format!("note {i}\n"));
    }
    git(root, &["add", "-A"]);
    git(root, &["commit", "-qm", "base"]);
    for (i, name) in names.iter().enumerate() {
        touch_old(root, name, i as i64);
    }
    (dir, gm, names)
}

#[test]
fn a_scan_writes_back_stat_data_of_unchanged_files_only() {
    let (dir, gm, names) = stale_notebook(40);
    let root = dir.path();
    assert_eq!(stat_dirty(root).len(), names.len(), "set-up: all stale");
    // One file really changed, with the same size and an old mtime too.
    write(root, &names[5], "NOTE 5\n");
    touch_old(root, &names[5], 999);
    let blobs_before = git(root, &["ls-files", "-s"]);

    let pending = gm.pending_changes(&opts()).expect("pending");
    assert_eq!(pending, vec![PathBuf::from(&names[5])]);
    // Every unchanged file is clean by stat alone now; the changed one is not.
    assert_eq!(stat_dirty(root), vec![names[5].clone()]);
    // No entry's object id, mode or stage changed.
    assert_eq!(git(root, &["ls-files", "-s"]), blobs_before);
    assert_eq!(
        git(root, &["status", "--porcelain"]),
        format!(" M {}\n", names[5])
    );
    assert_fsck_clean(root);

    // The changed file is still committed with its new content.
    auto(&gm, &[&names[5]]);
    assert_eq!(
        git(root, &["show", &format!("HEAD:{}", names[5])]),
        "NOTE 5\n"
    );
    assert_status_clean(root);
}

#[test]
fn a_second_manager_finds_nothing_to_hash() {
    let (dir, gm, _names) = stale_notebook(12);
    let root = dir.path();
    assert!(gm.pending_changes(&opts()).expect("pending").is_empty());
    let index = std::fs::read(root.join(".git/index")).expect("index");
    // A restarted daemon: a new manager, nothing kept in memory. Its scan
    // finds every entry clean and writes nothing.
    let again = GitManager::new(root).expect("manager");
    assert!(again.pending_changes(&opts()).expect("pending").is_empty());
    assert_eq!(
        std::fs::read(root.join(".git/index")).expect("index"),
        index
    );
}

#[test]
fn a_refreshed_index_keeps_the_users_staging() {
    let (dir, gm, names) = stale_notebook(6);
    let root = dir.path();
    write(root, "staged.md", "staged by the user\n");
    git(root, &["add", "staged.md"]);
    git(root, &["update-index", "--chmod=+x", &names[1]]);
    let staged_before = git(root, &["diff", "--cached", "--name-status"]);
    gm.pending_changes(&opts()).expect("pending");
    assert_eq!(
        git(root, &["diff", "--cached", "--name-status"]),
        staged_before
    );
    assert_fsck_clean(root);
}

#[test]
fn with_attributes_nothing_is_refreshed() {
    let (dir, gm) = notebook();
    let root = dir.path();
    write(root, ".gitattributes", "*.txt text eol=crlf\n");
    write(root, "a.txt", "one\n");
    git(root, &["add", "-A"]);
    git(root, &["commit", "-qm", "base"]);
    touch_old(root, "a.txt", 1);
    gm.pending_changes(&opts()).expect("pending");
    // Raw bytes may not be what git stores: left to git's own refresh.
    assert_eq!(stat_dirty(root), vec!["a.txt".to_string()]);
}

#[test]
fn kept_index_commits_back_to_back_match_git() {
    let (dir, gm) = notebook();
    let root = dir.path();
    for i in 0..5 {
        write(root, &format!("n{i}.md"), &format!("v{i}\n"));
        auto(&gm, &[&format!("n{i}.md")]);
    }
    // The on-disk index is exactly the commit's tree, and git agrees.
    let staged: Vec<String> = lines(&git(root, &["ls-files", "-s"]))
        .iter()
        .map(|l| {
            let (meta, path) = l.split_once('\t').expect("tab");
            let mut f = meta.split(' ');
            format!(
                "{} {}\t{path}",
                f.next().unwrap_or(""),
                f.next().unwrap_or("")
            )
        })
        .collect();
    let tree: Vec<String> = lines(&git(root, &["ls-tree", "-r", "HEAD"]))
        .iter()
        .map(|l| l.replacen(" blob", "", 1))
        .collect();
    assert_eq!(staged, tree);
    assert_status_clean(root);
    assert_fsck_clean(root);
}

#[test]
fn a_same_second_rewrite_is_committed_with_the_kept_index() {
    let (dir, gm) = notebook();
    let root = dir.path();
    write(root, "f.md", "aaaa\n");
    auto(&gm, &["f.md"]);
    // Same size, written at once: its mtime may equal the recorded one.
    write(root, "f.md", "bbbb\n");
    auto(&gm, &["f.md"]);
    assert_eq!(git(root, &["show", "HEAD:f.md"]), "bbbb\n");
    write(root, "f.md", "cccc\n");
    auto(&gm, &["f.md"]);
    assert_eq!(git(root, &["show", "HEAD:f.md"]), "cccc\n");
    assert_status_clean(root);
}

#[test]
fn foreign_index_writes_between_kept_commits_are_seen() {
    let (dir, gm) = notebook();
    let root = dir.path();
    write(root, "a.md", "a\n");
    write(root, "b.md", "b\n");
    auto(&gm, &["a.md", "b.md"]);
    // git rewrites the index: an entry removed, another staged, a mode.
    git(root, &["rm", "-q", "--cached", "a.md"]);
    write(root, "ext.md", "ext\n");
    git(root, &["add", "ext.md"]);
    git(root, &["update-index", "--chmod=+x", "b.md"]);
    write(root, "c.md", "c\n");
    auto(&gm, &["c.md"]);
    assert_eq!(
        git(root, &["status", "--porcelain"]),
        // b.md: executable in the index only, as git left it.
        "D  a.md\nMM b.md\nA  ext.md\n?? a.md\n"
    );
    assert_eq!(gm.repo_state().expect("state"), RepoState::Clean);
    assert_fsck_clean(root);
}

#[test]
fn a_deleted_index_file_is_not_brought_back_from_memory() {
    let (dir, gm) = notebook();
    let root = dir.path();
    write(root, "a.md", "a\n");
    auto(&gm, &["a.md"]);
    std::fs::remove_file(root.join(".git/index")).expect("rm index");
    write(root, "c.md", "c\n");
    auto(&gm, &["c.md"]);
    // As git sees a missing index: empty, plus what we staged.
    assert_eq!(lines(&git(root, &["ls-files"])), vec!["c.md".to_string()]);
    assert_eq!(
        lines(&git(root, &["ls-tree", "--name-only", "HEAD"])),
        vec!["a.md".to_string(), "c.md".to_string()]
    );
}
