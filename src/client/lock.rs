//! `lock -- CMD`: the open connection is the lock while a child runs, with signals forwarded.
//!
//! Like flock(1), CMD inherits the connection's descriptor (its number in
//! `GITLOCKD_LOCK_FD`): the daemon sees the connection close only when the
//! last process holding it exits, so even a `kill -9` of `gitlockd lock`
//! leaves no CMD running without the lock.

use std::ffi::OsString;
use std::io::{self, BufRead, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map};

use super::args::NotebookArg;
use super::conn::{
    parse_response, ClientError, Conn, EXIT_CANNOT_EXEC, EXIT_ERROR, EXIT_NOT_FOUND, EXIT_USAGE,
};
use crate::control::answers::{from_fields, DepthAnswer};

/// The variable telling CMD which of its descriptors is the lock's connection
/// (a background job that must not keep the lock can close it).
pub const LOCK_FD_VAR: &str = "GITLOCKD_LOCK_FD";

/// How long to wait for the answer to the final `unlock` of `lock -- CMD`.
const UNLOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// A line (or the end) seen on the lock connection while CMD runs.
enum Incoming {
    /// One answer line.
    Line(String),
    /// The connection closed or failed.
    Closed,
}

/// Take the lock, run `cmd`, release, and return CMD's exit code (or the error's).
pub(super) fn lock_and_run(
    socket: &Path,
    nb: &NotebookArg,
    timeout: Option<Duration>,
    shared: bool,
    cmd: &[OsString],
    err: &mut dyn Write,
) -> Result<i32, ClientError> {
    let mut conn = Conn::connect(socket)?;
    let mut args = Map::new();
    if let Some(t) = timeout {
        args.insert(
            "timeout_ms".into(),
            json!(u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        );
    }
    args.insert("shared".into(), json!(shared));
    // No read timeout: the daemon answers when the lock is granted or its wait times out.
    let (answer, held_name) = conn.request_nb_as("lock", nb, args, None)?;
    let _: DepthAnswer = from_fields(&answer)
        .map_err(|e| ClientError::Protocol(format!("unexpected answer to `lock`: {e}")))?;

    // From here on, the open connection *is* the lock. A reader thread notices
    // if the daemon drops it (max_hold, shutdown) while CMD still runs.
    let finished = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let Conn {
        mut reader,
        mut writer,
        next_id,
        ..
    } = conn;
    {
        let finished = Arc::clone(&finished);
        let held_name = held_name.clone();
        std::thread::spawn(move || loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(n) if n > 0 => {
                    if tx.send(Incoming::Line(line)).is_err() {
                        return;
                    }
                }
                _ => {
                    // Straight to the real stderr: CMD is writing there too, right now.
                    if !finished.load(Ordering::SeqCst) {
                        eprintln!(
                            "gitlockd: warning: the daemon closed the connection; \
                             the lock on {held_name} is no longer held"
                        );
                    }
                    let _ = tx.send(Incoming::Closed);
                    return;
                }
            }
        });
    }

    let code = run_child(cmd, writer.as_raw_fd(), err);
    finished.store(true, Ordering::SeqCst);

    // Best effort: closing the connection releases the lock anyway.
    let lost = matches!(rx.try_recv(), Ok(Incoming::Closed));
    if !lost {
        let id = next_id;
        let line = json!({"id": id, "cmd": "unlock", "notebook": held_name}).to_string() + "\n";
        if writer.write_all(line.as_bytes()).is_ok() {
            if let Ok(Incoming::Line(answer)) = rx.recv_timeout(UNLOCK_TIMEOUT) {
                let unlocked = parse_response(&answer, id).and_then(|fields| {
                    from_fields::<DepthAnswer>(&fields).map_err(|e| {
                        ClientError::Protocol(format!("unexpected answer to `unlock`: {e}"))
                    })
                });
                if let Err(e) = unlocked {
                    let _ = writeln!(err, "gitlockd: warning: unlock: {e}");
                }
            }
        }
    }
    // shutdown(2) ends the connection for every process sharing it: a
    // background job CMD left behind does not keep the lock.
    let _ = writer.shutdown(std::net::Shutdown::Both);
    Ok(code)
}

