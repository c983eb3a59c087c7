//! Which repository settings libgit2 cannot honour, so that a commit must go
//! through the user's `git` instead (see `via_git`).
//!
//! Cheap enough to run at the start of every commit round (one config
//! snapshot and a few `stat`s): hooks and config may change at any time.
//! Per-file attributes (a `filter=` driver, `working-tree-encoding`) are
//! checked while staging instead, for the files being staged only.

use std::fmt;
use std::path::{Path, PathBuf};

use git2::Repository;

/// One reason an auto-commit must be made by `git` rather than libgit2.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GitFeature {
    /// `commit.gpgsign = true`: libgit2 would commit unsigned.
    Signing,
    /// An executable commit hook (pre-commit, prepare-commit-msg, commit-msg,
    /// post-commit) while `hooks = true`: libgit2 runs none.
    Hook(String),
    /// `core.sparseCheckout`: libgit2 would record files outside the cone as deleted.
    SparseCheckout,
    /// Index entries flagged skip-worktree (`git update-index --skip-worktree`).
    SkipWorktree,
    /// `core.splitIndex` or a shared index file: libgit2 cannot read the index.
    SplitIndex,
    /// A file whose `filter=` attribute names a driver with a `clean` or
    /// `process` command (git-lfs, git-crypt, ...): libgit2 would commit the
    /// raw bytes.
    Filter(String),
    /// A file with a `working-tree-encoding` attribute, which libgit2 ignores.
    WorkingTreeEncoding,
}

impl fmt::Display for GitFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitFeature::Signing => f.write_str("commit.gpgsign"),
            GitFeature::Hook(name) => write!(f, "{name} hook"),
            GitFeature::SparseCheckout => f.write_str("sparse checkout"),
            GitFeature::SkipWorktree => f.write_str("skip-worktree entries"),
            GitFeature::SplitIndex => f.write_str("split index"),
            GitFeature::Filter(driver) => write!(f, "{driver} filter"),
            GitFeature::WorkingTreeEncoding => f.write_str("working-tree-encoding"),
        }
    }
}

/// The hooks `git commit` runs, in the order it runs them.
pub const COMMIT_HOOKS: [&str; 4] = [
    "pre-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
];

/// The repository-wide reasons to commit through `git` (config and hooks).
/// `hooks`: the notebook's `hooks` setting.
pub fn detect(repo: &Repository, hooks: bool) -> Vec<GitFeature> {
    let mut out = Vec::new();
    let config = repo.config().and_then(|mut c| c.snapshot()).ok();
    let flag = |key: &str| {
        config
            .as_ref()
            .and_then(|c| c.get_bool(key).ok())
            .unwrap_or(false)
    };
    if flag("commit.gpgsign") {
        out.push(GitFeature::Signing);
    }
    if flag("core.sparseCheckout") {
        out.push(GitFeature::SparseCheckout);
    }
    if flag("core.splitIndex") || has_shared_index(repo.path()) {
        out.push(GitFeature::SplitIndex);
    }
    if hooks {
        let dir = hooks_dir(repo);
        for name in COMMIT_HOOKS {
            if is_executable(&dir.join(name)) {
                out.push(GitFeature::Hook(name.to_string()));
            }
        }
    }
    out
}

/// The filter drivers that have a `clean` or `process` command configured:
/// only a file whose `filter` attribute names one of them is changed by git
/// on its way into the repository.
pub fn filter_drivers(repo: &Repository) -> Vec<String> {
    let Ok(config) = repo.config().and_then(|mut c| c.snapshot()) else {
        return Vec::new();
    };
    let mut drivers = Vec::new();
    if let Ok(mut entries) = config.entries(Some(r"^filter\..*\.(clean|process)$")) {
        while let Some(Ok(entry)) = entries.next() {
            let Ok(name) = entry.name() else { continue };
            let Some(driver) = name
                .strip_prefix("filter.")
                .and_then(|rest| rest.rsplit_once('.'))
                .map(|(driver, _)| driver.to_string())
            else {
                continue;
            };
            if entry.value().is_ok_and(|v| !v.trim().is_empty()) && !drivers.contains(&driver) {
                drivers.push(driver);
            }
        }
    }
    drivers
}

/// Why `rel` (a file about to be staged) needs git: its `filter` attribute
/// names a configured driver, or it has a `working-tree-encoding`.
pub fn file_feature(repo: &Repository, rel: &Path, drivers: &[String]) -> Option<GitFeature> {
    let flags = git2::AttrCheckFlags::FILE_THEN_INDEX;
    if !drivers.is_empty() {
        if let Ok(Some(driver)) = repo.get_attr(rel, "filter", flags) {
            if drivers.iter().any(|d| d == driver) {
                return Some(GitFeature::Filter(driver.to_string()));
            }
        }
    }
    match repo.get_attr(rel, "working-tree-encoding", flags) {
        Ok(Some(enc)) if !enc.is_empty() => Some(GitFeature::WorkingTreeEncoding),
        _ => None,
    }
}

