//! Recovery from gitlockd's own crash in the middle of a git write.
//!
//! libgit2 writes the index, refs and reflogs through lock files
//! (`index.lock`, `refs/heads/main.lock`, ...) renamed into place. A `kill -9`
//! during that write leaves the lock file behind (36 of 40 kills in
//! tech-findings §4), and every later writer, ours included, fails until it
//! is removed: the daemon would be wedged forever.
//!
//! Deleting lock files blindly would be worse: a live `git` may own them. So
//! every write gitlockd makes is bracketed by a marker file in the git
//! directory naming this process (pid and start time). At start-up, a marker
//! whose process is gone proves that gitlockd died mid-write, and only then
//! are the lock files that appeared during that write (not older than the
//! marker) and that no process holds open removed. A lock file that is not
//! ours is never touched: it is reported, and gitlockd retries until its
//! owner releases it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The marker's file name inside the git directory.
pub const MARKER: &str = "gitlockd-writing";

/// Slack for filesystem timestamp granularity when comparing with the marker.
const MTIME_SLACK: Duration = Duration::from_secs(2);

/// Marks a git write in progress; removed when dropped.
#[derive(Debug)]
pub struct WriteMarker {
    path: PathBuf,
}

impl WriteMarker {
    /// Writes the marker into `git_dir` before a write begins.
    pub fn begin(git_dir: &Path) -> io::Result<WriteMarker> {
        let path = git_dir.join(MARKER);
        let pid = std::process::id();
        let start = process_start_time(pid).unwrap_or_default();
        fs::write(&path, format!("{pid} {start}\n"))?;
        Ok(WriteMarker { path })
    }
}

impl Drop for WriteMarker {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Cleans up after a crashed gitlockd write in the repository whose git
/// directory is `git_dir` and common directory `common_dir` (they differ for
/// linked worktrees). Returns the lock files it removed.
pub fn recover(git_dir: &Path, common_dir: &Path) -> Vec<PathBuf> {
    let marker = git_dir.join(MARKER);
    let Ok(text) = fs::read_to_string(&marker) else {
        return Vec::new();
    };
    let mut fields = text.split_whitespace();
    let pid = fields.next().and_then(|p| p.parse::<u32>().ok());
    let start = fields.next().unwrap_or_default().to_string();
    if let Some(pid) = pid {
        let alive = process_start_time(pid).is_some_and(|s| s == start);
        if alive {
            // A live gitlockd (this one, or another instance) is writing: not a crash.
            return Vec::new();
        }
    }
    let since = fs::metadata(&marker)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
        .checked_sub(MTIME_SLACK)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let removed = remove_fresh_locks(git_dir, common_dir, since, pid);
    let _ = fs::remove_file(&marker);
    removed
}

/// Removes the lock files not older than `since` that no process holds
/// open: what a write of ours that died (a crash, or a `git` we killed on
/// timeout) left behind. `pid` is only for the log.
pub fn remove_fresh_locks(
    git_dir: &Path,
    common_dir: &Path,
    since: SystemTime,
    pid: Option<u32>,
) -> Vec<PathBuf> {
    let mut candidates = vec![
        git_dir.join("index.lock"),
        git_dir.join("HEAD.lock"),
        git_dir.join("logs/HEAD.lock"),
        common_dir.join("packed-refs.lock"),
    ];
    collect_locks(&common_dir.join("refs"), &mut candidates);
    collect_locks(&common_dir.join("logs/refs"), &mut candidates);
    let open = open_files();
    let mut removed = Vec::new();
    for lock in candidates {
        let Ok(meta) = fs::symlink_metadata(&lock) else {
            continue;
        };
        let fresh = meta.modified().is_ok_and(|m| m >= since);
        let canonical = lock.canonicalize().unwrap_or_else(|_| lock.clone());
        if fresh && !open.contains(&canonical) && fs::remove_file(&lock).is_ok() {
            tracing::warn!(lock = %lock.display(), pid = ?pid, "removed a lock file left by an interrupted write of gitlockd's");
            removed.push(lock);
        }
    }
    removed
}

/// Every `*.lock` file below `dir`.
fn collect_locks(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_locks(&path, out),
            Ok(_) if path.extension().is_some_and(|e| e == "lock") => out.push(path),
            _ => {}
        }
    }
}

/// Files any process has open (what `/proc/*/fd` shows us; other users'
/// processes are invisible unless we are root, which is fine: their lock
/// files would not be fresh under our marker anyway).
fn open_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path()) {
                out.push(target);
            }
        }
    }
    out
}

/// The process's start time in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), which tells a live process from a reused pid.
fn process_start_time(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_string)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_live_writer_is_left_alone_and_a_dead_ones_locks_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let git = dir.path();
        fs::create_dir_all(git.join("refs/heads")).unwrap();
        // Our own live marker: nothing is removed.
        let marker = WriteMarker::begin(git).unwrap();
        fs::write(git.join("index.lock"), "partial").unwrap();
        assert!(recover(git, git).is_empty());
        assert!(git.join("index.lock").exists());
        std::mem::forget(marker);
        // Pretend the writer died: a pid that cannot exist.
        fs::write(git.join(MARKER), "4194305 1\n").unwrap();
        fs::write(git.join("refs/heads/main.lock"), "x").unwrap();
        let mut removed = recover(git, git);
        removed.sort();
        assert_eq!(
            removed,
            vec![git.join("index.lock"), git.join("refs/heads/main.lock")]
        );
        assert!(!git.join(MARKER).exists());
    }

    #[test]
    fn without_a_marker_foreign_locks_are_never_touched() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("index.lock"), "git's").unwrap();
        assert!(recover(dir.path(), dir.path()).is_empty());
        assert!(dir.path().join("index.lock").exists());
    }

    #[test]
    fn start_time_of_this_process_is_known() {
        assert!(process_start_time(std::process::id()).is_some());
    }
}
