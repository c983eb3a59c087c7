//! The world of the sync tests: a bare "remote" and two clones `a` and `b`
//! made with the git CLI, and the git the sync engine runs, isolated like
//! the oracle (the same HOME and global config, no system config).

use std::path::{Path, PathBuf};
use std::time::Duration;

use gitlockd::config::SyncConfig;
use gitlockd::sync::{sync_once_with, GitCli, SyncOutcome};
use tempfile::TempDir;

use super::{assert_fsck_clean, git, home, program, tempdir, write};

/// The git subprocesses of the sync engine: [`program`], with no XDG config
/// either and a one-minute timeout.
pub fn cli() -> GitCli {
    let mut git = program();
    git.env.push((
        "XDG_CONFIG_HOME".into(),
        home().join("empty").into_os_string(),
    ));
    git.timeout = Duration::from_secs(60);
    git
}

/// One sync of `dir` with the default settings (push on), which must succeed.
pub fn sync_ok(dir: &Path) -> SyncOutcome {
    match sync_once_with(dir, &SyncConfig::default(), true, &cli()) {
        Ok(o) => o,
        Err(e) => panic!("sync of {} failed: {e}", dir.display()),
    }
}

/// A bare remote whose first commit on main holds `readme.md` (three lines)
/// and the `base` files, written and pushed from clone `a`, and clone `b`.
pub struct World {
    _dir: TempDir,
    /// The folder holding `remote.git`, `a` and `b`.
    pub root: PathBuf,
    /// The bare remote.
    pub remote: PathBuf,
    /// The clone that made the first commit.
    pub a: PathBuf,
    /// The clone made after it.
    pub b: PathBuf,
}

impl World {
    /// `config` is set in both clones (in `b` before its checkout).
    pub fn new(base: &[(&str, &str)], config: &[(&str, &str)]) -> World {
        let dir = tempdir();
        let root = dir.path().canonicalize().expect("canonical");
        git(
            &root,
            &["init", "--quiet", "--bare", "-b", "main", "remote.git"],
        );
        git(&root, &["clone", "--quiet", "remote.git", "a"]);
        let a = root.join("a");
        for (k, v) in config {
            git(&a, &["config", k, v]);
        }
        write(&a, "readme.md", "line 1\nline 2\nline 3\n");
        for (rel, content) in base {
            write(&a, rel, content);
        }
        commit_all(&a, "base");
        git(&a, &["push", "--quiet", "origin", "main"]);
        let mut args = vec!["clone".to_string(), "--quiet".to_string()];
        for (k, v) in config {
            args.push("-c".into());
            args.push(format!("{k}={v}"));
        }
        args.extend(["remote.git".to_string(), "b".to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        git(&root, &args);
        World {
            remote: root.join("remote.git"),
            a,
            b: root.join("b"),
            root,
            _dir: dir,
        }
    }

    /// The remote, `a` and `b`.
    pub fn repos(&self) -> [&Path; 3] {
        [&self.remote, &self.a, &self.b]
    }

    /// `git fsck` is clean in the remote and both clones.
    pub fn check(&self) {
        for r in self.repos() {
            assert_fsck_clean(r);
        }
    }
}

/// Commits everything in `dir` with the git CLI (what the daemon's
/// auto-commit does before a sync); the new HEAD.
pub fn commit_all(dir: &Path, msg: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "--quiet", "-m", msg]);
    rev(dir, "HEAD")
}

/// The commit `r` names in `dir`.
pub fn rev(dir: &Path, r: &str) -> String {
    git(dir, &["rev-parse", "--verify", r]).trim().to_string()
}

/// The content of the work-tree file `rel` in `dir`.
pub fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).expect("read")
}
