//! Safety review of the racy-git rules and of the overdue mode
//! (`auto_commit_overdue`: past max_delay a file caught changing is
//! committed as read, its entry smudged): `git status` and `git diff` must
//! tell the truth afterwards, a change in the same second after a commit
//! must be seen by git and by gitlockd's next round, and a commit holds
//! only content the file really had.

mod git_util;

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use git_util::*;

/// Version `n` of a fixed-size text file.
fn version(n: u64) -> String {
    format!("version {n:08}\n")
}

/// What git and gitlockd say of `f` after it was rewritten right after a
/// commit: git lists it as modified, `git diff` shows the new text,
/// gitlockd's scan lists it, and its next round commits it.
fn all_see_the_change(d: &Path, gm: &gitlockd::git::GitManager, f: &str, now: &str) {
    let committed = git(d, &["show", &format!("HEAD:{f}")]);
    assert_ne!(committed, now, "the test must change the file");
    assert_eq!(
        git(d, &["status", "--porcelain", "--", f]),
        format!(" M {f}\n"),
        "git status after a same-second rewrite\n{}",
        report(d)
    );
    let diff = git(d, &["diff", "--", f]);
    assert!(diff.contains(&format!("+{}", now.trim_end())), "{diff}");
    let pending = gm.pending_changes(&opts()).expect("pending");
    assert_eq!(pending, [PathBuf::from(f)], "gitlockd's scan");
    auto(gm, &[f]);
    assert_eq!(git(d, &["show", &format!("HEAD:{f}")]), now);
    assert_status_clean(d);
}

#[test]
fn a_same_size_rewrite_right_after_a_commit_is_seen() {
    let (dir, gm) = notebook();
    let d = dir.path();
    for n in 0..20 {
        write(d, "f.md", &version(2 * n));
        auto(&gm, &["f.md"]);
        // Same size, same second (most likely the same clock tick).
        write(d, "f.md", &version(2 * n + 1));
        all_see_the_change(d, &gm, "f.md", &version(2 * n + 1));
    }
    assert_fsck_clean(d);
}

/// Rewrites `f` (fixed size) from another thread until stopped; the number
/// of the last version written.
struct Writer {
    stop: Arc<AtomicBool>,
    last: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// `in_place`: overwrite the bytes without truncating (as a database or
    /// an mmap does), else truncate and write (as most editors' plain save).
    fn start(path: PathBuf, size: usize, in_place: bool) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let last = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, last) = (stop.clone(), last.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let data = uniform(n, size);
                    if in_place {
                        let mut f = std::fs::OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .expect("open");
                        f.seek(SeekFrom::Start(0)).expect("seek");
                        f.write_all(&data).expect("write");
                    } else {
                        std::fs::write(&path, &data).expect("write");
                    }
                    last.store(n, Ordering::SeqCst);
                }
            })
        };
        Writer {
            stop,
            last,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("writer");
        }
        self.last.load(Ordering::SeqCst)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Polls `cond` (bounded: 20 s), failing with `what`.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Version `n`: `size` bytes of one letter, then its number.
fn uniform(n: u64, size: usize) -> Vec<u8> {
    let mut data = vec![b'a' + (n % 26) as u8; size - 9];
    data.extend_from_slice(format!("{:08}\n", n % 100_000_000).as_bytes());
    data
}

/// True when `blob` is a whole version (or empty: a save caught between
/// its truncation and its write, a state the file had).
fn is_a_version(blob: &[u8], size: usize, empty_ok: bool) -> bool {
    if blob.is_empty() {
        return empty_ok;
    }
    blob.len() == size
        && std::str::from_utf8(&blob[size - 9..size - 1])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|n| blob == uniform(n, size).as_slice())
}

fn head_blob(d: &Path, f: &str) -> Vec<u8> {
    git_cmd(d)
        .args(["show", &format!("HEAD:{f}")])
        .output()
        .expect("git show")
        .stdout
}

/// Overdue commits of a file rewritten without pause; each commit must
/// hold a whole version.
fn overdue_commits_hold_whole_versions(size: usize, in_place: bool) {
    commits_hold_whole_versions(size, in_place, true)
}

fn commits_hold_whole_versions(size: usize, in_place: bool, overdue: bool) {
    let (dir, gm) = notebook();
    let d = dir.path().to_path_buf();
    std::fs::write(d.join("big.dat"), uniform(0, size)).expect("write");
    auto(&gm, &["big.dat"]);
    let mut writer = Writer::start(d.join("big.dat"), size, in_place);
    wait_until("the writer's first version", || {
        writer.last.load(Ordering::SeqCst) > 0
    });
    let mut commits = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while commits < 30 && Instant::now() < deadline {
        let rel = [PathBuf::from("big.dat")];
        let outcome = if overdue {
            gm.auto_commit_overdue(&rel, &opts())
        } else {
            gm.auto_commit_on_change(&rel, &opts())
        }
        .expect("commit");
        if outcome.commit.is_some() {
            commits += 1;
            let blob = head_blob(&d, "big.dat");
            assert!(
                is_a_version(&blob, size, !in_place),
                "committed {} bytes the file never held whole (in place: {in_place}): {:?}...",
                blob.len(),
                String::from_utf8_lossy(&blob[..blob.len().min(40)])
            );
        }
    }
    let last = writer.stop();
    assert!(
        commits > 0 && last > 0,
        "{commits} commits, {last} versions"
    );
    // The entry was smudged: git compares the content, not the stat data.
    let now = std::fs::read(d.join("big.dat")).expect("read");
    let status = git(&d, &["status", "--porcelain", "--", "big.dat"]);
    assert_eq!(
        status.is_empty(),
        head_blob(&d, "big.dat") == now,
        "{status:?}"
    );
    // A same-size rewrite in the same second is seen, then committed.
    std::fs::write(d.join("big.dat"), uniform(last + 1, size)).expect("write");
    assert_eq!(
        git(&d, &["status", "--porcelain", "--", "big.dat"]),
        " M big.dat\n"
    );
    auto(&gm, &["big.dat"]);
    assert_eq!(head_blob(&d, "big.dat"), uniform(last + 1, size));
    assert_status_clean(&d);
    assert_fsck_clean(&d);
}

