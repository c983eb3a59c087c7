//! Tracked files that a `.gitignore` matches (added with `git add -f`).
//!
//! Ignore rules only keep *untracked* files out: `git add -A` still commits
//! changes to tracked ones, and so must gitlockd. The watcher drops events
//! for ignored paths and never watches ignored directories, so it asks this
//! set which ignored paths (and which ignored directories above them) still
//! matter. The set comes from `git ls-files -c -i --exclude-standard` (git
//! knows every ignore source and every index format) and is recomputed only
//! when the index file changed, and only when an ignored path shows up.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::GitProgram;

/// The tracked-but-ignored files of one repository, cached per index version.
#[derive(Debug)]
pub struct TrackedIgnored {
    /// Work-tree root (where git runs).
    root: PathBuf,
    /// The index file, whose identity tells when to recompute.
    index: PathBuf,
    /// (inode, size, mtime s, mtime ns) of the index the set was computed from.
    stamp: Option<(u64, u64, i64, i64)>,
    /// Notebook-relative paths.
    paths: BTreeSet<PathBuf>,
    /// How git is run.
    git: GitProgram,
}

impl TrackedIgnored {
    /// The set for the repository at `root` whose git directory is `git_dir`,
    /// computed now.
    pub fn new(root: &Path, git_dir: &Path) -> TrackedIgnored {
        let mut t = TrackedIgnored {
            root: root.to_path_buf(),
            index: git_dir.join("index"),
            stamp: None,
            paths: BTreeSet::new(),
            git: GitProgram::default(),
        };
        t.refresh(true);
        t
    }

    /// True when `rel` is a tracked ignored file, or a directory holding one:
    /// its events matter and (for a directory) it must be watched. Looks
    /// again first when the index changed since the last look.
    pub fn covers(&mut self, rel: &Path) -> bool {
        self.refresh(false);
        self.paths
            .range(rel.to_path_buf()..)
            .next()
            .is_some_and(|p| p.starts_with(rel))
    }

    /// Recompute when the index file changed (or always, with `force`).
    pub fn refresh(&mut self, force: bool) {
        let stamp = std::fs::metadata(&self.index)
            .ok()
            .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()));
        if !force && stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        let args = [
            "--no-optional-locks",
            "ls-files",
            "-z",
            "--cached",
            "--ignored",
            "--exclude-standard",
        ];
        match self.git.run_ok(&self.root, &args, &[], None) {
            Ok(out) => {
                self.paths = out
                    .stdout
                    .split(|b| *b == 0)
                    .filter(|p| !p.is_empty())
                    .map(|p| PathBuf::from(OsStr::from_bytes(p)))
                    .collect();
            }
            Err(e) => {
                // Without git, ignored tracked files are still committed by
                // every rescan (start, lost events), only not on each save.
                tracing::debug!(root = %self.root.display(), error = %e.describe(), "cannot list tracked ignored files");
                self.paths.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("git")
            .current_dir(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    #[test]
    fn forced_files_and_their_directories_are_covered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        git(d, &["init", "-q"]);
        std::fs::write(d.join(".gitignore"), "*.log\nbuild/\n").expect("write");
        std::fs::create_dir(d.join("build")).expect("mkdir");
        std::fs::write(d.join("build/out.txt"), "o").expect("write");
        std::fs::write(d.join("other.log"), "o").expect("write");
        let mut t = TrackedIgnored::new(d, &d.join(".git"));
        assert!(!t.covers(Path::new("build")));
        git(d, &["add", "-f", "build/out.txt"]);
        // The index changed: looked at again without being told.
        assert!(t.covers(Path::new("build")));
        assert!(t.covers(Path::new("build/out.txt")));
        assert!(!t.covers(Path::new("build/new.txt")));
        assert!(!t.covers(Path::new("other.log")));
        assert!(!t.covers(Path::new("buil")));
    }
}
