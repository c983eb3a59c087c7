//! Running the user's `git` for commits libgit2 cannot make faithfully.
//!
//! Same rules as sync's network calls: no prompt (`GIT_TERMINAL_PROMPT=0`,
//! its own session, so no controlling terminal), the repository named by
//! the working directory only (inherited `GIT_DIR` and friends removed),
//! output in unlinked temporary files (a hook that leaves a daemon holding
//! a pipe cannot hang us), and the whole process group killed after the
//! timeout. Input (pathspecs, NUL-separated) goes through a temporary file.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::GitError;

/// Default limit for one git command of a commit (hooks and filters included).
pub const DEFAULT_COMMIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Oldest git with `--pathspec-from-file` for `add` and `commit`.
pub const MIN_GIT: (u32, u32) = (2, 25);

/// What [`GitError::GitMissing`] says when the caller does not know better.
const NEEDED_FOR: &str = "settings libgit2 cannot honour";

/// Stdout kept from one command.
const MAX_STDOUT: u64 = 64 << 20;
/// Stderr kept for an error message (the tail).
const MAX_STDERR: u64 = 16 * 1024;

/// How the `git` executable is run for commits.
#[derive(Clone, Debug)]
pub struct GitProgram {
    /// The executable (`git`, looked up in `PATH`).
    pub program: OsString,
    /// Variables set on top of the inherited environment (tests isolate
    /// `HOME` / `GIT_CONFIG_GLOBAL` with it).
    pub env: Vec<(OsString, OsString)>,
    /// One command (and its hooks) is killed after this.
    pub timeout: Duration,
}

impl Default for GitProgram {
    fn default() -> Self {
        GitProgram {
            program: OsString::from("git"),
            env: Vec::new(),
            timeout: DEFAULT_COMMIT_TIMEOUT,
        }
    }
}

/// A program checked by [`GitProgram::check_usable`], and the answer.
type Checked = (OsString, Result<(), String>);

/// What one git command printed.
pub(crate) struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything on stdout (up to a generous cap).
    pub stdout: Vec<u8>,
    /// The tail of stderr.
    pub stderr: String,
}

impl Output {
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

impl GitProgram {
    /// Run `git <args>` in `workdir` with `input` on stdin and `env` added.
    pub(crate) fn run<A: AsRef<OsStr>>(
        &self,
        workdir: &Path,
        args: &[A],
        env: &[(&str, &str)],
        input: Option<&[u8]>,
    ) -> Result<Output, GitError> {
        let what = || command_name(args);
        let io = |context: String| move |source| GitError::Io { context, source };
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
        // A new session: no controlling terminal, and one process group
        // (git, its hooks, its filters) to kill on timeout.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| GitError::GitMissing {
            program: self.program.to_string_lossy().into_owned(),
            detail: source.to_string(),
            needed_for: NEEDED_FOR.to_string(),
        })?;
        drop(cmd);
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(source) => {
                    kill_group(child.id());
                    let _ = child.wait();
                    return Err(GitError::Io {
                        context: format!("waiting for {}", what()),
                        source,
                    });
                }
            }
            if Instant::now() >= deadline {
                kill_group(child.id());
                let _ = child.wait();
                return Err(GitError::Timeout {
                    command: what(),
                    secs: self.timeout.as_secs(),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        };
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

    /// Like [`GitProgram::run`], but a failure exit is an error carrying
    /// git's stderr.
    pub(crate) fn run_ok<A: AsRef<OsStr>>(
        &self,
        workdir: &Path,
        args: &[A],
        env: &[(&str, &str)],
        input: Option<&[u8]>,
    ) -> Result<Output, GitError> {
        let out = self.run(workdir, args, env, input)?;
        if !out.status.success() {
            return Err(GitError::Command {
                command: command_name(args),
                message: out.message(),
            });
        }
        Ok(out)
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

/// `git commit` for `["-c", "x=y", "commit", ...]`: the subcommand, for messages.
fn command_name<A: AsRef<OsStr>>(args: &[A]) -> String {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_ref().to_string_lossy();
        if a == "-c" {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            return format!("git {a}");
        }
    }
    "git".to_string()
}

/// `git version 2.47.3` (or `2.39.5.windows.1`) → (2, 47).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.trim().strip_prefix("git version ")?;
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// An unlinked temporary file.
fn temp_file() -> Result<File, GitError> {
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
                return Err(GitError::Io {
                    context: format!("creating a temporary file in {}", dir.display()),
                    source,
                })
            }
        }
    }
    Err(GitError::Io {
        context: format!("creating a temporary file in {}", dir.display()),
        source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
    })
}

fn read_tail(f: &mut File, max: u64) -> String {
    let len = f.seek(SeekFrom::End(0)).unwrap_or(0);
    if f.seek(SeekFrom::Start(len.saturating_sub(max))).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(max).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        if pid > 0 {
            // SAFETY: plain syscall; the child leads its own process group
            // (setsid), so -pid is exactly its group.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
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
}
