//! GitManager on real repositories, with the `git` CLI as referee.

mod git_util;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use git_util::*;
use gitlockd::filter::PathFilter;
use gitlockd::git::{AutoCommitOptions, GitError, GitManager, RepoState};

fn ls_files(dir: &Path) -> Vec<String> {
    lines(&git(dir, &["ls-files"]))
}

#[test]
fn init_fresh_then_existing_then_refused_without_init() {
    let dir = tempdir();
    let gm = GitManager::new(dir.path()).unwrap();
    assert!(gm.init_or_get_repo(true).unwrap(), "created");
    assert_eq!(
        git(dir.path(), &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/main"
    );
    assert!(!gm.init_or_get_repo(true).unwrap(), "opened, not created");
    assert!(!gm.init_or_get_repo(false).unwrap());

    let plain = tempdir();
    let gm = GitManager::new(plain.path()).unwrap();
    assert!(matches!(
        gm.init_or_get_repo(false),
        Err(GitError::NotFound { .. })
    ));
    assert!(!plain.path().join(".git").exists());
}

#[test]
fn a_folder_inside_a_repository_is_not_that_repository() {
    let (dir, _gm) = notebook();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let sub = GitManager::new(&dir.path().join("sub")).unwrap();
    assert!(matches!(sub.head_info(), Err(GitError::NotFound { .. })));
    assert!(matches!(
        sub.init_or_get_repo(false),
        Err(GitError::NotFound { .. })
    ));
}

#[test]
fn concurrent_init_of_one_path_creates_one_repository() {
    let dir = tempdir();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let path = dir.path().to_path_buf();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let gm = GitManager::new(&path).unwrap();
                barrier.wait();
                gm.init_or_get_repo(true).unwrap()
            })
        })
        .collect();
    let created = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|c| *c)
        .count();
    assert_eq!(created, 1);
    assert_fsck_clean(dir.path());
    let gm = GitManager::new(dir.path()).unwrap();
    write(dir.path(), "a.md", "a\n");
    assert!(auto(&gm, &["a.md"]).commit.is_some());
    assert_fsck_clean(dir.path());
}

#[test]
fn first_commit_on_unborn_main_then_no_empty_commit() {
    let (dir, gm) = notebook();
    let head = gm.head_info().unwrap();
    assert_eq!(head.branch.as_deref(), Some("main"));
    assert_eq!(head.head, None);
    assert!(
        gm.commit("nothing", None).unwrap().is_none(),
        "no commit of an empty tree"
    );

    write(dir.path(), "notes.md", "hello\n");
    let out = auto(&gm, &["notes.md"]);
    let id = out.commit.expect("a commit");
    assert_eq!(out.paths, vec![PathBuf::from("notes.md")]);
    assert_eq!(
        git(dir.path(), &["rev-parse", "HEAD"]).trim(),
        id.to_string()
    );
    assert_eq!(
        git(dir.path(), &["log", "--format=%s|%an|%ae"]).trim(),
        "gitlockd: add notes.md|Test User|test@example.com"
    );
    assert_eq!(
        git(dir.path(), &["log", "-1", "--format=%b"]).trim(),
        "notes.md"
    );
    assert_status_clean(dir.path());
    assert_eq!(gm.head_info().unwrap().head, Some(id));

    assert_eq!(
        auto(&gm, &["notes.md"]).commit,
        None,
        "unchanged: no commit"
    );
    assert_eq!(gm.commit("again", None).unwrap(), None);
    assert_eq!(
        gm.commit("again", Some(&[PathBuf::from("notes.md")]))
            .unwrap(),
        None
    );
    assert_eq!(
        git(dir.path(), &["rev-list", "--count", "HEAD"]).trim(),
        "1"
    );
    assert_fsck_clean(dir.path());
}

#[test]
fn first_commit_on_an_unborn_non_default_branch() {
    let dir = tempdir();
    git(dir.path(), &["init", "-q", "-b", "trunk"]);
    let gm = GitManager::new(dir.path()).unwrap();
    assert!(!gm.init_or_get_repo(true).unwrap());
    assert_eq!(gm.head_info().unwrap().branch.as_deref(), Some("trunk"));
    write(dir.path(), "a.md", "a\n");
    write(dir.path(), "d/b.md", "b\n");
    let id = gm.commit("first", None).unwrap().expect("commit");
    assert_eq!(
        git(dir.path(), &["rev-parse", "trunk"]).trim(),
        id.to_string()
    );
    assert_eq!(git(dir.path(), &["log", "--format=%s"]).trim(), "first");
    assert_eq!(ls_files(dir.path()), ["a.md", "d/b.md"]);
    assert_status_clean(dir.path());
}