/// Where git looks for hooks: `core.hooksPath` (a relative one is relative
/// to the work tree, `~/` expanded), else `hooks/` in the common git dir.
pub fn hooks_dir(repo: &Repository) -> PathBuf {
    let configured = repo
        .config()
        .and_then(|mut c| c.snapshot())
        .ok()
        .and_then(|c| c.get_path("core.hooksPath").ok());
    match configured {
        Some(p) if p.is_absolute() => p,
        Some(p) => repo.workdir().unwrap_or_else(|| repo.path()).join(p),
        None => repo.commondir().join("hooks"),
    }
}

/// True when `git commit` would run the file as a hook: git asks
/// `access(X_OK)`, so what counts is whether *we* may execute it, not
/// whether anyone may.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
    let may_execute = unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } == 0;
    may_execute && std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// A `sharedindex.<sha>` file next to the index: the index is split.
fn has_shared_index(git_dir: &Path) -> bool {
    std::fs::read_dir(git_dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name()
                .as_encoded_bytes()
                .starts_with(b"sharedindex.")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn repo() -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repository::init(dir.path()).expect("init");
        (dir, repo)
    }

    #[test]
    fn a_plain_repository_needs_nothing() {
        let (_dir, repo) = repo();
        assert_eq!(detect(&repo, true), vec![]);
    }

    #[test]
    fn config_settings_and_hooks_are_found() {
        let (dir, repo) = repo();
        let mut cfg = repo.config().expect("config");
        cfg.set_bool("commit.gpgsign", true).expect("set");
        cfg.set_bool("core.sparseCheckout", true).expect("set");
        cfg.set_bool("core.splitIndex", true).expect("set");
        cfg.set_str("filter.crypt.clean", "cat").expect("set");
        cfg.set_str("filter.lfs.process", "git-lfs filter-process")
            .expect("set");
        cfg.set_str("filter.none.smudge", "cat").expect("set");
        let hook = repo.path().join("hooks/pre-commit");
        std::fs::create_dir_all(hook.parent().expect("parent")).expect("mkdir");
        std::fs::write(&hook, "#!/bin/sh\n").expect("write");
        // Not executable: git would not run it either.
        std::fs::write(repo.path().join("hooks/commit-msg"), "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let found = detect(&repo, true);
        assert_eq!(
            found,
            vec![
                GitFeature::Signing,
                GitFeature::SparseCheckout,
                GitFeature::SplitIndex,
                GitFeature::Hook("pre-commit".into()),
            ]
        );
        assert!(!detect(&repo, false)
            .iter()
            .any(|f| matches!(f, GitFeature::Hook(_))));
        // (The machine's own config may add drivers, e.g. a system-wide lfs.)
        let drivers = filter_drivers(&repo);
        assert!(drivers.contains(&"crypt".to_string()), "{drivers:?}");
        assert!(drivers.contains(&"lfs".to_string()), "{drivers:?}");
        assert!(!drivers.contains(&"none".to_string()), "{drivers:?}");

        std::fs::write(
            dir.path().join(".gitattributes"),
            "*.sec filter=crypt\n*.txt working-tree-encoding=UTF-16\n*.raw filter=none\n",
        )
        .expect("write");
        assert_eq!(
            file_feature(&repo, Path::new("a/b.sec"), &drivers),
            Some(GitFeature::Filter("crypt".into()))
        );
        assert_eq!(
            file_feature(&repo, Path::new("t.txt"), &drivers),
            Some(GitFeature::WorkingTreeEncoding)
        );
        assert_eq!(file_feature(&repo, Path::new("x.raw"), &drivers), None);
        assert_eq!(file_feature(&repo, Path::new("x.md"), &drivers), None);
    }

    #[test]
    fn hooks_path_relative_to_the_work_tree() {
        let (dir, repo) = repo();
        repo.config()
            .expect("config")
            .set_str("core.hooksPath", "githooks")
            .expect("set");
        assert_eq!(
            hooks_dir(&repo),
            repo.workdir().expect("workdir").join("githooks")
        );
        let hook = dir.path().join("githooks/post-commit");
        std::fs::create_dir_all(hook.parent().expect("parent")).expect("mkdir");
        std::fs::write(&hook, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        assert_eq!(
            detect(&repo, true),
            vec![GitFeature::Hook("post-commit".into())]
        );
    }
}
