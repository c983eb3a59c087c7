//! Shared harness for integration tests: a sandbox per test (HOME, XDG dirs,
//! global git config, short socket path), real git repositories checked with
//! the `git` CLI, the real `gitlockd` binary, and a JSON-lines socket client.
//! Waits are bounded, labelled polls; a failure prints the daemon's log and
//! each repository's `git status` and `git log`. The world itself (folders,
//! git config, the git oracle, skip notes) is `tests/sandbox`, shared with
//! `tests/git_util` and `benches/common`. Here: the per-test [`Sandbox`];
//! `daemon`, `repo` and `client` are the three things a test drives, and
//! `served` the set-ups and bounds the test files share.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../sandbox/mod.rs"]
pub mod sandbox;

mod client;
mod daemon;
mod output;
mod repo;
mod served;

#[allow(unused_imports)]
pub use sandbox::{answers_ping, on_path, skip, Rng};

pub use client::Client;
pub use daemon::Daemon;
#[allow(unused_imports)]
pub use output::{describe, exits, ok, text};
pub use repo::Repo;
pub use served::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gitlockd"))
}

/// Polls `cond` until it returns Some, or panics naming `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if Instant::now() >= end {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A throw-away world for one test.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        // Short path: sun_path is 108 bytes.
        let (dir, root) = sandbox::temp_root("gl-", Path::new("/tmp"));
        let env = sandbox::isolate(&root, &sandbox::TEST_USER);
        Sandbox {
            socket: root.join("run/gl.sock"),
            config: root.join("cfg/config.toml"),
            dir,
            root,
            env,
        }
    }

    /// A git repository at books/<name> (empty, branch main).
    pub fn repo(&self, name: &str) -> Repo {
        let path = self.root.join("books").join(name);
        std::fs::create_dir_all(&path).unwrap();
        let repo = Repo {
            path,
            env: self.env.clone(),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// The text of a config with these `[[notebook]]` entries (name, path,
    /// extra TOML lines): a 100ms debounce and a 5s lock timeout, then
    /// `defaults` and `lock` lines in those tables.
    pub fn config_text(
        &self,
        defaults: &str,
        lock: &str,
        notebooks: &[(&str, &Path, &str)],
    ) -> String {
        sandbox::config_text(
            &self.socket,
            &format!("debounce = \"100ms\"\n{defaults}"),
            &format!("timeout = \"5s\"\n{lock}"),
            notebooks,
        )
    }

    /// Writes a config with these `[[notebook]]` entries (name, path, extra TOML lines).
    pub fn write_config(&self, defaults: &str, notebooks: &[(&str, &Path, &str)]) {
        self.write_config_lock(defaults, "", notebooks);
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(args).env_clear();
        if let Ok(path) = std::env::var("PATH") {
            cmd.env("PATH", path);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs a client subcommand against this sandbox's socket.
    pub fn gl(&self, args: &[&str]) -> Output {
        let mut full = vec!["--socket", self.socket.to_str().unwrap()];
        full.extend_from_slice(args);
        self.command(&full).stdin(Stdio::null()).output().unwrap()
    }

    /// Starts the daemon on the written config and waits until it answers ping.
    pub fn start(&self) -> Daemon {
        let d = self.spawn(&[]);
        d.wait_ready(self);
        d
    }

    pub fn spawn(&self, extra_env: &[(&str, &str)]) -> Daemon {
        self.spawn_in(None, extra_env)
    }

    /// Like [`Sandbox::spawn`], with the daemon's working directory set to
    /// `cwd` (None: inherit the test's).
    pub fn spawn_in(&self, cwd: Option<&Path>, extra_env: &[(&str, &str)]) -> Daemon {
        let mut cmd = self.daemon_command();
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        self.spawn_command(cmd)
    }

    /// Like [`Sandbox::spawn`] without waiting, with these variables removed
    /// from the daemon's environment (e.g. `XDG_RUNTIME_DIR`).
    pub fn spawn_without(&self, remove: &[&str]) -> Daemon {
        let mut cmd = self.daemon_command();
        for var in remove {
            cmd.env_remove(var);
        }
        self.spawn_command(cmd)
    }

    /// The daemon on this sandbox's config, logging at debug level for the
    /// log a failing test prints.
    pub fn daemon_command(&self) -> Command {
        let mut cmd = self.command(&["--config", self.config.to_str().unwrap()]);
        cmd.env("RUST_LOG", "info,gitlockd=debug");
        cmd
    }

    /// Starts `cmd` (a [`Sandbox::daemon_command`]) with its output in a log
    /// file of its own.
    pub fn spawn_command(&self, mut cmd: Command) -> Daemon {
        let log = self.root.join(format!(
            "daemon-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let child = sandbox::spawn_logged(&mut cmd, &log);
        Daemon { child, log }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket)
    }

    /// Like [`Sandbox::write_config`], with extra lines in the `[lock]` table
    /// (e.g. `max_hold = "1s"`).
    pub fn write_config_lock(&self, defaults: &str, lock: &str, notebooks: &[(&str, &Path, &str)]) {
        self.write_config_text(&self.config_text(defaults, lock, notebooks));
    }

    /// Runs a client subcommand with this working directory.
    pub fn gl_in(&self, cwd: &Path, args: &[&str]) -> Output {
        let mut full = vec!["--socket", self.socket.to_str().unwrap()];
        full.extend_from_slice(args);
        self.command(&full)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Spawns a client subcommand (stdio null unless the caller changes it).
    pub fn gl_spawn(&self, args: &[&str]) -> Child {
        let mut full = vec!["--socket", self.socket.to_str().unwrap()];
        full.extend_from_slice(args);
        self.command(&full)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// A git repository at `path` (anywhere, e.g. outside /tmp for editor
    /// tests), initialised with this sandbox's git environment.
    pub fn repo_at(&self, path: &Path) -> Repo {
        std::fs::create_dir_all(path).unwrap();
        let repo = Repo {
            path: path.canonicalize().unwrap(),
            env: self.env.clone(),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// A `Repo` handle on an existing work tree (no `git init`).
    pub fn open_repo(&self, path: &Path) -> Repo {
        Repo {
            path: path.canonicalize().unwrap(),
            env: self.env.clone(),
        }
    }

    /// Writes the config file verbatim (atomically).
    pub fn write_config_text(&self, text: &str) {
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, &self.config).unwrap();
    }

    /// Starts the daemon and waits until `status` lists every one of
    /// `names`: the socket answers `ping` while notebooks are still opening
    /// (and catching up), so `start` alone does not mean they are served.
    pub fn start_serving(&self, names: &[&str]) -> Daemon {
        let d = self.start();
        d.wait_serving(self, names);
        d
    }
}

/// A failing test prints every notebook's `git status` and `git log`, after
/// the daemon's log (a test declares its daemon after its sandbox, so the
/// daemon is dropped first).
impl Drop for Sandbox {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(self.root.join("books")) else {
            return;
        };
        let mut repos: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join(".git").exists())
            .collect();
        repos.sort();
        for repo in repos {
            sandbox::report_if_failing(&repo, &self.env);
        }
    }
}

/// Polls `cond` for the whole of `duration`; panics naming `what` as soon as
/// it is false. For bounded "nothing happens" observations.
pub fn holds_for(duration: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + duration;
    loop {
        assert!(
            cond(),
            "expected {what} for {duration:?}, but it stopped holding"
        );
        if Instant::now() >= end {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
