//! The one way gitlockd runs the user's `git`: commits libgit2 cannot make
//! faithfully (module `via_git`) and all of sync (fetch, push, merges,
//! checkouts) go through [`GitProgram::exec`].
//!
//! Rules: no prompt (`GIT_TERMINAL_PROMPT=0`, its own session, so no
//! controlling terminal for ssh either), the repository named by the working
//! directory only (inherited `GIT_DIR` and friends removed), output in
//! unlinked temporary files (a hook or an ssh `ControlPersist` master that
//! keeps a pipe open cannot hang us), input (pathspecs, NUL-separated)
//! through a temporary file, and after the timeout the whole process group
//! gets SIGTERM (git removes its lock files on it), then SIGKILL.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use super::GitError;

/// Default limit for one git command (hooks and filters included); sync's
/// fetch and push use it too.
pub const DEFAULT_GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Oldest git with `--pathspec-from-file` for `add` and `commit`.
pub const MIN_GIT: (u32, u32) = (2, 25);

/// What [`GitError::GitMissing`] says when the caller does not know better.
const NEEDED_FOR: &str = "settings libgit2 cannot honour";

/// Stdout kept from one command.
const MAX_STDOUT: u64 = 64 << 20;
/// Stderr kept for an error message (the tail).
const MAX_STDERR: u64 = 16 * 1024;

/// After a timeout, how long git gets to remove its lock files (it does on
/// SIGTERM) before the group is killed outright.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// How the `git` executable is run.
#[derive(Clone, Debug)]
pub struct GitProgram {
    /// The executable (`git`, looked up in `PATH`).
    pub program: OsString,
    /// Variables set on top of the inherited environment (tests isolate
    /// `HOME` / `GIT_CONFIG_GLOBAL` with it, which is thread-safe where
    /// `std::env::set_var` is not).
    pub env: Vec<(OsString, OsString)>,
    /// One command (and its hooks) is stopped after this: SIGTERM, so git
    /// removes its lock files, then SIGKILL.
    pub timeout: Duration,
}

impl Default for GitProgram {
    fn default() -> Self {
        GitProgram {
            program: OsString::from("git"),
            env: Vec::new(),
            timeout: DEFAULT_GIT_TIMEOUT,
        }
    }
}

/// A program checked by [`GitProgram::check_usable`], and the answer.
type Checked = (OsString, Result<(), String>);

/// What one git command printed.
#[derive(Debug)]
pub(crate) struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything on stdout (up to a generous cap).
    pub stdout: Vec<u8>,
    /// The tail of stderr.
    pub stderr: String,
}

impl Output {
    /// Stdout as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// This output if git exited 0, else [`GitError::Command`] with its
    /// stderr (`args`: the command line, for the message).
    pub fn succeeded<A: AsRef<OsStr>>(self, args: &[A]) -> Result<Output, GitError> {
        if self.status.success() {
            return Ok(self);
        }
        Err(GitError::Command {
            command: format!("git {}", subcommand(args)),
            message: self.message(),
        })
    }

    /// Stderr trimmed, or the exit status when it printed nothing.
    pub fn message(&self) -> String {
        let s = self.stderr.trim();
        if s.is_empty() {
            format!("git exited with {}", self.status)
        } else {
            s.to_string()
        }
    }
}