/// Before the fix, 5 runs in 8 committed pages of two versions (after ten
/// torn reads the last one was kept). Now a torn read is never kept when it
/// shows (stat data or two reads differ); what still gets through, about
/// one run in 8 on two loaded cores, is a writer preempted in the middle of
/// its `write`: its times changed when the write began, and both reads see
/// the same half-written pages. No check from outside the writer can see
/// that (`git add` has the same hole), hence run on demand only.
#[test]
#[ignore = "residual risk: a writer preempted mid-write is undetectable; run with --ignored"]
fn overdue_commits_of_a_file_rewritten_in_place_hold_whole_versions() {
    overdue_commits_hold_whole_versions(256 << 10, true);
}

#[test]
fn overdue_commits_of_a_file_saved_by_truncation_hold_whole_versions() {
    overdue_commits_hold_whole_versions(256 << 10, false);
}

#[test]
fn a_smudged_entry_is_not_taken_for_clean_after_a_same_second_change() {
    let (dir, gm) = notebook();
    let d = dir.path().to_path_buf();
    write(&d, "f.md", &version(0));
    auto(&gm, &["f.md"]);
    let path = d.join("f.md");
    let mut writer = Writer::start(path.clone(), 64, false);
    wait_until("the writer's first version", || {
        writer.last.load(Ordering::SeqCst) > 0
    });
    let mut smudged = false;
    for _ in 0..50 {
        let outcome = gm
            .auto_commit_overdue(&[PathBuf::from("f.md")], &opts())
            .expect("overdue commit");
        assert!(outcome.recheck.is_empty(), "{outcome:?}");
        let mtime = git(&d, &["ls-files", "--debug", "--", "f.md"]);
        if mtime.contains("mtime: 0:0") {
            smudged = true;
            break;
        }
    }
    let last = writer.stop();
    assert!(smudged, "no overdue commit caught the file changing");
    // Whatever was committed, the file now differs from it (same size).
    let committed = head_blob(&d, "f.md");
    let mut next = last + 1;
    while uniform(next, 64) == committed {
        next += 1;
    }
    std::fs::write(&path, uniform(next, 64)).expect("write");
    let now = String::from_utf8(uniform(next, 64)).expect("utf-8");
    all_see_the_change(&d, &gm, "f.md", &now);
    assert_fsck_clean(&d);
}

/// Version `n` of a file whose size changes with every version (1 KB to
/// about 300 KB): one letter, then its number.
fn varied(n: u64) -> Vec<u8> {
    uniform(n, 1000 + (n as usize * 7919) % 300_000)
}

/// True when `blob` is one of the [`varied`] versions.
fn is_a_varied_version(blob: &[u8]) -> bool {
    blob.len() >= 9
        && std::str::from_utf8(&blob[blob.len() - 9..blob.len() - 1])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|n| blob == varied(n).as_slice())
}

#[test]
fn a_file_that_grows_and_shrinks_while_read_is_committed_whole_or_not_at_all() {
    let (dir, gm) = notebook();
    let d = dir.path().to_path_buf();
    let path = d.join("v.dat");
    std::fs::write(&path, varied(0)).expect("write");
    auto(&gm, &["v.dat"]);
    let stop = Arc::new(AtomicBool::new(false));
    let last = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, last, path) = (stop.clone(), last.clone(), path.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                // Truncate and write: the size goes to 0, then up to the new one.
                std::fs::write(&path, varied(n)).expect("write");
                last.store(n, Ordering::SeqCst);
            }
        })
    };
    wait_until("the writer's first version", || {
        last.load(Ordering::SeqCst) > 0
    });
    let mut commits = 0;
    // Mostly left for a recheck (it changes while read): a few seconds of
    // rounds, each commit checked.
    let deadline = Instant::now() + Duration::from_secs(4);
    while commits < 20 && Instant::now() < deadline {
        let outcome = gm
            .auto_commit_on_change(&[PathBuf::from("v.dat")], &opts())
            .expect("commit");
        if outcome.commit.is_some() {
            commits += 1;
            let blob = head_blob(&d, "v.dat");
            assert!(
                blob.is_empty() || is_a_varied_version(&blob),
                "committed {} bytes that were never the whole file",
                blob.len()
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer");
    // Quiet now: the next round commits the last version exactly.
    auto(&gm, &["v.dat"]);
    assert_eq!(head_blob(&d, "v.dat"), std::fs::read(&path).expect("read"));
    assert_status_clean(&d);
    assert_fsck_clean(&d);
}
