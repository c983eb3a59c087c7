//! The sync engine against real repositories: a bare "remote" and clones in
//! temp dirs, made with the git CLI.
//!
//! Environment: libgit2 (in this process) reads the isolated config through
//! `git_util::home()` (search paths set once); the git subprocesses of the
//! sync engine get the same isolation through `GitCli::env` (no
//! `std::env::set_var`, which is not thread-safe).

mod git_util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use git_util::sync_world::{cli, commit_all, read, rev, sync_ok, World};
use git_util::{assert_fsck_clean, assert_status_clean, git, git_try, tempdir, write};
use gitlockd::config::SyncConfig;
use gitlockd::sync::{
    ahead_behind, local_state, push_only_with, sync_once_with, GitCli, Integration, SyncError,
    SyncOutcome,
};

const DIVERGED: &str = "refs/gitlockd/diverged/origin/main";

fn cfg() -> SyncConfig {
    SyncConfig::default()
}

fn sync(dir: &Path) -> Result<SyncOutcome, SyncError> {
    sync_once_with(dir, &cfg(), true, &cli())
}

/// The world of these tests: `readme.md` and `notes.md` on the remote's main.
fn world() -> World {
    World::new(&[("notes.md", "notes\n")], &[])
}

/// `git fsck` is clean and no reachable blob holds a conflict marker, in the
/// remote and both clones.
fn check(w: &World) {
    w.check();
    for r in w.repos() {
        assert_no_markers(r);
    }
}

fn head(dir: &Path) -> String {
    rev(dir, "HEAD")
}

