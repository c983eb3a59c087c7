//! Shared helpers for the GitManager and sync tests: isolated git config for
//! both libgit2 (in this process) and the `git` CLI (the referee). The world
//! (folders, git config, oracle, skip notes) is `tests/sandbox`, shared with
//! `tests/support` and `benches/common`; libgit2's search paths are global
//! to the process, so one sandbox serves every test of a binary.
#![allow(dead_code)]

#[path = "../sandbox/mod.rs"]
pub mod sandbox;

#[allow(unused_imports)]
pub use sandbox::{skip, Rng};

pub mod sync_world;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use gitlockd::git::{AutoCommitOptions, AutoCommitOutcome, GitError, GitManager, GitProgram};
use tempfile::TempDir;

/// The sandbox shared by every test of this binary: its folders and the
/// environment that isolates the `git` oracle.
fn world() -> &'static (tempfile::TempDir, Vec<(String, String)>) {
    static WORLD: OnceLock<(TempDir, Vec<(String, String)>)> = OnceLock::new();
    WORLD.get_or_init(|| {
        let (dir, root) = sandbox::temp_root("glhome", &std::env::temp_dir());
        let env = sandbox::isolate(
            &root,
            &sandbox::Identity {
                name: "Test User",
                email: "test@example.com",
            },
        );
        let home = root.join("home");
        let empty = home.join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        // SAFETY: runs once, before any test of this binary uses libgit2
        // (every test calls home() first, and OnceLock blocks the others).
        unsafe {
            git2::opts::set_search_path(git2::ConfigLevel::Global, home.as_path())
                .expect("global search path");
            git2::opts::set_search_path(git2::ConfigLevel::XDG, empty.as_path())
                .expect("xdg search path");
            git2::opts::set_search_path(git2::ConfigLevel::System, empty.as_path())
                .expect("system search path");
        }
        (dir, env)
    })
}

/// A HOME with a `.gitconfig` (user.name/email), shared by every test of
/// this binary; libgit2's search paths point here too, once.
pub fn home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let (dir, _) = world();
        dir.path()
            .canonicalize()
            .expect("canonical home")
            .join("home")
    })
}

/// A `git` command for `dir` with the isolated environment.
pub fn git_cmd(dir: &Path) -> Command {
    let (_, env) = world();
    let mut cmd = sandbox::git_command(dir, env);
    cmd.current_dir(dir);
    cmd
}

/// What a failing test prints about the repository at `dir`.
pub fn report(dir: &Path) -> String {
    sandbox::repo_report(dir, &world().1)
}

/// Run git, return its output whatever the exit status.
pub fn git_try(dir: &Path, args: &[&str]) -> Output {
    git_cmd(dir).args(args).output().expect("run git")
}

/// Run git, which must succeed; its stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_try(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}\nstdout: {}\nstderr: {}\n{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        report(dir),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh temp dir (short name: socket paths elsewhere in the suite).
pub fn tempdir() -> TempDir {
    home();
    tempfile::Builder::new()
        .prefix("gl")
        .tempdir()
        .expect("tempdir")
}

/// A new notebook: a temp dir with a repository created by GitManager.
pub fn notebook() -> (TempDir, GitManager) {
    let dir = tempdir();
    let gm = GitManager::new(dir.path()).expect("manager");
    assert!(gm.init_or_get_repo(true).expect("init"));
    (dir, gm)
}

/// Write `content` to `rel` under `root`, creating parent directories.
pub fn write(root: &Path, rel: &str, content: &str) -> PathBuf {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&p, content).expect("write");
    PathBuf::from(rel)
}

/// `git fsck --strict` reports no error (notices such as "HEAD points to an
/// unborn branch" and dangling objects are not corruption).
pub fn assert_fsck_clean(dir: &Path) {
    let out = git_try(dir, &["fsck", "--strict", "--no-progress"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.lines().all(|l| l.starts_with("notice:")),
        "fsck: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        report(dir)
    );
}

/// `git status --porcelain` is empty.
pub fn assert_status_clean(dir: &Path) {
    let status = git(dir, &["status", "--porcelain", "--untracked-files=all"]);
    assert_eq!(
        status,
        "",
        "git status in {}\n{}",
        dir.display(),
        report(dir)
    );
}

/// Lines of `git` output, trimmed.
pub fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

/// The options every in-process test commits with: a notebook named "nb",
/// everything else as a daemon defaults it.
pub fn opts() -> AutoCommitOptions {
    AutoCommitOptions {
        notebook: "nb".into(),
        ..AutoCommitOptions::default()
    }
}

/// Auto-commits the changed `paths` (relative) with [`opts`]: the outcome or
/// the error, for tests that expect a failure.
pub fn try_auto(gm: &GitManager, paths: &[&str]) -> Result<AutoCommitOutcome, GitError> {
    let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    gm.auto_commit_on_change(&paths, &opts())
}

/// Auto-commits the changed `paths` (relative) with [`opts`], which must
/// succeed.
pub fn auto(gm: &GitManager, paths: &[&str]) -> AutoCommitOutcome {
    try_auto(gm, paths).expect("auto-commit")
}

/// The git that gitlockd runs in these tests, isolated like the oracle: the
/// sandbox's HOME and global config, no system config (passed in `env`:
/// `std::env::set_var` is not thread-safe).
pub fn program() -> GitProgram {
    let home = home();
    GitProgram {
        env: vec![
            ("HOME".into(), home.as_os_str().to_owned()),
            (
                "GIT_CONFIG_GLOBAL".into(),
                home.join(".gitconfig").into_os_string(),
            ),
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ],
        ..GitProgram::default()
    }
}