/// Run `cmd` with inherited stdio and the lock connection `lock_fd`, signals
/// handled as `lock` promises; returns the exit code.
fn run_child(cmd: &[OsString], lock_fd: RawFd, err: &mut dyn Write) -> i32 {
    let Some((program, args)) = cmd.split_first() else {
        let _ = writeln!(err, "gitlockd: error: no command given");
        return EXIT_USAGE;
    };
    // Registered before the spawn so a signal arriving in between is queued,
    // not fatal: the forwarder delivers it once the child exists.
    let signals = signal_hook::iterator::Signals::new([
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
    ]);
    let signals = match signals {
        Ok(s) => Some(s),
        Err(e) => {
            let _ = writeln!(
                err,
                "gitlockd: warning: cannot handle signals ({e}); a signal may kill gitlockd and release the lock early"
            );
            None
        }
    };
    let mut command = std::process::Command::new(program);
    command.args(args).env(LOCK_FD_VAR, lock_fd.to_string());
    // SAFETY: the closure only calls fcntl(2), which is async-signal-safe,
    // on a descriptor this process keeps open until the child is reaped.
    unsafe {
        command.pre_exec(move || {
            let flags = libc::fcntl(lock_fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(lock_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let name = Path::new(program).display();
            let (code, why) = match e.kind() {
                io::ErrorKind::NotFound => (EXIT_NOT_FOUND, "command not found".to_string()),
                io::ErrorKind::PermissionDenied => (EXIT_CANNOT_EXEC, "permission denied".into()),
                _ => (EXIT_CANNOT_EXEC, e.to_string()),
            };
            let _ = writeln!(err, "gitlockd: {name}: {why}");
            return code;
        }
    };
    let pid = child.id();

    // `alive` is cleared before the child is reaped, under the same mutex the
    // forwarder holds while calling kill(): a reaped (and possibly reused) pid
    // is never signalled.
    let alive = Arc::new(Mutex::new(true));
    let forwarder = signals.map(|mut signals| {
        let handle = signals.handle();
        let alive = Arc::clone(&alive);
        let thread = std::thread::spawn(move || {
            for sig in signals.forever() {
                // SIGINT/SIGQUIT come from the terminal to the whole process
                // group, so CMD already has them; only TERM/HUP are forwarded.
                if sig == libc::SIGTERM || sig == libc::SIGHUP {
                    let guard = alive.lock().unwrap_or_else(|p| p.into_inner());
                    if *guard {
                        if let Ok(pid) = libc::pid_t::try_from(pid) {
                            // SAFETY: kill(2) on a child we have not reaped yet.
                            unsafe {
                                libc::kill(pid, sig);
                            }
                        }
                    }
                }
            }
        });
        (handle, thread)
    });

    wait_without_reaping(pid);
    *alive.lock().unwrap_or_else(|p| p.into_inner()) = false;
    let status = child.wait();
    if let Some((handle, thread)) = forwarder {
        handle.close();
        let _ = thread.join();
    }
    match status {
        Ok(status) => exit_code_of(status),
        Err(e) => {
            let _ = writeln!(err, "gitlockd: error: waiting for the command: {e}");
            EXIT_ERROR
        }
    }
}

/// Block until child `pid` has exited, leaving it unreaped (waitid with WNOWAIT).
fn wait_without_reaping(pid: u32) {
    let id = libc::id_t::from(pid);
    loop {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid(2).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child with a valid siginfo pointer.
        let rc = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// A shell-style exit code: the child's code, or 128+N when killed by signal N.
pub fn exit_code_of(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => EXIT_ERROR,
    }
}