fn rev_opt(dir: &Path, r: &str) -> Option<String> {
    let out = git_try(dir, &["rev-parse", "--verify", "--quiet", r]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Every blob reachable from any ref (diverged refs included) is free of
/// conflict markers.
fn assert_no_markers(dir: &Path) {
    let objects = git(dir, &["rev-list", "--all", "--objects"]);
    let repo = git2::Repository::open(dir).expect("open");
    let mut blobs = 0;
    for line in objects.lines() {
        let id = line.split(' ').next().expect("oid");
        let obj = repo
            .find_object(git2::Oid::from_str(id).expect("oid"), None)
            .expect("object");
        if let Some(blob) = obj.as_blob() {
            blobs += 1;
            let text = String::from_utf8_lossy(blob.content());
            for m in ["<<<<<<<", ">>>>>>>"] {
                assert!(
                    !text.contains(m),
                    "conflict marker in {line} of {}",
                    dir.display()
                );
            }
        }
    }
    assert!(blobs > 0 || objects.is_empty());
}

/// Bytes and mtimes of every file outside `.git`.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (Vec<u8>, SystemTime)>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let e = e.expect("entry");
            let p = e.path();
            if p.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            let md = std::fs::symlink_metadata(&p).expect("metadata");
            if md.is_dir() {
                walk(base, &p, out);
            } else {
                let bytes = std::fs::read(&p).expect("read");
                let rel = p.strip_prefix(base).expect("prefix").to_path_buf();
                out.insert(rel, (bytes, md.modified().expect("mtime")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn parents(dir: &Path, r: &str) -> Vec<String> {
    git(dir, &["rev-list", "--parents", "-n", "1", r])
        .split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[test]
fn edit_on_a_is_pushed_and_fast_forwarded_into_b() {
    let w = world();
    write(&w.a, "new.md", "from A\n");
    let c = commit_all(&w.a, "A: new");

    let o = sync_ok(&w.a);
    assert_eq!(o.integrated, Integration::UpToDate);
    assert!(o.pushed);
    assert!(!o.fetched, "nothing new on the remote");
    assert_eq!((o.ahead, o.behind), (0, 0));
    assert_eq!(o.diverged_ref, None);
    assert_eq!(rev(&w.remote, "main"), c);
    assert_eq!(rev(&w.a, "refs/remotes/origin/main"), c);

    let before_b = snapshot(&w.b);
    let o = sync_ok(&w.b);
    assert_eq!(o.integrated, Integration::FastForward);
    assert_eq!(o.integrated.as_str(), "fast_forward");
    assert!(o.fetched);
    assert!(!o.pushed);
    assert_eq!((o.ahead, o.behind), (0, 0));
    assert_eq!(head(&w.b), c);
    assert_eq!(read(&w.b, "new.md"), "from A\n");
    assert_status_clean(&w.b);
    // Files the fast-forward does not change are not rewritten.
    let after_b = snapshot(&w.b);
    assert_eq!(
        before_b[Path::new("readme.md")],
        after_b[Path::new("readme.md")]
    );
    // The reflog says who moved the branch.
    let reflog = git(&w.b, &["reflog", "-n", "1", "main"]);
    assert!(
        reflog.contains("gitlockd sync: fast-forward to origin/main"),
        "{reflog}"
    );

    // A second sync on both sides has nothing to do.
    for d in [&w.a, &w.b] {
        let o = sync_ok(d);
        assert_eq!(o.integrated, Integration::UpToDate);
        assert!(!o.pushed && !o.fetched);
    }
    check(&w);
}

#[test]
fn different_files_end_up_on_both_sides() {
    let w = world();
    write(&w.a, "a.md", "A\n");
    let ca = commit_all(&w.a, "A");
    write(&w.b, "b.md", "B\n");
    // B edits a different region of a shared file too: still a clean merge.
    write(&w.b, "readme.md", "line 1\nline 2\nline 3\nline 4 from B\n");
    let cb = commit_all(&w.b, "B");

    assert!(sync_ok(&w.a).pushed);
    let o = sync_ok(&w.b);
    assert_eq!(o.integrated, Integration::Merged);
    assert!(o.fetched && o.pushed);
    assert_eq!((o.ahead, o.behind), (0, 0));
    let merge = head(&w.b);
    assert_eq!(parents(&w.b, &merge), vec![cb.clone(), ca.clone()]);
    let msg = git(&w.b, &["log", "-1", "--format=%s"]);
    assert_eq!(msg.trim(), "gitlockd: merge origin/main");
    assert_eq!(rev(&w.remote, "main"), merge);
    assert_status_clean(&w.b);

    let o = sync_ok(&w.a);
    assert_eq!(o.integrated, Integration::FastForward);
    assert_eq!(head(&w.a), merge);
    for d in [&w.a, &w.b] {
        assert_eq!(read(d, "a.md"), "A\n");
        assert_eq!(read(d, "b.md"), "B\n");
        assert_eq!(
            read(d, "readme.md"),
            "line 1\nline 2\nline 3\nline 4 from B\n"
        );
        assert_status_clean(d);
    }
    check(&w);
}

#[test]
fn conflicting_edits_diverge_without_touching_anything_then_resume_after_manual_resolution() {
    let w = world();
    write(&w.a, "readme.md", "line 1\nline 2 by A\nline 3\n");
    let ca = commit_all(&w.a, "A edits line 2");
    write(&w.b, "readme.md", "line 1\nline 2 by B\nline 3\n");
    let cb = commit_all(&w.b, "B edits line 2");
    assert!(sync_ok(&w.a).pushed);

    let before = snapshot(&w.b);
    let o = sync_ok(&w.b);
    assert_eq!(o.integrated, Integration::Diverged);
    assert_eq!(o.integrated.as_str(), "diverged");
    assert!(o.fetched);
    assert!(!o.pushed);
    assert_eq!((o.ahead, o.behind), (1, 1));
    assert_eq!(o.diverged_ref.as_deref(), Some(DIVERGED));
    // Nothing local moved: branch, index, files (bytes and mtimes).
    assert_eq!(head(&w.b), cb);
    assert_status_clean(&w.b);
    assert_eq!(snapshot(&w.b), before);
    // Both versions reachable; the remote untouched by B.
    assert_eq!(rev(&w.b, DIVERGED), ca);
    assert_eq!(rev(&w.remote, "main"), ca);
    check(&w);

    // Local commits go on; the divergence persists and is visible without network.
    write(&w.b, "later.md", "later\n");
    let cb2 = commit_all(&w.b, "B later");
    let before = snapshot(&w.b);
    let o = sync_ok(&w.b);
    assert_eq!(o.integrated, Integration::Diverged);
    assert!(!o.fetched && !o.pushed);
    assert_eq!((o.ahead, o.behind), (2, 1));
    assert_eq!(head(&w.b), cb2);
    assert_eq!(snapshot(&w.b), before);
    let st = local_state(&w.b, &cfg()).expect("local_state");
    assert_eq!(st.diverged_ref.as_deref(), Some(DIVERGED));
    assert_eq!((st.ahead, st.behind), (2, 1));
    assert_eq!(rev(&w.remote, "main"), ca);
    // A push after an auto-commit does not try either.
    let p = push_only_with(&w.b, &cfg(), &cli()).expect("push_only");
    assert!(!p.pushed);
    assert_eq!((p.ahead, p.behind), (2, 1));
    check(&w);

    // The user resolves by hand (under `gitlockd lock` in real life).
    let out = git_try(&w.b, &["merge", "--no-edit", DIVERGED]);
    assert!(!out.status.success(), "the merge must conflict");
    assert!(read(&w.b, "readme.md").contains("<<<<<<<"));
    // Mid-merge the engine refuses to do anything.
    let before = snapshot(&w.b);
    match sync(&w.b) {
        Err(SyncError::Busy { state }) => assert_eq!(state, "merge"),
        other => panic!("expected Busy, got {other:?}"),
    }
    assert_eq!(snapshot(&w.b), before);
    write(&w.b, "readme.md", "line 1\nline 2 by A and B\nline 3\n");
    git(&w.b, &["add", "readme.md"]);
    git(&w.b, &["commit", "--quiet", "--no-edit"]);
    let resolved = head(&w.b);

    let o = sync_ok(&w.b);
    assert_eq!(o.integrated, Integration::UpToDate);
    assert!(o.pushed);
    assert_eq!((o.ahead, o.behind), (0, 0));
    assert_eq!(o.diverged_ref, None);
    assert_eq!(rev_opt(&w.b, DIVERGED), None, "stale diverged ref deleted");
    assert_eq!(rev(&w.remote, "main"), resolved);

    let o = sync_ok(&w.a);
    assert_eq!(o.integrated, Integration::FastForward);
    assert_eq!(head(&w.a), resolved);
    assert_eq!(
        read(&w.a, "readme.md"),
        "line 1\nline 2 by A and B\nline 3\n"
    );
    assert_eq!(read(&w.a, "later.md"), "later\n");
    assert_status_clean(&w.a);
    check(&w);
}

#[test]
fn unreachable_remote_then_back_pushes_what_was_committed_meanwhile() {
    let w = world();
    let moved = w.root.join("remote.moved");
    std::fs::rename(&w.remote, &moved).expect("rename away");

    write(&w.a, "one.md", "1\n");
    let c1 = commit_all(&w.a, "one");
    match sync(&w.a) {
        Err(SyncError::Fetch { remote, stderr }) => {
            assert_eq!(remote, "origin");
            assert!(!stderr.trim().is_empty(), "stderr captured");
            assert!(stderr.contains("remote.git"), "{stderr}");
        }
        other => panic!("expected Fetch error, got {other:?}"),
    }
    match push_only_with(&w.a, &cfg(), &cli()) {
        Err(SyncError::Push {
            rejected, stderr, ..
        }) => {
            assert!(!rejected);
            assert!(!stderr.is_empty());
        }
        other => panic!("expected Push error, got {other:?}"),
    }
    write(&w.a, "two.md", "2\n");
    let c2 = commit_all(&w.a, "two");
    assert_eq!(ahead_behind(&w.a, &cfg()).expect("ahead_behind"), (2, 0));
    assert_eq!(parents(&w.a, &c2), vec![c1.clone()]);

    std::fs::rename(&moved, &w.remote).expect("rename back");
    let o = sync_ok(&w.a);
    assert_eq!(o.integrated, Integration::UpToDate);
    assert!(o.pushed);
    assert_eq!((o.ahead, o.behind), (0, 0));
    assert_eq!(rev(&w.remote, "main"), c2);
    assert_eq!(rev(&w.remote, "main~1"), c1);

    let o = sync_ok(&w.b);
    assert_eq!(o.integrated, Integration::FastForward);
    assert_eq!(read(&w.b, "one.md"), "1\n");
    assert_eq!(read(&w.b, "two.md"), "2\n");
    check(&w);
}

#[test]
fn rejected_push_is_reported_and_the_next_sync_merges_and_pushes() {
    let w = world();
    write(&w.a, "a.md", "A\n");
    let ca = commit_all(&w.a, "A");
    let p = push_only_with(&w.a, &cfg(), &cli()).expect("push A");
    assert!(p.pushed);
    assert_eq!((p.ahead, p.behind), (0, 0));
    assert_eq!(rev(&w.remote, "main"), ca);

    // B has not fetched: its tracking ref is stale, so it tries and is rejected.
    write(&w.b, "b.md", "B\n");
    let cb = commit_all(&w.b, "B");
    match push_only_with(&w.b, &cfg(), &cli()) {
        Err(e @ SyncError::Push { rejected: true, .. }) => {
            assert!(e.is_transient());
            assert!(e.to_string().contains("rejected"), "{e}");
        }
        other => panic!("expected a rejected push, got {other:?}"),
    }
    assert_eq!(rev(&w.remote, "main"), ca, "remote unchanged");
    assert_eq!(head(&w.b), cb);

    let o = sync_ok(&w.b);
    assert_eq!(o.integrated, Integration::Merged);
    assert!(o.pushed);
    assert_eq!(rev(&w.remote, "main"), head(&w.b));
    let o = sync_ok(&w.a);
    assert_eq!(o.integrated, Integration::FastForward);
    for d in [&w.a, &w.b] {
        assert_eq!(read(d, "a.md"), "A\n");
        assert_eq!(read(d, "b.md"), "B\n");
    }
    check(&w);
}

#[test]
fn files_in_the_way_block_the_update_and_nothing_changes() {
    let w = world();
    write(&w.a, "new.md", "tracked by A\n");
    write(&w.a, "secret.txt", "A's secret\n");
    write(&w.a, "readme.md", "line 1\nline 2 by A\nline 3\n");
    let ca = commit_all(&w.a, "A");
    assert!(sync_ok(&w.a).pushed);

    let b_head = head(&w.b);
    // An untracked file at a path the remote adds.
    write(&w.b, "new.md", "B's untracked\n");
    let before = snapshot(&w.b);
    match sync(&w.b) {
        Err(SyncError::Blocked { paths }) => {
            assert_eq!(paths, vec![PathBuf::from("new.md")]);
        }
        other => panic!("expected Blocked, got {other:?}"),
    }
    assert_eq!(snapshot(&w.b), before);
    assert_eq!(head(&w.b), b_head);
    std::fs::remove_file(w.b.join("new.md")).expect("rm");

    // An ignored file at a path the remote adds.
    std::fs::write(w.b.join(".git/info/exclude"), "secret.txt\n").expect("exclude");
    write(&w.b, "secret.txt", "B's secret\n");
    let before = snapshot(&w.b);
    match sync(&w.b) {
        Err(SyncError::Blocked { paths }) => assert_eq!(paths, vec![PathBuf::from("secret.txt")]),
        other => panic!("expected Blocked, got {other:?}"),
    }
    assert_eq!(snapshot(&w.b), before);
    assert_eq!(head(&w.b), b_head);
    std::fs::rename(w.b.join("secret.txt"), w.root.join("secret.b")).expect("mv");

    // An uncommitted change to a tracked file the remote changes.
    write(&w.b, "readme.md", "uncommitted by B\n");
    let before = snapshot(&w.b);
    match sync(&w.b) {
        Err(SyncError::Blocked { paths }) => assert_eq!(paths, vec![PathBuf::from("readme.md")]),
        other => panic!("expected Blocked, got {other:?}"),
    }
    assert_eq!(snapshot(&w.b), before);
    assert_eq!(head(&w.b), b_head);
    git(&w.b, &["checkout", "--quiet", "--", "readme.md"]);

    // An uncommitted change the update does not touch is kept.
    write(&w.b, "notes.md", "uncommitted notes by B\n");
    let o = sync_ok(&w.b);
    assert_eq!(o.integrated, Integration::FastForward);
    assert_eq!(head(&w.b), ca);
    assert_eq!(read(&w.b, "notes.md"), "uncommitted notes by B\n");
    assert_eq!(read(&w.b, "new.md"), "tracked by A\n");
    check(&w);
}

#[test]
fn merge_blocked_by_an_uncommitted_change_moves_nothing() {
    let w = world();
    write(&w.a, "readme.md", "line 1\nline 2 by A\nline 3\n");
    commit_all(&w.a, "A");
    assert!(sync_ok(&w.a).pushed);
    write(&w.b, "b.md", "B\n");
    let cb = commit_all(&w.b, "B");
    write(&w.b, "readme.md", "dirty\n");
    let before = snapshot(&w.b);
    match sync(&w.b) {
        Err(SyncError::Blocked { paths }) => assert_eq!(paths, vec![PathBuf::from("readme.md")]),
        other => panic!("expected Blocked, got {other:?}"),
    }
    assert_eq!(head(&w.b), cb);
    assert_eq!(snapshot(&w.b), before);
    // Once committed (what the caller does), the merge conflicts: diverged, still untouched.
    commit_all(&w.b, "B dirty");
    let before = snapshot(&w.b);
    assert_eq!(sync_ok(&w.b).integrated, Integration::Diverged);
    assert_eq!(snapshot(&w.b), before);
    check(&w);
}

#[test]
fn an_uncommitted_deletion_is_not_undone_by_an_update() {
    let w = world();
    write(&w.a, "notes.md", "notes, edited by A\n");
    commit_all(&w.a, "A");
    assert!(sync_ok(&w.a).pushed);
    let b_head = head(&w.b);
    std::fs::remove_file(w.b.join("notes.md")).expect("rm");
    match sync(&w.b) {
        Err(SyncError::Blocked { paths }) => assert_eq!(paths, vec![PathBuf::from("notes.md")]),
        other => panic!("expected Blocked, got {other:?}"),
    }
    assert!(!w.b.join("notes.md").exists(), "deletion kept");
    assert_eq!(head(&w.b), b_head);
    check(&w);
}

#[test]
fn empty_remote_gets_its_branch_and_an_unborn_clone_fast_forwards() {
    let dir = tempdir();
    let root = dir.path().canonicalize().expect("canonical");
    git(
        &root,
        &["init", "--quiet", "--bare", "-b", "main", "remote.git"],
    );
    git(&root, &["clone", "--quiet", "remote.git", "a"]);
    let a = root.join("a");

    // Nothing anywhere: nothing to do.
    let o = sync_ok(&a);
    assert_eq!(o.integrated, Integration::UpToDate);
    assert!(!o.pushed && !o.fetched);
    assert_eq!(o.head, None);

    write(&a, "first.md", "first\n");
    let c = commit_all(&a, "first");
    let o = sync_ok(&a);
    assert_eq!(o.integrated, Integration::UpToDate);
    assert!(o.pushed);
    assert_eq!(rev(&root.join("remote.git"), "main"), c);

    // A notebook created with git init, then given the remote.
    let b = root.join("b");
    git(&root, &["init", "--quiet", "-b", "main", "b"]);
    git(&b, &["remote", "add", "origin", "../remote.git"]);
    let o = sync_ok(&b);
    assert_eq!(o.integrated, Integration::FastForward);
    assert_eq!(head(&b), c);
    assert_eq!(read(&b, "first.md"), "first\n");
    assert_status_clean(&b);
    for r in [&root.join("remote.git"), &a, &b] {
        assert_fsck_clean(r);
    }
}

#[test]
fn unrelated_histories_diverge_instead_of_merging() {
    let w = world();
    let c = w.root.join("c");
    git(&w.root, &["init", "--quiet", "-b", "main", "c"]);
    write(&c, "mine.md", "mine\n");
    let mine = commit_all(&c, "own history");
    git(&c, &["remote", "add", "origin", "../remote.git"]);
    let before = snapshot(&c);
    let o = sync_ok(&c);
    assert_eq!(o.integrated, Integration::Diverged);
    assert!(!o.pushed);
    assert_eq!(head(&c), mine);
    assert_eq!(snapshot(&c), before);
    assert_eq!(rev(&c, DIVERGED), rev(&w.remote, "main"));
    assert_fsck_clean(&c);
    check(&w);
}

#[test]
fn no_push_when_asked_not_to_and_other_refusals() {
    let w = world();
    write(&w.a, "x.md", "x\n");
    commit_all(&w.a, "x");
    let o = sync_once_with(&w.a, &cfg(), false, &cli()).expect("sync");
    assert!(!o.pushed);
    assert_eq!((o.ahead, o.behind), (1, 0));
    assert_eq!(ahead_behind(&w.a, &cfg()).expect("ahead_behind"), (1, 0));

    let nope = SyncConfig {
        remote: "nope".into(),
        ..cfg()
    };
    assert!(matches!(
        sync_once_with(&w.a, &nope, true, &cli()),
        Err(SyncError::NoRemote { remote }) if remote == "nope"
    ));
    let dash = SyncConfig {
        branch: Some("--upload-pack=touch".into()),
        ..cfg()
    };
    assert!(matches!(
        sync_once_with(&w.a, &dash, true, &cli()),
        Err(SyncError::InvalidName { what: "branch", .. })
    ));

    git(&w.a, &["checkout", "--quiet", "--detach"]);
    assert!(matches!(sync(&w.a), Err(SyncError::Detached)));
    git(&w.a, &["checkout", "--quiet", "main"]);

    std::fs::write(w.a.join(".git/index.lock"), "").expect("lock");
    assert!(matches!(sync(&w.a), Err(SyncError::Locked { .. })));
    std::fs::remove_file(w.a.join(".git/index.lock")).expect("unlock");
    std::fs::write(w.a.join(".git/refs/heads/main.lock"), "").expect("lock");
    assert!(matches!(sync(&w.a), Err(SyncError::Locked { .. })));
    std::fs::remove_file(w.a.join(".git/refs/heads/main.lock")).expect("unlock");

    // An explicit remote branch other than the local one.
    let other = SyncConfig {
        branch: Some("elsewhere".into()),
        ..cfg()
    };
    let o = sync_once_with(&w.a, &other, true, &cli()).expect("sync");
    assert!(o.pushed);
    assert_eq!(o.remote_branch, "elsewhere");
    assert_eq!(o.branch, "main");
    assert_eq!(rev(&w.remote, "elsewhere"), head(&w.a));
    check(&w);
}

#[test]
fn a_hung_git_is_killed_with_its_children() {
    let w = world();
    let bin = w.root.join("fakegit");
    let pidfile = w.root.join("child.pid");
    std::fs::write(
        &bin,
        format!(
            "#!/bin/sh\nsleep 300 &\necho $! > '{}'\nwait\n",
            pidfile.display()
        ),
    )
    .expect("script");
    let mut perms = std::fs::metadata(&bin).expect("md").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&bin, perms).expect("chmod");

    let git = GitCli {
        program: bin.into_os_string(),
        timeout: Duration::from_secs(2),
        ..cli()
    };
    let t0 = Instant::now();
    match sync_once_with(&w.a, &cfg(), true, &git) {
        Err(SyncError::Timeout { command, after }) => {
            assert_eq!(command, "fetch");
            assert_eq!(after, Duration::from_secs(2));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid")
        .trim()
        .parse()
        .expect("pid number");
    // The grandchild (the shell's sleep) dies with the group.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next());
        if stat.is_empty() || state == Some("Z") || state == Some("X") {
            break;
        }
        assert!(Instant::now() < deadline, "sleep {pid} still alive: {stat}");
        std::thread::sleep(Duration::from_millis(50));
    }
    check(&w);
}
