//! Running the user's `git`: no prompt, no terminal, bounded in time, and
//! the network half of sync (fetch, push) on top of it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use git2::{Oid, Repository};

use super::error::{git_err, SyncError};
use super::local::{open, ref_oid, Target};
use super::GitCli;

/// Stderr kept for an error message (the tail).
const MAX_STDERR: u64 = 16 * 1024;

/// After a timeout, how long git gets to remove its lock files (it does on
/// SIGTERM) before the group is killed outright.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// What a finished git subprocess printed.
pub(super) struct GitOutput {
    pub(super) status: ExitStatus,
    /// All of stdout.
    pub(super) stdout: Vec<u8>,
    /// The tail of stderr.
    pub(super) stderr: String,
}

impl GitOutput {
    /// Stdout as text (lossy).
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// git's complaint, or the exit status when it said nothing.
    pub(super) fn message(&self) -> String {
        let s = self.stderr.trim();
        if s.is_empty() {
            format!("git exited with {}", self.status)
        } else {
            s.to_string()
        }
    }
}

/// Fetch the remote branch into the remote-tracking ref; its new tip, or
/// `None` when the remote has no such branch.
pub(super) fn fetch(workdir: &Path, git: &GitCli, t: &Target) -> Result<Option<Oid>, SyncError> {
    let refspec = format!("+refs/heads/{}:{}", t.remote_branch, t.tracking_ref);
    let out = run_git(
        workdir,
        git,
        "fetch",
        &["--quiet", "--no-recurse-submodules", &t.remote, &refspec],
    )?;
    if out.status.success() {
        let repo = open(workdir)?;
        return match ref_oid(&repo, &t.tracking_ref)? {
            Some(id) => Ok(Some(id)),
            None => Err(SyncError::Fetch {
                remote: t.remote.clone(),
                stderr: format!("git fetch succeeded but {} is missing", t.tracking_ref),
            }),
        };
    }
    // Failed: a missing remote branch (exit 2 of ls-remote --exit-code) is
    // not an error (the first push creates it); anything else is.
    let probe = run_git(
        workdir,
        git,
        "ls-remote",
        &[
            "--exit-code",
            "--heads",
            &t.remote,
            &format!("refs/heads/{}", t.remote_branch),
        ],
    )?;
    if probe.status.code() == Some(2) {
        return Ok(None);
    }
    Err(SyncError::Fetch {
        remote: t.remote.clone(),
        stderr: out.message(),
    })
}

/// Push exactly `commit` to the remote branch (never forced); on success
/// the remote-tracking ref is set to it.
pub(super) fn push_commit(
    repo: &Repository,
    workdir: &Path,
    git: &GitCli,
    t: &Target,
    commit: Oid,
) -> Result<(), SyncError> {
    let refspec = format!("{commit}:refs/heads/{}", t.remote_branch);
    let out = run_git(workdir, git, "push", &["--porcelain", &t.remote, &refspec])?;
    if !out.status.success() {
        // Porcelain lines: `<flag>\t<from>:<to>\t<summary> (<reason>)`; `!`
        // is a failure, `[rejected]` a non-fast-forward one (as opposed to
        // `[remote rejected]`, a hook or a protected branch).
        let stdout = out.text();
        let rejected = stdout.lines().any(|l| {
            let mut f = l.split('\t');
            f.next() == Some("!") && f.nth(1).is_some_and(|s| s.starts_with("[rejected]"))
        });
        let mut msg = out.message();
        for l in stdout.lines().filter(|l| l.starts_with('!')) {
            msg.push('\n');
            msg.push_str(l.trim());
        }
        return Err(SyncError::Push {
            remote: t.remote.clone(),
            stderr: msg.trim().to_string(),
            rejected,
        });
    }
    repo.reference(&t.tracking_ref, commit, true, "gitlockd sync: push")
        .map_err(git_err(format!("updating {}", t.tracking_ref)))?;
    Ok(())
}

/// An unlinked temporary file for a subprocess's output (not a pipe: an ssh
/// `ControlPersist` master that keeps it open cannot hang us).
fn capture_file() -> Result<File, SyncError> {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir();
    for _ in 0..16 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = dir.join(format!(
            ".gitlockd-sync-{}-{}-{nanos}",
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
                return Err(SyncError::Io {
                    context: format!("creating a temporary file in {}", dir.display()),
                    source,
                })
            }
        }
    }
    Err(SyncError::Io {
        context: format!("creating a temporary file in {}", dir.display()),
        source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
    })
}

/// The last `max` bytes of `f`, or all of it (`None`).
fn read_back(f: &mut File, max: Option<u64>) -> Vec<u8> {
    let len = f.seek(SeekFrom::End(0)).unwrap_or(0);
    let start = max.map_or(0, |m| len.saturating_sub(m));
    if f.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    buf
}

/// Run `git <sub> <args>` in `workdir`, no prompt, killed after the timeout.
pub(super) fn run_git(
    workdir: &Path,
    git: &GitCli,
    sub: &str,
    args: &[&str],
) -> Result<GitOutput, SyncError> {
    run_git_env(workdir, git, sub, args, &[])
}

/// [`run_git`] with extra environment variables (identity, locale).
pub(super) fn run_git_env(
    workdir: &Path,
    git: &GitCli,
    sub: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<GitOutput, SyncError> {
    let io = |context: String| move |source| SyncError::Io { context, source };
    let mut out_f = capture_file()?;
    let mut err_f = capture_file()?;
    let mut cmd = Command::new(&git.program);
    cmd.arg(sub)
        .args(args)
        .current_dir(workdir)
        .stdin(Stdio::null())
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
    ] {
        cmd.env_remove(var);
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0");
    for (k, v) in &git.env {
        cmd.env(k, v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: setsid is async-signal-safe; the closure touches nothing else.
    // A new session = no controlling terminal (ssh cannot prompt) and a
    // process group we can kill whole on timeout.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(io(format!(
        "running {} {sub}",
        git.program.to_string_lossy()
    )))?;
    drop(cmd);
    // A thread blocks in wait(): the result arrives the moment git exits
    // (polling would add up to its interval to every local command).
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
            SyncError::Io {
                context: format!("waiting for git {sub}"),
                source,
            }
        })?;
    let finish = |waiter: std::thread::JoinHandle<()>| {
        let _ = waiter.join();
    };
    let status = match rx.recv_timeout(git.timeout) {
        Ok(Ok(status)) => {
            finish(waiter);
            status
        }
        Ok(Err(source)) => {
            kill_group(pid, libc::SIGKILL);
            finish(waiter);
            return Err(SyncError::Io {
                context: format!("waiting for git {sub}"),
                source,
            });
        }
        Err(_) => {
            // SIGTERM first: git removes its lock files on it. Then SIGKILL
            // for whatever is left of the group (children included).
            kill_group(pid, libc::SIGTERM);
            let gone = rx.recv_timeout(TERM_GRACE).is_ok();
            kill_group(pid, libc::SIGKILL);
            if !gone {
                let _ = rx.recv();
            }
            finish(waiter);
            return Err(SyncError::Timeout {
                command: sub.to_string(),
                after: git.timeout,
            });
        }
    };
    Ok(GitOutput {
        status,
        stdout: read_back(&mut out_f, None),
        stderr: String::from_utf8_lossy(&read_back(&mut err_f, Some(MAX_STDERR))).into_owned(),
    })
}

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
