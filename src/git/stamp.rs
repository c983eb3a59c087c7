//! What identifies one version of a file on disk (its stamp), when that
//! stamp can be trusted to show the next write (settled), and whether an
//! index entry was recorded from it, by git's own rules: the stager and the
//! stat-data refresh decide with it whether a file must be read again.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use git2::IndexEntry;

/// What identifies one version of a file on disk, cheaply.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Stamp {
    pub(super) len: u64,
    pub(super) mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    mode: u32,
}

impl Stamp {
    pub(super) fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
            mode: meta.mode(),
        }
    }

    /// The same from a raw `stat` (the refresh's `fstatat`).
    pub(super) fn of_stat(st: &libc::stat) -> Stamp {
        Stamp {
            len: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
            ino: st.st_ino,
            mode: st.st_mode,
        }
    }

    /// True when the index entry was recorded from exactly this file state,
    /// as with `core.fileMode` on (see [`Stamp::matches_in`]).
    pub(super) fn matches(&self, e: &IndexEntry) -> bool {
        self.matches_in(e, true)
    }

    /// True when the index entry was recorded from exactly this file state.
    /// The mode is compared the way git does: the kind (symlink or file),
    /// and, when `exec_bit` (`core.fileMode`) is on, the owner's execute bit
    /// alone (git records 100755 from it: `chmod g+x` or `o+x` is no change).
    pub(super) fn matches_in(&self, e: &IndexEntry, exec_bit: bool) -> bool {
        const KIND: u32 = 0o170000;
        let kind_matches = if self.mode & KIND == 0o120000 {
            e.mode == 0o120000
        } else {
            self.mode & KIND == 0o100000 && e.mode & KIND == 0o100000
        };
        let exec_matches = !exec_bit || (e.mode ^ self.mode) & 0o100 == 0;
        // The index keeps 32-bit truncations of these fields.
        kind_matches
            && exec_matches
            && e.file_size == self.len as u32
            && e.ino == self.ino as u32
            && e.mtime.seconds() == self.mtime.0 as i32
            && e.mtime.nanoseconds() == self.mtime.1 as u32
            && e.ctime.seconds() == self.ctime.0 as i32
            && e.ctime.nanoseconds() == self.ctime.1 as u32
    }

    /// The stamp of `path` now, `None` when it is gone.
    pub(super) fn now(path: &Path) -> Option<Stamp> {
        std::fs::symlink_metadata(path).ok().map(|m| Stamp::of(&m))
    }
}

/// Wait until a write to the file would be visible in its stat data, i.e.
/// until the file's mtime is older than the filesystem clock's current tick
/// (timestamps come from a coarse clock: two writes within one tick share an
/// mtime). Only a file written in the last few milliseconds waits (a second
/// on filesystems with whole-second times). `None` when the file changes
/// meanwhile: it is still being written.
pub(super) fn settle(full: &Path, stamp: Stamp) -> Option<Stamp> {
    let deadline = Instant::now() + SETTLE_MAX;
    loop {
        let (now_s, now_ns) = coarse_now();
        let (s, ns) = stamp.mtime;
        let settled = if ns == 0 {
            // Possibly a whole-second filesystem: the second must be over.
            s < now_s
        } else {
            (s, ns) < (now_s, now_ns)
        };
        if settled {
            return Some(stamp);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
        if Stamp::now(full) != Some(stamp) {
            return None;
        }
    }
}

/// Longest wait in [`settle`].
const SETTLE_MAX: Duration = Duration::from_millis(1500);

/// The clock file timestamps are taken from (`CLOCK_REALTIME_COARSE`).
pub(super) fn coarse_now() -> (i64, i64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    if rc != 0 {
        // Not on Linux. The epoch makes nothing settle: files are rechecked.
        return (0, 0);
    }
    (ts.tv_sec, ts.tv_nsec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::Repository;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> std::process::Output {
        Command::new("git")
            .current_dir(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("git runs")
    }

    /// What git says of `f` by its stat data alone: `git diff-files` lists
    /// an entry whose recorded stat (mode included) differs from the file.
    fn git_sees_unchanged(dir: &Path) -> bool {
        let out = git(dir, &["diff-files", "--name-only", "--", "f"]);
        assert!(out.status.success(), "git diff-files: {out:?}");
        out.stdout.is_empty()
    }

    /// `Stamp::matches_in` against entries git itself wrote, with git's own
    /// verdict as the expected answer: only the owner's execute bit counts,
    /// and with `core.fileMode` off the execute bit is never compared.
    #[test]
    fn stamp_compares_the_execute_bit_like_git() {
        // (permissions, core.fileMode when adding, core.fileMode when
        // comparing, git's verdict we expect to see)
        let cases = [
            (0o644, true, true, true),
            (0o654, true, true, true),   // g+x only: no change for git
            (0o645, true, true, true),   // o+x only
            (0o655, true, true, true),   // g+x and o+x
            (0o744, true, true, true),   // u+x: recorded as 100755
            (0o755, false, false, true), // recorded 100644, bit not compared
            (0o755, false, true, false), // the same entry, bit compared
            (0o654, false, true, true),  // g+x: still no change
        ];
        for (perm, add_mode, compare_mode, expected) in cases {
            let dir = tempfile::tempdir().expect("tempdir");
            let d = dir.path();
            assert!(git(d, &["init", "-q"]).status.success());
            let set = |on: bool| {
                let v = if on { "true" } else { "false" };
                assert!(git(d, &["config", "core.fileMode", v]).status.success());
            };
            set(add_mode);
            let f = d.join("f");
            std::fs::write(&f, "x\n").expect("write");
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(perm)).expect("chmod");
            assert!(git(d, &["add", "f"]).status.success());
            set(compare_mode);
            let verdict = git_sees_unchanged(d);
            assert_eq!(verdict, expected, "git's verdict for {perm:o}");
            let repo = Repository::open(d).expect("open");
            let entry = repo
                .index()
                .expect("index")
                .get_path(Path::new("f"), 0)
                .expect("entry");
            let stamp = Stamp::of(&std::fs::symlink_metadata(&f).expect("stat"));
            assert_eq!(
                stamp.matches_in(&entry, compare_mode),
                verdict,
                "mode {perm:o}, entry {:o}, core.fileMode {add_mode} then {compare_mode}",
                entry.mode
            );
        }
    }
}