#[test]
fn author_from_options_overrides_git_config() {
    let (dir, gm) = notebook();
    write(dir.path(), "a.md", "a\n");
    let o = AutoCommitOptions {
        author_name: Some("Bot".into()),
        author_email: Some("bot@x.org".into()),
        message: "{notebook}/{count}: {summary}".into(),
        ..opts()
    };
    gm.auto_commit_on_change(&[PathBuf::from("a.md")], &o)
        .unwrap();
    assert_eq!(
        git(dir.path(), &["log", "--format=%an <%ae>|%cn|%s"]).trim(),
        "Bot <bot@x.org>|Bot|nb/1: add a.md"
    );
}

#[test]
fn delete_is_staged_as_a_deletion() {
    let (dir, gm) = notebook();
    write(dir.path(), "a.md", "a\n");
    write(dir.path(), "d/x.md", "x\n");
    write(dir.path(), "d/y.md", "y\n");
    gm.commit("init", None).unwrap().unwrap();
    std::fs::remove_file(dir.path().join("a.md")).unwrap();
    let out = auto(&gm, &["a.md"]);
    assert!(out.commit.is_some());
    assert_eq!(
        git(dir.path(), &["log", "-1", "--format=%s"]).trim(),
        "gitlockd: delete a.md"
    );
    // A whole directory removed, reported by its own path only.
    std::fs::remove_dir_all(dir.path().join("d")).unwrap();
    let out = auto(&gm, &["d"]);
    assert_eq!(
        out.paths,
        vec![PathBuf::from("d/x.md"), PathBuf::from("d/y.md")]
    );
    assert!(ls_files(dir.path()).is_empty());
    assert_status_clean(dir.path());
    assert_fsck_clean(dir.path());
}

#[test]
fn rename_is_one_commit_that_git_sees_as_a_rename() {
    let (dir, gm) = notebook();
    write(
        dir.path(),
        "a.md",
        "some content long enough to be similar\n",
    );
    gm.commit("init", None).unwrap().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::rename(dir.path().join("a.md"), dir.path().join("sub/b.md")).unwrap();
    let out = auto(&gm, &["a.md", "sub/b.md"]);
    assert!(out.commit.is_some());
    assert_eq!(
        out.paths,
        vec![PathBuf::from("a.md"), PathBuf::from("sub/b.md")]
    );
    assert_eq!(
        git(
            dir.path(),
            &["show", "--name-status", "-M", "--format=%s", "HEAD"]
        )
        .trim(),
        "gitlockd: rename a.md to sub/b.md\n\nR100\ta.md\tsub/b.md"
    );
    assert_eq!(
        git(dir.path(), &["rev-list", "--count", "HEAD"]).trim(),
        "2"
    );
    assert_status_clean(dir.path());
}

