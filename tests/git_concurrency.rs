//! GitManager under concurrency: threads, async holders and a foreign `git`
//! process on one notebook. `git fsck` must be clean after each.

mod git_util;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use git_util::*;
use gitlockd::git::{GitError, GitManager};
use gitlockd::lock::{with_owner, LockMode, OwnerId};

/// Retry `f` while it fails with a retryable error, for up to a minute.
fn retrying<T>(what: &str, mut f: impl FnMut() -> Result<T, GitError>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f() {
            Ok(t) => return t,
            Err(e) if e.is_retryable() && Instant::now() < deadline => std::thread::yield_now(),
            Err(e) => panic!("{what}: {}", e.describe()),
        }
    }
}

fn assert_linear(dir: &Path, commits: usize) {
    assert_eq!(git(dir, &["rev-list", "--merges", "HEAD"]), "", "no merges");
    assert_eq!(
        git(dir, &["rev-list", "--count", "HEAD"]).trim(),
        commits.to_string()
    );
}

fn head_files(dir: &Path) -> Vec<String> {
    lines(&git(dir, &["ls-tree", "-r", "--name-only", "HEAD"]))
}

#[test]
fn concurrent_commits_on_one_notebook_serialize() {
    const THREADS: usize = 8;
    const EACH: usize = 6;
    let (dir, _gm) = notebook();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let root = dir.path().to_path_buf();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let gm = GitManager::new(&root).unwrap();
                barrier.wait();
                for n in 0..EACH {
                    let rel = write(&root, &format!("t{t}/n{n}.md"), &format!("{t} {n}\n"));
                    let out = gm
                        .auto_commit_on_change(std::slice::from_ref(&rel), &opts())
                        .unwrap();
                    assert!(out.commit.is_some(), "{t}/{n}: a commit");
                    assert_eq!(out.paths, vec![rel]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_linear(dir.path(), THREADS * EACH);
    assert_eq!(head_files(dir.path()).len(), THREADS * EACH);
    assert_status_clean(dir.path());
    assert_fsck_clean(dir.path());
}

#[test]
fn concurrent_add_and_commit() {
    let (dir, gm) = notebook();
    let stop = Arc::new(AtomicBool::new(false));
    let adders: Vec<_> = (0..3)
        .map(|t| {
            let gm = gm.clone();
            let root = dir.path().to_path_buf();
            std::thread::spawn(move || {
                for n in 0..15 {
                    let rel = write(&root, &format!("a{t}-{n}.md"), "x\n");
                    gm.add_file(&rel).unwrap();
                }
            })
        })
        .collect();
    let committers: Vec<_> = (0..2)
        .map(|t| {
            let gm = gm.clone();
            let stop = stop.clone();
            let root = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    write(&root, &format!("c{t}-{n}.md"), "y\n");
                    gm.commit(&format!("c{t}-{n}"), None).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    for a in adders {
        a.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let written: usize = committers.into_iter().map(|c| c.join().unwrap()).sum();
    gm.commit("rest", None).unwrap();
    assert_eq!(head_files(dir.path()).len(), 45 + written);
    assert_status_clean(dir.path());
    assert_fsck_clean(dir.path());
}

#[test]
fn concurrent_reads_and_writes() {
    let (dir, gm) = notebook();
    write(dir.path(), "base.md", "base\n");
    gm.commit("base", None).unwrap().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let gm = gm.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(Ordering::Relaxed) || reads == 0 {
                    let history = gm.get_file_history(None, 0).unwrap();
                    assert!(!history.is_empty());
                    let (_, bytes) = gm.get_file_at_commit(Path::new("base.md"), "HEAD").unwrap();
                    assert_eq!(bytes, b"base\n");
                    gm.get_diff(None, None, None).unwrap();
                    gm.pending_changes(&opts()).unwrap();
                    assert!(gm.head_info().unwrap().head.is_some());
                    gm.repo_state().unwrap();
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let gm = gm.clone();
            let root = dir.path().to_path_buf();
            std::thread::spawn(move || {
                for n in 0..10 {
                    let rel = write(&root, &format!("w{t}-{n}.md"), "w\n");
                    assert!(gm
                        .auto_commit_on_change(&[rel], &opts())
                        .unwrap()
                        .commit
                        .is_some());
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert_linear(dir.path(), 21);
    assert_status_clean(dir.path());
    assert_fsck_clean(dir.path());
}

/// Two threads auto-committing, racing `git` CLI commits made under the
/// notebook's lock (as `gitlockd lock -- git commit` does). Nothing may be
/// lost or reverted, history stays linear, fsck stays clean.
#[test]
fn auto_commit_racing_other_commits() {
    const OURS: usize = 16;
    const CLI: usize = 6;
    let (dir, gm) = notebook();
    write(dir.path(), "base.md", "base\n");
    gm.commit("base", None).unwrap().unwrap();
    let barrier = Arc::new(Barrier::new(3));
    let ours = our_writers(&gm, dir.path(), OURS, &barrier);
    let cli = {
        let root = dir.path().to_path_buf();
        let lock = gm.lock().clone();
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            barrier.wait();
            for n in 0..CLI {
                let name = format!("cli-{n}.md");
                let _hold = lock
                    .lock_blocking(OwnerId::fresh(), LockMode::Exclusive, None)
                    .unwrap();
                write(&root, &name, "cli\n");
                git(&root, &["add", &name]);
                git(&root, &["commit", "-q", "-m", &name]);
            }
        })
    };
    for h in ours {
        h.join().unwrap();
    }
    cli.join().unwrap();
    let mut want = our_files(OURS);
    want.extend((0..CLI).map(|n| format!("cli-{n}.md")));
    want.sort();
    assert_eq!(
        head_files(dir.path()),
        want,
        "every committed file is in HEAD"
    );
    assert_linear(dir.path(), 1 + OURS + CLI);
    assert_status_clean(dir.path());
    assert_fsck_clean(dir.path());
}

/// Auto-commits racing another libgit2 handle that commits behind
/// everyone's back (no lock, no index): HEAD moves between our read and our
/// commit, so ours are redone on the new HEAD and never revert theirs.
#[test]
fn auto_commit_racing_unlocked_head_moves() {
    const OURS: usize = 16;
    const FOREIGN: usize = 12;
    let (dir, gm) = notebook();
    write(dir.path(), "base.md", "base\n");
    gm.commit("base", None).unwrap().unwrap();
    let barrier = Arc::new(Barrier::new(3));
    let ours = our_writers(&gm, dir.path(), OURS, &barrier);
    let foreign = {
        let root = dir.path().to_path_buf();
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            let repo = git2::Repository::open(&root).unwrap();
            barrier.wait();
            let sig = git2::Signature::now("Foreign", "f@example.com").unwrap();
            let mut n = 0;
            while n < FOREIGN {
                let blob = repo.blob(format!("foreign {n}\n").as_bytes()).unwrap();
                let head = repo.head().unwrap().peel_to_commit().unwrap();
                let mut update = git2::build::TreeUpdateBuilder::new();
                update.upsert(format!("foreign-{n}.md"), blob, git2::FileMode::Blob);
                let tree = update.create_updated(&repo, &head.tree().unwrap()).unwrap();
                let tree = repo.find_tree(tree).unwrap();
                let msg = format!("foreign {n}");
                match repo.commit(Some("HEAD"), &sig, &sig, &msg, &tree, &[&head]) {
                    Ok(_) => n += 1,
                    Err(e) if e.code() == git2::ErrorCode::Modified => {}
                    Err(e) if e.code() == git2::ErrorCode::Locked => {}
                    Err(e) => panic!("foreign commit: {e}"),
                }
            }
        })
    };
    for h in ours {
        h.join().unwrap();
    }
    foreign.join().unwrap();
    let mut want = our_files(OURS);
    want.extend((0..FOREIGN).map(|n| format!("foreign-{n}.md")));
    want.sort();
    assert_eq!(
        head_files(dir.path()),
        want,
        "every committed file is in HEAD"
    );
    assert_linear(dir.path(), 1 + OURS + FOREIGN);
    assert_fsck_clean(dir.path());
}

/// Two threads each auto-committing `total / 2` new files once `barrier` opens.
fn our_writers(
    gm: &GitManager,
    root: &Path,
    total: usize,
    barrier: &Arc<Barrier>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..2)
        .map(|t| {
            let gm = gm.clone();
            let root = root.to_path_buf();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for n in 0..total / 2 {
                    let rel = write(
                        &root,
                        &format!("ours{t}-{n}.md"),
                        &format!("ours {t} {n}\n"),
                    );
                    let out = retrying("auto-commit", || {
                        gm.auto_commit_on_change(std::slice::from_ref(&rel), &opts())
                    });
                    assert!(out.recheck.is_empty());
                    assert!(out.commit.is_some(), "ours{t}-{n}: a commit");
                }
            })
        })
        .collect()
}

/// base.md and the files of [`our_writers`].
fn our_files(total: usize) -> Vec<String> {
    let mut files = vec!["base.md".to_string()];
    for t in 0..2 {
        files.extend((0..total / 2).map(|n| format!("ours{t}-{n}.md")));
    }
    files
}

#[test]
fn nested_calls_inside_a_held_lock_reenter() {
    let (dir, gm) = notebook();
    let owner = OwnerId::fresh();
    let guard = gm
        .lock()
        .lock_blocking(owner, LockMode::Exclusive, Some(Duration::from_secs(5)))
        .unwrap();
    // The holder's own calls run inside its hold.
    let rel = write(dir.path(), "a.md", "a\n");
    let out = with_owner(owner, || {
        gm.auto_commit_on_change(std::slice::from_ref(&rel), &opts())
    })
    .unwrap();
    assert!(out.commit.is_some());
    assert_eq!(
        with_owner(owner, || gm.get_file_history(None, 0))
            .unwrap()
            .len(),
        1
    );
    // Anyone else waits, and times out while the hold lasts.
    let other = gm.clone().with_lock_timeout(Duration::from_millis(50));
    let err = std::thread::spawn(move || other.commit("x", None).unwrap_err())
        .join()
        .unwrap();
    assert!(matches!(err, GitError::Lock(_)), "{err:?}");
    assert!(err.is_retryable());
    drop(guard);
    assert!(gm.get_file_history(None, 0).is_ok());
}

#[test]
fn git_manager_calls_under_an_async_hold_do_not_deadlock() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (dir, gm) = notebook();
    let root: PathBuf = dir.path().to_path_buf();
    rt.block_on(async move {
        let owner = OwnerId::fresh();
        let guard = gm
            .lock()
            .lock_async(owner, LockMode::Exclusive, Some(Duration::from_secs(5)))
            .await
            .unwrap();
        let rel = write(&root, "a.md", "a\n");
        let inner = gm.clone();
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::task::spawn_blocking(move || {
                with_owner(owner, || inner.auto_commit_on_change(&[rel], &opts()))
            }),
        )
        .await
        .expect("no deadlock")
        .unwrap()
        .unwrap();
        assert!(out.commit.is_some());
        // A thread without the hold is kept out.
        let outsider = gm.clone().with_lock_timeout(Duration::from_millis(50));
        let err = tokio::task::spawn_blocking(move || outsider.get_file_history(None, 0))
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, GitError::Lock(_)), "{err:?}");
        drop(guard);
    });
    assert_fsck_clean(dir.path());
}