/// Why a git command gave no [`Output`]; each caller maps it to its own
/// error type (`GitError`, `SyncError`).
#[derive(Debug)]
pub(crate) enum RunError {
    /// The program could not be started (not installed, not executable).
    Spawn {
        /// The program tried.
        program: String,
        /// The subcommand, e.g. `fetch`.
        subcommand: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A temporary file or the wait for git failed.
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The command ran past the timeout; its process group was stopped.
    Timeout {
        /// The subcommand, e.g. `commit`.
        subcommand: String,
        /// The limit.
        after: Duration,
    },
}

impl From<RunError> for GitError {
    fn from(e: RunError) -> GitError {
        match e {
            RunError::Spawn {
                program, source, ..
            } => GitError::GitMissing {
                program,
                detail: source.to_string(),
                needed_for: NEEDED_FOR.to_string(),
            },
            RunError::Io { context, source } => GitError::Io { context, source },
            RunError::Timeout { subcommand, after } => GitError::Timeout {
                command: format!("git {subcommand}"),
                secs: after.as_secs(),
            },
        }
    }
}

impl GitProgram {
    /// Runs `git <args>` in `workdir` with `input` on stdin and `env` added;
    /// returns as soon as git exits (a thread waits for it, no polling).
    pub(crate) fn exec<A: AsRef<OsStr>>(
        &self,
        workdir: &Path,
        args: &[A],
        env: &[(&str, &str)],
        input: Option<&[u8]>,
    ) -> Result<Output, RunError> {
        let sub = || subcommand(args);
        let io = |context: String| move |source| RunError::Io { context, source };
        let mut out_f = temp_file()?;
        let mut err_f = temp_file()?;
        let stdin = match input {
            Some(bytes) => {
                let mut f = temp_file()?;
                f.write_all(bytes)
                    .and_then(|()| f.seek(SeekFrom::Start(0)).map(drop))
                    .map_err(io("writing git's input".into()))?;
                Stdio::from(f)
            }
            None => Stdio::null(),
        };
        let mut cmd = Command::new(&self.program);
        cmd.args(args)
            .current_dir(workdir)
            .stdin(stdin)
            .stdout(Stdio::from(
                out_f.try_clone().map_err(io("duplicating a file".into()))?,
            ))
            .stderr(Stdio::from(
                err_f.try_clone().map_err(io("duplicating a file".into()))?,
            ));
        for var in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_OBJECT_DIRECTORY",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES",
            "GIT_COMMON_DIR",
            "GIT_NAMESPACE",
            "GIT_PREFIX",
            "GIT_EDITOR",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("GIT_TERMINAL_PROMPT", "0");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        // SAFETY: setsid is async-signal-safe; the closure touches nothing else.
        // A new session: no controlling terminal (ssh cannot prompt), and one
        // process group (git, its hooks, filters, ssh) to stop on timeout.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| RunError::Spawn {
            program: self.program.to_string_lossy().into_owned(),
            subcommand: sub(),
            source,
        })?;
        drop(cmd);
        // A thread blocks in wait(): the result arrives the moment git exits
        // (polling would add up to its interval to every command).
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::Builder::new()
            .name("git-wait".into())
            .spawn(move || {
                let _ = tx.send(child.wait());
            })
            .map_err(|source| {
                // No thread to wait with: stop git rather than leave it unwatched.
                kill_group(pid, libc::SIGKILL);
                RunError::Io {
                    context: format!("waiting for git {}", sub()),
                    source,
                }
            })?;
        let status = match rx.recv_timeout(self.timeout) {
            Ok(Ok(status)) => status,
            Ok(Err(source)) => {
                kill_group(pid, libc::SIGKILL);
                let _ = waiter.join();
                return Err(RunError::Io {
                    context: format!("waiting for git {}", sub()),
                    source,
                });
            }
            Err(_) => {
                // SIGTERM first: git removes its lock files on it. Then
                // SIGKILL for whatever is left of the group (children too).
                kill_group(pid, libc::SIGTERM);
                let gone = rx.recv_timeout(TERM_GRACE).is_ok();
                kill_group(pid, libc::SIGKILL);
                if !gone {
                    let _ = rx.recv();
                }
                let _ = waiter.join();
                return Err(RunError::Timeout {
                    subcommand: sub(),
                    after: self.timeout,
                });
            }
        };
        let _ = waiter.join();
        let mut stdout = Vec::new();
        if out_f.seek(SeekFrom::Start(0)).is_ok() {
            let _ = (&mut out_f).take(MAX_STDOUT).read_to_end(&mut stdout);
        }
        Ok(Output {
            status,
            stdout,
            stderr: read_tail(&mut err_f, MAX_STDERR),
        })
    }

    /// [`GitProgram::exec`] for a command that writes to the repository
    /// whose git directories are `dirs` (git dir, common dir). When it had
    /// to be stopped, the lock files it left (created since it started and
    /// held open by nobody) are removed, or every later write would fail on
    /// them: SIGTERM lets git remove its own, this catches what SIGKILL cut
    /// short (and `commit --only`'s temporary index).
    pub(crate) fn exec_writing<A: AsRef<OsStr>>(
        &self,
        dirs: (&Path, &Path),
        workdir: &Path,
        args: &[A],
        env: &[(&str, &str)],
        input: Option<&[u8]>,
    ) -> Result<Output, RunError> {
        // mtimes are coarse: a second of slack, never too little.
        let started = std::time::SystemTime::now()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(std::time::UNIX_EPOCH);
        let result = self.exec(workdir, args, env, input);
        if let Err(RunError::Timeout { .. }) = &result {
            remove_locks_left_since(dirs.0, dirs.1, started);
        }
        result
    }

    /// [`GitProgram::exec`] for the commit path, errors as [`GitError`].
    pub(crate) fn run<A: AsRef<OsStr>>(
        &self,
        workdir: &Path,
        args: &[A],
        env: &[(&str, &str)],
        input: Option<&[u8]>,
    ) -> Result<Output, GitError> {
        Ok(self.exec(workdir, args, env, input)?)
    }

    /// Like [`GitProgram::run`], but a failure exit is an error carrying
    /// git's stderr.
    pub(crate) fn run_ok<A: AsRef<OsStr>>(
        &self,
        workdir: &Path,
        args: &[A],
        env: &[(&str, &str)],
        input: Option<&[u8]>,
    ) -> Result<Output, GitError> {
        self.run(workdir, args, env, input)?.succeeded(args)
    }
    /// Fails unless this git runs and is new enough for the commit path.
    /// Checked once per process and program (the answer does not change
    /// while gitlockd runs, short of a reinstall).
    pub fn check_usable(&self) -> Result<(), GitError> {
        static CHECKED: OnceLock<parking_lot::Mutex<Vec<Checked>>> = OnceLock::new();
        let cache = CHECKED.get_or_init(Default::default);
        if let Some((_, r)) = cache.lock().iter().find(|(p, _)| *p == self.program) {
            return r.clone().map_err(|detail| GitError::GitMissing {
                program: self.program.to_string_lossy().into_owned(),
                detail,
                needed_for: NEEDED_FOR.to_string(),
            });
        }
        let result = match self.run(Path::new("/"), &["--version"], &[], None) {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                match parse_version(&text) {
                    Some(v) if v >= MIN_GIT => Ok(()),
                    Some((a, b)) => Err(format!(
                        "git {a}.{b} is too old: gitlockd needs git {}.{} or newer",
                        MIN_GIT.0, MIN_GIT.1
                    )),
                    None => Err(format!("cannot read the version from {:?}", text.trim())),
                }
            }
            Ok(out) => Err(out.message()),
            Err(GitError::GitMissing { detail, .. }) => Err(detail),
            Err(e) => Err(e.describe()),
        };
        cache.lock().push((self.program.clone(), result.clone()));
        result.map_err(|detail| GitError::GitMissing {
            program: self.program.to_string_lossy().into_owned(),
            detail,
            needed_for: NEEDED_FOR.to_string(),
        })
    }
}

