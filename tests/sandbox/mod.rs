//! The one isolated world shared by every harness: `tests/support` (the
//! daemon tests), `tests/git_util` (the in-process GitManager and sync tests)
//! and `benches/common` include this file, so they lay out the same folders,
//! write the same global git config, run the `git` oracle the same way, dump
//! the same facts on failure and report skipped tools the same way.
//!
//! Layout under a short root in /tmp (`sun_path` is 108 bytes): `home/`
//! (HOME, with `.gitconfig`), `cfg/` (XDG_CONFIG_HOME), `run/`
//! (XDG_RUNTIME_DIR), `tmp/` (TMPDIR), `books/` (the notebooks).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Who commits in a sandbox: the global `user.name` and `user.email`.
pub struct Identity {
    /// `user.name`.
    pub name: &'static str,
    /// `user.email`.
    pub email: &'static str,
}

/// The identity of the daemon and socket tests.
pub const TEST_USER: Identity = Identity {
    name: "Test User",
    email: "test@example.invalid",
};

/// A short-named temporary folder under `base` (removed on drop) and its
/// canonical path.
pub fn temp_root(prefix: &str, base: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .unwrap_or_else(|e| panic!("cannot create a sandbox in {}: {e}", base.display()));
    let root = dir.path().canonicalize().unwrap();
    (dir, root)
}

/// Lays out `root` (see the module doc), writes the global git config for
/// `who`, and returns the environment that isolates a process in it: no
/// system config, the sandbox's HOME, XDG dirs and TMPDIR, a fixed locale.
pub fn isolate(root: &Path, who: &Identity) -> Vec<(String, String)> {
    for d in ["home", "run", "cfg", "books", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let gitconfig = root.join("home/.gitconfig");
    std::fs::write(
        &gitconfig,
        format!(
            "[user]\n\tname = {}\n\temail = {}\n[init]\n\tdefaultBranch = main\n\
             [commit]\n\tgpgsign = false\n[gc]\n\tauto = 0\n[advice]\n\tdetachedHead = false\n",
            who.name, who.email
        ),
    )
    .unwrap();
    let at = |rel: &str| root.join(rel).display().to_string();
    vec![
        ("HOME".into(), at("home")),
        ("XDG_CONFIG_HOME".into(), at("cfg")),
        ("XDG_RUNTIME_DIR".into(), at("run")),
        ("TMPDIR".into(), at("tmp")),
        ("GIT_CONFIG_GLOBAL".into(), gitconfig.display().to_string()),
        ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ("LANG".into(), "C.UTF-8".into()),
    ]
}

/// `git -C dir` with `env` and none of the caller's `GIT_DIR`-style
/// variables: the referee every test checks gitlockd against.
pub fn git_command(dir: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir);
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_COMMON_DIR",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    // The oracle never refreshes the index behind the daemon's back.
    cmd.env("GIT_OPTIONAL_LOCKS", "0");
    cmd
}

/// What a failed test prints about a repository: `git status` and the last
/// commits with their files, as the git CLI sees them.
pub fn repo_report(dir: &Path, env: &[(String, String)]) -> String {
    let run = |args: &[&str]| match git_command(dir, env).args(args).output() {
        Ok(out) => format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => format!("(cannot run git: {e})\n"),
    };
    format!(
        "--- git status ({}) ---\n{}--- git log (last 10) ---\n{}",
        dir.display(),
        run(&["status", "--short", "--branch", "--untracked-files=all"]),
        run(&[
            "log",
            "-n",
            "10",
            "--format=%h %ad %s",
            "--date=iso",
            "--name-status"
        ]),
    )
}

/// Prints `what` about `dir` when the current thread is panicking (a test
/// failing): put it in a `Drop` of anything that owns a repository.
pub fn report_if_failing(dir: &Path, env: &[(String, String)]) {
    if std::thread::panicking() && dir.exists() {
        eprintln!("{}", repo_report(dir, env));
    }
}

/// Records that a test skipped part of its work for a missing tool or
/// privilege: printed now, and appended to `$GITLOCKD_SKIP_LOG` when set, so
/// `scripts/test` lists every skip in its summary (test output is captured).
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let line = format!("{}: {test}: {reason}", env!("CARGO_CRATE_NAME"));
    eprintln!("SKIPPED: {line}");
    if let Some(path) = std::env::var_os("GITLOCKD_SKIP_LOG") {
        // O_APPEND: lines from parallel tests do not interleave.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Whether `program` is an executable file on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// A small seeded generator (xorshift64*) for randomised tests: the seed is
/// printed, so a failing run can be replayed exactly; no extra dependency.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        // A zero state would stay zero forever.
        let mut x = self.0.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// One of `xs`.
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// The text of a gitlockd config: the `socket`, a `[defaults]` and a
/// `[lock]` table with these lines, then one `[[notebook]]` table for each
/// (name, path, extra TOML lines).
pub fn config_text(
    socket: &Path,
    defaults: &str,
    lock: &str,
    notebooks: &[(&str, &Path, &str)],
) -> String {
    let mut text = format!(
        "socket = {:?}\n\n[defaults]\n{defaults}\n\n[lock]\n{lock}\n",
        socket.display().to_string()
    );
    for (name, path, extra) in notebooks {
        text.push_str(&format!(
            "\n[[notebook]]\nname = {name:?}\npath = {:?}\n{extra}\n",
            path.display().to_string()
        ));
    }
    text
}

/// Starts `cmd` (a daemon) with stdin closed and stdout and stderr appended
/// to `log`: the file a failing test or bench prints.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("cannot open the daemon log {}: {e}", log.display()));
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()))
}

/// Whether a daemon answers `ping` with ok on a new connection to `socket`,
/// waiting at most `patience` for the answer: the readiness probe.
pub fn answers_ping(socket: &Path, patience: Duration) -> bool {
    let Ok(mut c) = UnixStream::connect(socket) else {
        return false;
    };
    c.set_read_timeout(Some(patience)).ok();
    if c.write_all(b"{\"cmd\":\"ping\"}\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(&c).read_line(&mut line).is_ok() && line.contains("\"ok\":true")
}