#[test]
fn ignored_temporaries_and_git_internals_are_never_staged() {
    let (dir, gm) = notebook();
    let root = dir.path();
    write(root, ".gitignore", "*.log\nbuild/\n");
    write(root, ".git/info/exclude", "secret.txt\n");
    write(root, "a.md", "a\n");
    write(root, "x.log", "log\n");
    write(root, "build/out.o", "o\n");
    write(root, "secret.txt", "s\n");
    write(root, ".a.md.swp", "swap\n");
    write(root, "4913", "");
    write(root, "a.md~", "backup\n");
    write(root, "#a.md#", "autosave\n");
    write(root, "junk.tmp", "user glob\n");
    let o = AutoCommitOptions {
        filter: Arc::new(PathFilter::new(&["*.tmp".into()]).unwrap()),
        ..opts()
    };
    let all: Vec<PathBuf> = [
        ".gitignore",
        "a.md",
        "x.log",
        "build/out.o",
        "build",
        "secret.txt",
        ".a.md.swp",
        "4913",
        "a.md~",
        "#a.md#",
        "junk.tmp",
        ".git/config",
        ".git/HEAD",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(
        gm.pending_changes(&o).unwrap(),
        vec![PathBuf::from(".gitignore"), PathBuf::from("a.md")]
    );
    let out = gm.auto_commit_on_change(&all, &o).unwrap();
    assert!(out.commit.is_some());
    assert_eq!(ls_files(root), [".gitignore", "a.md"]);
    // commit-all uses the manager's own filter (built-ins only here).
    let gm = gm.with_filter(o.filter.clone());
    assert_eq!(gm.commit("all", None).unwrap(), None);
    assert_eq!(ls_files(root), [".gitignore", "a.md"]);
    // add_file refuses quietly; .git is forbidden outright.
    gm.add_file(Path::new("x.log")).unwrap();
    gm.add_file(Path::new(".a.md.swp")).unwrap();
    assert!(matches!(
        gm.add_file(Path::new(".git/config")),
        Err(GitError::Forbidden { .. })
    ));
    assert!(matches!(
        gm.commit("x", Some(&[PathBuf::from(".git/HEAD")])),
        Err(GitError::Forbidden { .. })
    ));
    assert_eq!(ls_files(root), [".gitignore", "a.md"]);
}

#[test]
fn an_ignored_file_already_tracked_stays_tracked() {
    let (dir, gm) = notebook();
    write(dir.path(), "keep.log", "1\n");
    gm.commit("init", None).unwrap().unwrap();
    write(dir.path(), ".gitignore", "*.log\n");
    write(dir.path(), "keep.log", "2\n");
    assert!(auto(&gm, &["keep.log", ".gitignore"]).commit.is_some());
    assert_eq!(git(dir.path(), &["show", "HEAD:keep.log"]), "2\n");
    assert_status_clean(dir.path());
}

#[test]
fn external_git_add_survives_our_auto_commit() {
    let (dir, gm) = notebook();
    write(dir.path(), "a.md", "a\n");
    auto(&gm, &["a.md"]);
    write(dir.path(), "ext.md", "external\n");
    git(dir.path(), &["add", "ext.md"]);
    git(dir.path(), &["rm", "-q", "--cached", "a.md"]);
    write(dir.path(), "ours.md", "ours\n");
    let out = auto(&gm, &["ours.md"]);
    assert_eq!(out.paths, vec![PathBuf::from("ours.md")]);
    // Our commit holds exactly our path; the user's staging is intact.
    assert_eq!(git(dir.path(), &["show", "HEAD:ours.md"]), "ours\n");
    assert_eq!(
        git(dir.path(), &["ls-tree", "--name-only", "HEAD"]),
        "a.md\nours.md\n"
    );
    assert_eq!(
        git(dir.path(), &["status", "--porcelain"]),
        "D  a.md\nA  ext.md\n?? a.md\n"
    );
    // An explicit commit of everything takes them.
    gm.commit("all", None).unwrap().unwrap();
    assert_eq!(
        git(dir.path(), &["ls-tree", "--name-only", "HEAD"]),
        "a.md\next.md\nours.md\n"
    );
    assert_status_clean(dir.path());
}

#[test]
fn commit_with_paths_commits_only_those() {
    let (dir, gm) = notebook();
    write(dir.path(), "a.md", "a\n");
    write(dir.path(), "b.md", "b\n");
    gm.add_file(Path::new("b.md")).unwrap();
    let id = gm.commit("just a", Some(&[PathBuf::from("a.md")])).unwrap();
    assert!(id.is_some());
    assert_eq!(
        git(dir.path(), &["ls-tree", "--name-only", "HEAD"]),
        "a.md\n"
    );
    assert_eq!(
        git(dir.path(), &["diff", "--cached", "--name-only"]),
        "b.md\n"
    );
    assert_eq!(gm.commit("none", Some(&[])).unwrap(), None);
}

fn conflicting_merge(dir: &Path) {
    git(dir, &["checkout", "-q", "-b", "other"]);
    write(dir, "c.md", "theirs\n");
    git(dir, &["commit", "-qam", "theirs"]);
    git(dir, &["checkout", "-q", "main"]);
    write(dir, "c.md", "ours\n");
    git(dir, &["commit", "-qam", "ours"]);
    assert!(
        !git_try(dir, &["merge", "other"]).status.success(),
        "merge conflicts"
    );
}

#[test]
fn mid_merge_is_busy_and_writes_nothing() {
    let (dir, gm) = notebook();
    write(dir.path(), "c.md", "base\n");
    gm.commit("base", None).unwrap().unwrap();
    conflicting_merge(dir.path());
    assert_eq!(gm.repo_state().unwrap(), RepoState::Busy("merge".into()));

    write(dir.path(), "new.md", "new\n");
    let index_before = std::fs::read(dir.path().join(".git/index")).unwrap();
    let head_before = git(dir.path(), &["rev-parse", "HEAD"]);
    let err = gm
        .auto_commit_on_change(&[PathBuf::from("new.md")], &opts())
        .unwrap_err();
    assert!(
        matches!(&err, GitError::Busy { state } if state == "merge"),
        "{err}"
    );
    assert!(err.is_retryable());
    assert!(matches!(gm.commit("x", None), Err(GitError::Busy { .. })));
    assert!(matches!(
        gm.add_file(Path::new("new.md")),
        Err(GitError::Busy { .. })
    ));
    assert_eq!(
        std::fs::read(dir.path().join(".git/index")).unwrap(),
        index_before
    );
    assert_eq!(git(dir.path(), &["rev-parse", "HEAD"]), head_before);

    git(dir.path(), &["merge", "--abort"]);
    assert_eq!(gm.repo_state().unwrap(), RepoState::Clean);
    assert!(auto(&gm, &["new.md"]).commit.is_some());
    assert_status_clean(dir.path());
    assert_fsck_clean(dir.path());
}

#[test]
fn conflicts_without_an_operation_are_busy_too() {
    let (dir, gm) = notebook();
    write(dir.path(), "c.md", "base\n");
    gm.commit("base", None).unwrap().unwrap();
    write(dir.path(), "c.md", "stashed\n");
    git(dir.path(), &["stash", "-q"]);
    write(dir.path(), "c.md", "committed\n");
    gm.commit("mine", None).unwrap().unwrap();
    assert!(!git_try(dir.path(), &["stash", "pop", "-q"])
        .status
        .success());
    assert_eq!(
        gm.repo_state().unwrap(),
        RepoState::Busy("conflicts".into())
    );
    assert!(matches!(
        gm.commit("x", None),
        Err(GitError::Busy { state }) if state == "conflicts"
    ));
}

#[test]
fn a_foreign_index_lock_is_retryable_and_then_succeeds() {
    let (dir, gm) = notebook();
    write(dir.path(), "a.md", "a\n");
    let lock = dir.path().join(".git/index.lock");
    std::fs::write(&lock, "").unwrap();
    let err = gm
        .auto_commit_on_change(&[PathBuf::from("a.md")], &opts())
        .unwrap_err();
    match &err {
        GitError::IndexLocked { path } => assert!(path.ends_with(".git/index.lock"), "{err}"),
        other => panic!("expected IndexLocked, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert!(err.to_string().contains("index.lock"), "{err}");
    std::fs::remove_file(&lock).unwrap();
    assert!(auto(&gm, &["a.md"]).commit.is_some());

    // A branch's ref lock: the commit fails naming it, nothing is lost.
    write(dir.path(), "b.md", "b\n");
    let ref_lock = dir.path().join(".git/refs/heads/main.lock");
    std::fs::write(&ref_lock, "").unwrap();
    let err = gm
        .auto_commit_on_change(&[PathBuf::from("b.md")], &opts())
        .unwrap_err();
    assert!(
        matches!(&err, GitError::IndexLocked { path } if path.ends_with("main.lock")),
        "{err:?}"
    );
    std::fs::remove_file(&ref_lock).unwrap();
    assert!(auto(&gm, &["b.md"]).commit.is_some());
    assert_status_clean(dir.path());
    assert_fsck_clean(dir.path());
}

/// Three commits: a.md created, b.md created, a.md changed; then a.md
/// renamed to c.md and changed again.
fn history_repo() -> (tempfile::TempDir, GitManager) {
    let (dir, gm) = notebook();
    write(
        dir.path(),
        "a.md",
        "line one of a\nline two of a\nline three\n",
    );
    gm.commit("one", None).unwrap().unwrap();
    write(dir.path(), "b.md", "b\n");
    gm.commit("two", None).unwrap().unwrap();
    write(
        dir.path(),
        "a.md",
        "line one of a\nline two of a\nline three\nfour\n",
    );
    gm.commit("three", None).unwrap().unwrap();
    std::fs::rename(dir.path().join("a.md"), dir.path().join("c.md")).unwrap();
    gm.commit("four", None).unwrap().unwrap();
    write(
        dir.path(),
        "c.md",
        "line one of a\nline two of a\nline three\nfour\nfive\n",
    );
    gm.commit("five", None).unwrap().unwrap();
    (dir, gm)
}

#[test]
fn history_newest_first_with_path_limit_and_renames() {
    let (dir, gm) = history_repo();
    let ids = |v: Vec<gitlockd::git::CommitInfo>| -> Vec<String> {
        v.into_iter().map(|c| c.id.to_string()).collect()
    };
    let all = gm.get_file_history(None, 0).unwrap();
    let summaries: Vec<&str> = all.iter().map(|c| c.summary.as_str()).collect();
    assert_eq!(summaries, ["five", "four", "three", "two", "one"]);
    assert_eq!(all[0].author_name, "Test User");
    assert_eq!(all[0].author_email, "test@example.com");
    assert_eq!(
        all[0].rfc3339(),
        git(dir.path(), &["log", "-1", "--format=%aI"]).trim()
    );
    assert_eq!(ids(all), lines(&git(dir.path(), &["rev-list", "HEAD"])));
    assert_eq!(gm.get_file_history(None, 2).unwrap().len(), 2);
    assert_eq!(
        ids(gm.get_file_history(Some(Path::new("b.md")), 0).unwrap()),
        lines(&git(dir.path(), &["log", "--format=%H", "--", "b.md"]))
    );
    assert_eq!(
        ids(gm.get_file_history(Some(Path::new("c.md")), 0).unwrap()),
        lines(&git(
            dir.path(),
            &["log", "--follow", "--format=%H", "--", "c.md"]
        ))
    );
    assert_eq!(
        gm.get_file_history(Some(Path::new("c.md")), 0)
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        gm.get_file_history(Some(Path::new("c.md")), 3)
            .unwrap()
            .len(),
        3
    );
    let abs = dir.path().join("b.md");
    assert_eq!(gm.get_file_history(Some(&abs), 0).unwrap().len(), 1);
    assert!(gm
        .get_file_history(Some(Path::new("nope.md")), 0)
        .unwrap()
        .is_empty());

    let (_d, empty) = notebook();
    assert!(empty.get_file_history(None, 10).unwrap().is_empty());
}

#[test]
fn file_at_commit_and_not_found_cases() {
    let (dir, gm) = history_repo();
    let (id, bytes) = gm.get_file_at_commit(Path::new("c.md"), "HEAD").unwrap();
    assert_eq!(
        id.to_string(),
        git(dir.path(), &["rev-parse", "HEAD"]).trim()
    );
    assert_eq!(bytes, std::fs::read(dir.path().join("c.md")).unwrap());
    let (id, bytes) = gm.get_file_at_commit(Path::new("c.md"), "HEAD~1").unwrap();
    assert_eq!(
        id.to_string(),
        git(dir.path(), &["rev-parse", "HEAD~1"]).trim()
    );
    assert_eq!(
        bytes,
        git(dir.path(), &["show", "HEAD~1:c.md"]).into_bytes()
    );
    let first = git(dir.path(), &["rev-list", "--max-parents=0", "HEAD"]);
    let (_, bytes) = gm
        .get_file_at_commit(Path::new("a.md"), first.trim())
        .unwrap();
    assert_eq!(bytes, b"line one of a\nline two of a\nline three\n");
    for (path, rev) in [
        ("a.md", "HEAD"),
        ("c.md", "HEAD~4"),
        ("c.md", "nosuchrev"),
        ("c.md", "HEAD~99"),
        ("c.md", "0123456789abcdef0123456789abcdef01234567"),
    ] {
        let r = gm.get_file_at_commit(Path::new(path), rev);
        assert!(
            matches!(r, Err(GitError::NotFound { .. })),
            "{path}@{rev}: {r:?}"
        );
    }
    assert!(matches!(
        gm.get_file_at_commit(Path::new("../x"), "HEAD"),
        Err(GitError::Forbidden { .. })
    ));
    let (_d, empty) = notebook();
    assert!(matches!(
        empty.get_file_at_commit(Path::new("a.md"), "HEAD"),
        Err(GitError::NotFound { .. })
    ));
}

#[test]
fn diffs_match_git() {
    let (dir, gm) = history_repo();
    let root = dir.path();
    write(root, ".gitignore", "*.log\n");
    write(root, "b.md", "b changed\n");
    write(root, "new.md", "brand new\n");
    write(root, "x.log", "ignored\n");
    let diff = gm.get_diff(None, None, None).unwrap();
    assert!(diff.contains("diff --git a/b.md b/b.md\n"), "{diff}");
    assert!(diff.contains("-b\n+b changed\n"), "{diff}");
    assert!(diff.contains("+brand new\n"), "untracked content: {diff}");
    assert!(!diff.contains("x.log"), "ignored: {diff}");
    // Tracked changes are exactly git's.
    let only_b = gm.get_diff(None, None, Some(Path::new("b.md"))).unwrap();
    assert_eq!(only_b, git(root, &["diff", "HEAD", "--", "b.md"]));
    // Revision to revision, whole and one path.
    assert_eq!(
        gm.get_diff(Some("HEAD~4"), Some("HEAD~2"), None).unwrap(),
        git(root, &["diff", "HEAD~4", "HEAD~2"])
    );
    // Renames are detected (libgit2 scores similarity a little differently).
    let renamed = gm.get_diff(Some("HEAD~2"), Some("HEAD"), None).unwrap();
    assert!(
        renamed.contains("rename from a.md\nrename to c.md\n") && renamed.contains("+five\n"),
        "{renamed}"
    );
    assert_eq!(
        gm.get_diff(Some("HEAD~4"), Some("HEAD~3"), Some(Path::new("b.md")))
            .unwrap(),
        git(root, &["diff", "HEAD~4", "HEAD~3", "--", "b.md"])
    );
    // From a revision to the work tree.
    let from = gm
        .get_diff(Some("HEAD~1"), None, Some(Path::new("b.md")))
        .unwrap();
    assert_eq!(from, git(root, &["diff", "HEAD~1", "--", "b.md"]));
    assert!(matches!(
        gm.get_diff(Some("nope"), None, None),
        Err(GitError::NotFound { .. })
    ));
    // Reads leave the index alone.
    let index = std::fs::read(root.join(".git/index")).unwrap();
    gm.get_diff(None, None, None).unwrap();
    gm.pending_changes(&opts()).unwrap();
    assert_eq!(std::fs::read(root.join(".git/index")).unwrap(), index);

    let (d2, unborn) = notebook();
    write(d2.path(), "a.md", "a\n");
    let diff = unborn.get_diff(None, None, None).unwrap();
    assert!(diff.contains("+a\n"), "{diff}");
}

#[test]
fn pending_changes_lists_what_differs() {
    let (dir, gm) = notebook();
    let root = dir.path();
    write(root, "keep.md", "k\n");
    write(root, "mod.md", "m\n");
    write(root, "del.md", "d\n");
    write(root, "old.md", "rename me please, I am long enough\n");
    gm.commit("init", None).unwrap().unwrap();
    write(root, "mod.md", "m2\n");
    std::fs::remove_file(root.join("del.md")).unwrap();
    std::fs::rename(root.join("old.md"), root.join("dir/new.md")).unwrap_or_else(|_| {
        std::fs::create_dir(root.join("dir")).unwrap();
        std::fs::rename(root.join("old.md"), root.join("dir/new.md")).unwrap();
    });
    write(root, "staged.md", "s\n");
    git(root, &["add", "staged.md"]);
    write(root, "untracked/deep/u.md", "u\n");
    write(root, ".x.swp", "swap\n");
    git(root, &["init", "-q", "nested"]);
    write(root, "nested/n.md", "n\n");
    let index = std::fs::read(root.join(".git/index")).unwrap();
    let pending = gm.pending_changes(&opts()).unwrap();
    let want: Vec<PathBuf> = [
        "del.md",
        "dir/new.md",
        "mod.md",
        "old.md",
        "staged.md",
        "untracked/deep/u.md",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(pending, want);
    assert_eq!(std::fs::read(root.join(".git/index")).unwrap(), index);
    // Committing exactly those leaves git status clean (but for the nested repo).
    let out = gm.auto_commit_on_change(&pending, &opts()).unwrap();
    assert!(out.commit.is_some());
    assert_eq!(
        git(root, &["status", "--porcelain", "--untracked-files=all"]),
        "?? .x.swp\n?? nested/\n"
    );
}

#[test]
fn resolve_path_table() {
    let (dir, gm) = notebook();
    let root = gm.root().to_path_buf();
    std::fs::create_dir(root.join("sub")).unwrap();
    let outside = tempdir();
    std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
    std::os::unix::fs::symlink(root.join("sub"), root.join("alias")).unwrap();
    std::os::unix::fs::symlink("sub", root.join("rel-alias")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("link.md")).unwrap();
    let ok = |p: &Path, want: &str| {
        assert_eq!(
            gm.resolve_path(p).unwrap(),
            PathBuf::from(want),
            "{}",
            p.display()
        );
    };
    ok(Path::new("a.md"), "a.md");
    ok(Path::new("./sub/../a.md"), "a.md");
    ok(Path::new("sub/x/y.md"), "sub/x/y.md");
    ok(&root.join("sub/b.md"), "sub/b.md");
    ok(&dir.path().join("sub/b.md"), "sub/b.md"); // the uncanonical spelling
    ok(Path::new("alias/b.md"), "sub/b.md");
    ok(Path::new("rel-alias/b.md"), "sub/b.md");
    ok(Path::new("link.md"), "link.md"); // the link itself, not followed
    ok(Path::new("."), "");
    ok(Path::new(".gitignore"), ".gitignore");
    for bad in [
        PathBuf::from("../x"),
        PathBuf::from("sub/../../x"),
        PathBuf::from("/etc/passwd"),
        root.join("../elsewhere"),
        PathBuf::from("out/secret"),
        PathBuf::from(".git/config"),
        PathBuf::from(".git"),
        PathBuf::from("sub/.git/HEAD"),
        PathBuf::from(".GIT/config"),
        root.join(".git/config"),
    ] {
        let r = gm.resolve_path(&bad);
        assert!(
            matches!(r, Err(GitError::Forbidden { .. })),
            "{}: {r:?}",
            bad.display()
        );
    }
}

#[test]
fn large_files_are_skipped_and_keep_their_old_entry() {
    let (dir, gm) = notebook();
    let root = dir.path();
    write(root, "grow.md", "small\n");
    gm.commit("init", None).unwrap().unwrap();
    let big = "x".repeat(100);
    write(root, "big.bin", &big);
    write(root, "grow.md", &big);
    write(root, "ok.md", "fine\n");
    let o = AutoCommitOptions {
        max_file_size: 50,
        ..opts()
    };
    let paths: Vec<PathBuf> = ["big.bin", "grow.md", "ok.md"]
        .iter()
        .map(PathBuf::from)
        .collect();
    let out = gm.auto_commit_on_change(&paths, &o).unwrap();
    assert!(out.commit.is_some());
    assert_eq!(
        out.skipped_large,
        vec![
            (PathBuf::from("big.bin"), 100),
            (PathBuf::from("grow.md"), 100)
        ]
    );
    assert_eq!(out.paths, vec![PathBuf::from("ok.md")]);
    assert_eq!(
        git(root, &["show", ":grow.md"]),
        "small\n",
        "index entry kept"
    );
    assert_eq!(ls_files(root), ["grow.md", "ok.md"]);
    // The same through commit-all and a directory.
    let gm = gm.with_max_file_size(50);
    assert_eq!(gm.commit("all", None).unwrap(), None);
    write(root, "d/big.bin", &big);
    write(root, "d/small.md", "s\n");
    let out = auto_with(&gm, &["d"], &o);
    assert_eq!(out.skipped_large, vec![(PathBuf::from("d/big.bin"), 100)]);
    assert_eq!(ls_files(root), ["d/small.md", "grow.md", "ok.md"]);
}

fn auto_with(
    gm: &GitManager,
    paths: &[&str],
    o: &AutoCommitOptions,
) -> gitlockd::git::AutoCommitOutcome {
    let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    gm.auto_commit_on_change(&paths, o).unwrap()
}

#[test]
fn symlinks_are_committed_as_links() {
    let (dir, gm) = notebook();
    let root = dir.path();
    let big = tempdir();
    write(big.path(), "huge", &"x".repeat(1000));
    std::os::unix::fs::symlink(big.path().join("huge"), root.join("link")).unwrap();
    std::os::unix::fs::symlink("a.md", root.join("rel")).unwrap();
    let o = AutoCommitOptions {
        max_file_size: 500,
        ..opts()
    };
    let out = auto_with(&gm, &["link", "rel"], &o);
    assert!(out.skipped_large.is_empty());
    let staged = git(root, &["ls-files", "-s"]);
    assert!(
        staged.contains("120000") && staged.contains("\tlink\n"),
        "{staged}"
    );
    assert_eq!(git(root, &["cat-file", "-p", "HEAD:rel"]), "a.md");
    assert_status_clean(root);
}

#[test]
fn nested_repositories_are_never_gitlinks() {
    let (dir, gm) = notebook();
    let root = dir.path();
    write(root, "a.md", "a\n");
    git(root, &["init", "-q", "nested"]);
    write(root, "nested/n.md", "n\n");
    git(&root.join("nested"), &["add", "n.md"]);
    git(&root.join("nested"), &["commit", "-qm", "n"]);
    auto(&gm, &["nested", "nested/n.md", "a.md"]);
    gm.commit("all", None).unwrap();
    write(root, "dir/b.md", "b\n");
    auto(&gm, &["dir"]);
    assert_eq!(ls_files(root), ["a.md", "dir/b.md"]);
    assert!(!git(root, &["ls-files", "-s"]).contains("160000"));
}

#[test]
fn a_directory_is_staged_recursively_and_literally() {
    let (dir, gm) = notebook();
    let root = dir.path();
    write(root, "new/deep/x.md", "x\n");
    write(root, "new/y.md", "y\n");
    write(root, "new/.y.md.swp", "swap\n");
    write(root, "[ab]/z.md", "z\n");
    write(root, "a/not-me.md", "no\n");
    let out = auto(&gm, &["new", "[ab]"]);
    assert_eq!(
        out.paths,
        vec![
            PathBuf::from("[ab]/z.md"),
            PathBuf::from("new/deep/x.md"),
            PathBuf::from("new/y.md")
        ]
    );
    assert_eq!(
        git(root, &["log", "-1", "--format=%s"]).trim(),
        "gitlockd: 3 files: [ab]/z.md, new/deep/x.md, +1"
    );
    gm.add_file(Path::new("a")).unwrap();
    assert_eq!(
        git(root, &["diff", "--cached", "--name-only"]).trim(),
        "a/not-me.md"
    );
}

#[test]
fn file_replaced_by_directory_and_back() {
    let (dir, gm) = notebook();
    let root = dir.path();
    write(root, "x", "file\n");
    auto(&gm, &["x"]);
    std::fs::remove_file(root.join("x")).unwrap();
    write(root, "x/inner.md", "inner\n");
    auto(&gm, &["x"]);
    assert_eq!(ls_files(root), ["x/inner.md"]);
    std::fs::remove_dir_all(root.join("x")).unwrap();
    write(root, "x", "file again\n");
    auto(&gm, &["x", "x/inner.md"]);
    assert_eq!(ls_files(root), ["x"]);
    assert_status_clean(root);
    assert_fsck_clean(root);
}

#[test]
fn linked_worktree_and_symlinked_git_dir_are_notebooks() {
    let (dir, gm) = notebook();
    write(dir.path(), "a.md", "a\n");
    gm.commit("base", None).unwrap().unwrap();
    let wt_parent = tempdir();
    let wt = wt_parent.path().join("wt");
    git(
        dir.path(),
        &["worktree", "add", "-q", "-b", "side", wt.to_str().unwrap()],
    );
    assert!(wt.join(".git").is_file());
    let side = GitManager::new(&wt).unwrap();
    assert!(!side.init_or_get_repo(true).unwrap());
    assert_eq!(side.head_info().unwrap().branch.as_deref(), Some("side"));
    write(&wt, "b.md", "b\n");
    assert!(auto(&side, &["b.md"]).commit.is_some());
    assert_eq!(
        git(&wt, &["log", "-1", "--format=%s"]).trim(),
        "gitlockd: add b.md"
    );
    assert_status_clean(&wt);
    assert_eq!(
        git(dir.path(), &["log", "-1", "--format=%s", "main"]).trim(),
        "base"
    );
    assert_status_clean(dir.path());
    assert_fsck_clean(dir.path());

    // .git as a symlink to the real git directory.
    let (d2, _) = notebook();
    let store = tempdir();
    let real = store.path().join("repo.git");
    std::fs::rename(d2.path().join(".git"), &real).unwrap();
    std::os::unix::fs::symlink(&real, d2.path().join(".git")).unwrap();
    let linked = GitManager::new(d2.path()).unwrap();
    assert!(!linked.init_or_get_repo(true).unwrap());
    write(d2.path(), "c.md", "c\n");
    assert!(auto(&linked, &["c.md"]).commit.is_some());
    assert_status_clean(d2.path());
}

#[test]
fn detached_head_is_reported_and_committed_on() {
    let (dir, gm) = notebook();
    write(dir.path(), "a.md", "a\n");
    let first = gm.commit("one", None).unwrap().unwrap();
    git(dir.path(), &["checkout", "-q", "--detach"]);
    let head = gm.head_info().unwrap();
    assert!(head.detached);
    assert_eq!(head.branch, None);
    assert_eq!(head.head, Some(first));
    write(dir.path(), "b.md", "b\n");
    let id = auto(&gm, &["b.md"]).commit.unwrap();
    assert_eq!(
        git(dir.path(), &["rev-parse", "HEAD"]).trim(),
        id.to_string()
    );
    assert_eq!(
        git(dir.path(), &["rev-parse", "main"]).trim(),
        first.to_string()
    );
}

#[test]
fn absolute_and_forbidden_paths_in_a_batch() {
    let (dir, gm) = notebook();
    write(dir.path(), "a.md", "a\n");
    let paths = vec![
        dir.path().join("a.md"),
        PathBuf::from("/etc/passwd"),
        PathBuf::from("../x"),
        dir.path().join(".git/index"),
    ];
    let out = gm.auto_commit_on_change(&paths, &opts()).unwrap();
    assert_eq!(out.paths, vec![PathBuf::from("a.md")]);
    assert_eq!(ls_files(dir.path()), ["a.md"]);
    assert_eq!(gm.auto_commit_on_change(&[], &opts()).unwrap().commit, None);
}

#[test]
fn commit_now_uses_the_notebook_settings() {
    let (dir, gm) = notebook();
    write(dir.path(), "a.md", "a\n");
    write(dir.path(), "b.md", "b\n");
    write(dir.path(), "big.bin", &"x".repeat(100));
    let o = AutoCommitOptions {
        max_file_size: 50,
        message: "{notebook}: {summary}".into(),
        ..opts()
    };
    let out = gm.commit_now(None, None, &o).unwrap();
    assert!(out.commit.is_some());
    assert_eq!(
        out.paths,
        vec![PathBuf::from("a.md"), PathBuf::from("b.md")]
    );
    assert_eq!(out.skipped_large, vec![(PathBuf::from("big.bin"), 100)]);
    assert_eq!(
        git(dir.path(), &["log", "-1", "--format=%s"]).trim(),
        "nb: 2 files: a.md, b.md"
    );
    write(dir.path(), "a.md", "a2\n");
    write(dir.path(), "b.md", "b2\n");
    let out = gm
        .commit_now(Some("mine"), Some(&[dir.path().join("a.md")]), &o)
        .unwrap();
    assert_eq!(out.paths, vec![PathBuf::from("a.md")]);
    assert_eq!(
        git(dir.path(), &["log", "-1", "--format=%B"]).trim(),
        "mine"
    );
    assert_eq!(
        git(dir.path(), &["status", "--porcelain"]),
        " M b.md\n?? big.bin\n"
    );
    assert!(matches!(
        gm.commit_now(None, Some(&[PathBuf::from("../x")]), &o),
        Err(GitError::Forbidden { .. })
    ));
    assert_eq!(
        gm.commit_now(None, Some(&[PathBuf::from("a.md")]), &o)
            .unwrap()
            .commit,
        None
    );
}