/// `commit` for `["-c", "x=y", "commit", ...]`: the subcommand, for messages.
fn subcommand<A: AsRef<OsStr>>(args: &[A]) -> String {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_ref().to_string_lossy();
        if a == "-c" {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            return a.into_owned();
        }
    }
    String::new()
}

/// `git version 2.47.3` (or `2.39.5.windows.1`) → (2, 47).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.trim().strip_prefix("git version ")?;
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// An unlinked temporary file (0600) for git's input or output.
fn temp_file() -> Result<File, RunError> {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir();
    for _ in 0..16 {
        let path = dir.join(format!(
            ".gitlockd-git-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut o = std::fs::OpenOptions::new();
        o.read(true).write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        match o.open(&path) {
            Ok(f) => {
                let _ = std::fs::remove_file(&path);
                return Ok(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(RunError::Io {
                    context: format!("creating a temporary file in {}", dir.display()),
                    source,
                })
            }
        }
    }
    Err(RunError::Io {
        context: format!("creating a temporary file in {}", dir.display()),
        source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
    })
}

/// The last `max` bytes of `f`, as text.
fn read_tail(f: &mut File, max: u64) -> String {
    let len = f.seek(SeekFrom::End(0)).unwrap_or(0);
    if f.seek(SeekFrom::Start(len.saturating_sub(max))).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(max).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Removes the lock files a stopped git left in `git_dir` / `common_dir`
/// since `started` (see [`GitProgram::exec_writing`]).
fn remove_locks_left_since(git_dir: &Path, common_dir: &Path, started: std::time::SystemTime) {
    crate::recovery::remove_fresh_locks(git_dir, common_dir, started, None);
    if let Ok(entries) = std::fs::read_dir(git_dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.as_encoded_bytes();
            let fresh = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|m| m >= started);
            if fresh && name.starts_with(b"next-index-") && name.ends_with(b".lock") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Sends `signal` to the process group `pid` leads.
fn kill_group(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = i32::try_from(pid) {
        if pid > 0 {
            // SAFETY: plain syscall; the child leads its own process group
            // (setsid), so -pid is exactly its group.
            unsafe {
                libc::kill(-pid, signal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("git version 2.47.3\n"), Some((2, 47)));
        assert_eq!(parse_version("git version 2.39.5.windows.1"), Some((2, 39)));
        assert_eq!(parse_version("hub version 1"), None);
    }

    #[test]
    fn a_missing_program_is_reported_as_missing() {
        let git = GitProgram {
            program: "/nonexistent/git".into(),
            ..GitProgram::default()
        };
        let err = git.check_usable().expect_err("no such program");
        assert!(matches!(err, GitError::GitMissing { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/git"), "{err}");
    }

    #[test]
    fn input_and_output_round_trip() {
        let git = GitProgram::default();
        let out = git
            .run_ok(
                Path::new("/"),
                &["hash-object", "--stdin"],
                &[],
                Some(b"hello\n"),
            )
            .expect("hash-object");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }

    #[test]
    fn the_subcommand_is_found_after_options() {
        assert_eq!(
            subcommand(&["-c", "a=b", "--no-pager", "commit", "-q"]),
            "commit"
        );
        assert_eq!(subcommand::<&str>(&[]), "");
    }

    #[test]
    fn a_command_past_its_timeout_is_stopped_with_its_children() {
        let git = GitProgram {
            timeout: Duration::from_millis(300),
            ..GitProgram::default()
        };
        let started = std::time::Instant::now();
        // The alias runs a shell whose child sleeps: SIGTERM to the group
        // ends both at once, well before the SIGKILL grace.
        let err = git
            .exec(
                Path::new("/"),
                &["-c", "alias.nap=!sleep 30", "nap"],
                &[],
                None,
            )
            .expect_err("must time out");
        assert!(
            matches!(&err, RunError::Timeout { subcommand, .. } if subcommand == "nap"),
            "{err:?}"
        );
        assert!(started.elapsed() < TERM_GRACE, "{:?}", started.elapsed());
        assert!(matches!(
            GitError::from(err),
            GitError::Timeout { secs: 0, .. }
        ));
    }

    #[test]
    fn a_writing_command_stopped_on_timeout_leaves_no_fresh_lock_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let git = GitProgram {
            timeout: Duration::from_millis(300),
            ..GitProgram::default()
        };
        git.run_ok(root, &["init", "-q"], &[], None)
            .expect("git init");
        let dot_git = root.join(".git");
        // A lock from before the command (someone else's, old): kept.
        let old = dot_git.join("packed-refs.lock");
        std::fs::write(&old, "").expect("write");
        let status = Command::new("touch")
            .args(["-d", "1 hour ago"])
            .arg(&old)
            .status()
            .expect("touch");
        assert!(status.success());
        // The command takes index.lock, then hangs until it is stopped.
        let err = git
            .exec_writing(
                (&dot_git, &dot_git),
                root,
                &[
                    "-c",
                    "alias.hang=!touch .git/index.lock && sleep 30",
                    "hang",
                ],
                &[],
                None,
            )
            .expect_err("must time out");
        assert!(matches!(err, RunError::Timeout { .. }), "{err:?}");
        assert!(
            !dot_git.join("index.lock").exists(),
            "the fresh lock was removed"
        );
        assert!(old.exists(), "an older lock is not ours to remove");
    }
}
