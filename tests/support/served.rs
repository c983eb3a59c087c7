//! The set-ups and the vocabulary the daemon, socket and CLI tests share:
//! one served notebook, several notebooks with a first commit, refused
//! start-ups, and the bounds of "committed" and "nothing happens".

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;

/// A change must be on HEAD within this (the machine is shared and loaded).
pub const COMMIT: Duration = Duration::from_secs(15);

/// A "nothing happens" observation window (many times the test debounce).
pub const QUIET: Duration = Duration::from_millis(600);

/// Waits until HEAD holds `rel` with exactly `content`.
pub fn committed(repo: &Repo, rel: &str, content: &str) {
    wait_for(COMMIT, &format!("{rel} committed with {content:?}"), || {
        (repo.blob(rel).as_deref() == Some(content)).then_some(())
    });
}

/// A `skip` for [`Repo::wait_all_committed`] that skips nothing.
pub fn no_skip(_: &str) -> bool {
    false
}

/// The `status` entry of notebook `name`, on a new connection.
pub fn status(sb: &Sandbox, name: &str) -> Value {
    sb.client().status_of(name)
}

/// How many changes notebook `name` has pending.
pub fn pending(sb: &Sandbox, name: &str) -> u64 {
    let s = status(sb, name);
    s["pending"]
        .as_u64()
        .unwrap_or_else(|| panic!("pending is not a count: {s}"))
}

impl Sandbox {
    /// A git repository at books/<name> with one commit "base" of `base.md`
    /// (HEAD exists, so a test can count the daemon's commits from 1).
    pub fn repo_with_base(&self, name: &str) -> Repo {
        let repo = self.repo(name);
        repo.write("base.md", "base\n");
        repo.commit_all("base");
        repo
    }

    /// Configures the one notebook `name` at `repo` with `extra` TOML lines
    /// (other settings as [`Sandbox::write_config`] writes them), starts the
    /// daemon and waits until it serves the notebook.
    pub fn serve_one(&self, name: &str, repo: &Repo, extra: &str) -> Daemon {
        self.write_config("", &[(name, &repo.path, extra)]);
        self.start_serving(&[name])
    }

    /// Starts the daemon on a config or a socket path it must refuse:
    /// checks that it exits with `code` within [`LONG`]; its log.
    pub fn start_refused(&self, code: i32) -> String {
        self.start_refused_without(code, &[])
    }

    /// [`Sandbox::start_refused`] with these variables removed from the
    /// daemon's environment.
    pub fn start_refused_without(&self, code: i32, remove: &[&str]) -> String {
        let mut d = self.spawn_without(remove);
        assert_eq!(d.wait_exit(LONG), Some(code), "exit code\n{}", d.log_text());
        d.log_text()
    }

    /// `gitlockd check-config` on this sandbox's config.
    pub fn check_config(&self) -> CheckConfig {
        let out = self
            .command(&["check-config", "--config", self.config.to_str().unwrap()])
            .output()
            .unwrap();
        CheckConfig {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A sandbox with one empty notebook "nb" at books/nb, configured with
/// `extra` TOML lines and served. Bind all three (`let (sb, nb, _d)`): the
/// daemon is then dropped first, so a failure prints its log before the
/// repository's state.
pub fn one(extra: &str) -> (Sandbox, Repo, Daemon) {
    let sb = Sandbox::new();
    let nb = sb.repo("nb");
    let d = sb.serve_one("nb", &nb, extra);
    (sb, nb, d)
}

/// Like [`one`], with one commit "base" of `base.md` made before the
/// daemon starts.
pub fn one_with_base(extra: &str) -> (Sandbox, Repo, Daemon) {
    let sb = Sandbox::new();
    let nb = sb.repo_with_base("nb");
    let d = sb.serve_one("nb", &nb, extra);
    (sb, nb, d)
}

/// How long a socket or CLI test waits for the daemon to reach a state.
pub const LONG: Duration = Duration::from_secs(20);

/// A sandbox with a notebook at books/<name> for each of `names`, each with
/// one commit "base" of `base.txt`, and a daemon serving them all.
pub fn setup(names: &[&str]) -> (Sandbox, Vec<Repo>, Daemon) {
    setup_with(names, "")
}

/// Like [`setup`], with `lock_extra` lines in the `[lock]` table.
pub fn setup_with(names: &[&str], lock_extra: &str) -> (Sandbox, Vec<Repo>, Daemon) {
    let sb = Sandbox::new();
    let repos: Vec<Repo> = names
        .iter()
        .map(|n| {
            let r = sb.repo(n);
            r.write("base.txt", "base\n");
            r.git(&["add", "base.txt"]);
            r.git(&["commit", "-q", "-m", "base"]);
            r
        })
        .collect();
    let entries: Vec<(&str, &Path, &str)> = names
        .iter()
        .zip(&repos)
        .map(|(n, r)| (*n, r.path.as_path(), ""))
        .collect();
    sb.write_config_lock("", lock_extra, &entries);
    let d = sb.start_serving(names);
    (sb, repos, d)
}

/// What `gitlockd check-config` did.
pub struct CheckConfig {
    /// Its exit code.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CheckConfig {
    /// Its stdout, then its stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Waits until no client holds the lock of notebook `nb`.
pub fn wait_unheld(c: &mut Client, nb: &str) {
    wait_for(LONG, &format!("{nb} to be free"), || {
        (c.status_of(nb)["lock"]["held"] == json!(false)).then_some(())
    });
}

/// CLOCK_MONOTONIC in microseconds: the clock of sd_notify's
/// `MONOTONIC_USEC`.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}