/// A file appended to continuously while being auto-committed: a write
/// that overlaps staging is detected, the path is reported for a recheck,
/// left out of the commit, and its index entry is put back as it was.
#[test]
fn a_file_written_while_staged_is_rechecked_not_committed() {
    let (dir, gm) = notebook();
    let root = dir.path().to_path_buf();
    let path = root.join("busy.txt");
    std::fs::write(&path, "x".repeat(4 << 20)).unwrap();
    gm.commit("base", None).unwrap().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let path = path.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                f.write_all(b"y").unwrap();
            }
        })
    };
    let busy = PathBuf::from("busy.txt");
    let mut rechecks = 0;
    for _ in 0..40 {
        let staged_before = git(&root, &["ls-files", "-s", "busy.txt"]);
        let out = gm
            .auto_commit_on_change(std::slice::from_ref(&busy), &opts())
            .unwrap();
        if out.recheck.contains(&busy) {
            rechecks += 1;
            assert!(
                !out.paths.contains(&busy),
                "a rechecked file is not committed"
            );
            assert_eq!(out.commit, None);
            assert_eq!(git(&root, &["ls-files", "-s", "busy.txt"]), staged_before);
        }
        if rechecks >= 3 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(rechecks > 0, "writes during staging were never detected");
    // Once quiet, it is committed whole.
    let out = gm
        .auto_commit_on_change(std::slice::from_ref(&busy), &opts())
        .unwrap();
    assert!(out.recheck.is_empty() && out.commit.is_some());
    assert_eq!(
        git(&root, &["rev-parse", "HEAD:busy.txt"]),
        git(&root, &["hash-object", "busy.txt"])
    );
    assert_status_clean(&root);
    assert_fsck_clean(&root);
}
