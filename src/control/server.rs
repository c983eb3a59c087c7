//! The control socket: binding (a folder only we control, single instance,
//! stale sockets, 0600) and the accept loop; each connection is served by
//! [`super::connection`].

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tokio::net::UnixListener;
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection;
use super::trust::{self, TrustError};
use crate::config::LockSettings;
use crate::notebook::NotebookEvent;
use crate::registry::Registry;

/// At most this many connections are served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 1024;

/// A reload request from a client, answered with the notebook names or the errors.
pub type ReloadReply = oneshot::Sender<Result<Vec<String>, ReloadFailure>>;

/// Why a reload did not fully apply.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadFailure {
    /// The new config is invalid; the old one stays in force.
    #[error("{0}")]
    InvalidConfig(String),
    /// The new config is in force, but these notebooks could not start.
    #[error("{0}")]
    NotebooksFailed(String),
}

/// What connections need from the daemon.
pub struct ServerContext {
    /// The running notebooks.
    pub registry: Arc<Registry>,
    /// `[lock]` settings; replaced on reload.
    pub lock: RwLock<LockSettings>,
    /// Asks the daemon to reload its config.
    pub reload: mpsc::UnboundedSender<ReloadReply>,
    /// Commit events, for `subscribe`.
    pub events: broadcast::Sender<NotebookEvent>,
}

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another daemon answers on the socket (or holds its lock file).
    #[error("another gitlockd is already running on {0} (stop it first, or use another --socket)")]
    AlreadyRunning(PathBuf),
    /// Something other than a socket sits at the socket path.
    #[error(
        "the socket path {} is {kind}, not a socket; gitlockd only ever replaces a stale socket \
         of its own (remove it yourself if nothing needs it, or choose another `socket` path)",
        path.display()
    )]
    NotASocket {
        /// The socket path.
        path: PathBuf,
        /// What is there instead, in words.
        kind: &'static str,
    },
    /// A stale socket of another user sits at the path.
    #[error(
        "the socket path {} is a socket of uid {owner}, not yours; refusing to remove it \
         (choose another `socket` path)",
        path.display()
    )]
    ForeignSocket {
        /// The socket path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
    },
    /// The single-instance `.lock` file is not a plain file of ours.
    #[error(
        "the lock file {} is {kind}; refusing to use it (remove it, or choose another `socket` path)",
        path.display()
    )]
    BadLockFile {
        /// The `.lock` path.
        path: PathBuf,
        /// What it is, in words.
        kind: String,
    },
    /// The socket's folder could be tampered with by another user.
    #[error(transparent)]
    UnsafeDir(#[from] TrustError),
    /// Creating, probing or binding failed.
    #[error("cannot bind the control socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A bound socket, with the flock that makes this process its only server.
pub struct BoundSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Identity of the socket file we created, so we never remove another's.
    ino: u64,
    _instance: File,
}

impl BoundSocket {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket file, if it is still the one we created.
    pub fn remove_file(&self) {
        if std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.ino() == self.ino && m.file_type().is_socket())
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds the control socket at `path`: refuses a folder another user can
/// tamper with, refuses when another gitlockd answers there, replaces a stale
/// socket of ours (and nothing else), creates it 0600.
pub fn bind(path: &Path) -> Result<BoundSocket, BindError> {
    let io_err = |source| BindError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = trust::socket_dir(path);
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err)?;
    }
    // Checked before anything is created or removed in it.
    trust::check_dir(dir)?;
    let instance = open_instance_lock(path)?;
    match instance.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(BindError::AlreadyRunning(path.to_path_buf()))
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
    }
    // lstat: a symlink is reported as itself, never followed to its target.
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(BindError::NotASocket {
                path: path.to_path_buf(),
                kind: trust::describe_type(&meta),
            })
        }
        Ok(meta) if meta.uid() != trust::my_uid() => {
            return Err(BindError::ForeignSocket {
                path: path.to_path_buf(),
                owner: meta.uid(),
            })
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(BindError::AlreadyRunning(path.to_path_buf())),
            Err(_) => {
                tracing::info!(socket = %path.display(), "removing a stale socket file nobody answers on");
                std::fs::remove_file(path).map_err(io_err)?;
            }
        },
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    let ino = std::fs::symlink_metadata(path).map_err(io_err)?.ino();
    Ok(BoundSocket {
        listener,
        path: path.to_path_buf(),
        ino,
        _instance: instance,
    })
}

/// Opens (creating it 0600) `<socket>.lock`, whose flock closes the race
/// between two daemons starting at once; the kernel drops it when this
/// process dies, however it dies. Never follows a symlink, never blocks on a
/// FIFO, and accepts only a regular file of ours.
fn open_instance_lock(socket: &Path) -> Result<File, BindError> {
    let mut lock_path = socket.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let bad = |kind: String| BindError::BadLockFile {
        path: lock_path.clone(),
        kind,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&lock_path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => bad("a symbolic link".into()),
            Some(libc::ENXIO) => bad("a named pipe".into()),
            _ => BindError::Io {
                path: lock_path.clone(),
                source: e,
            },
        })?;
    let meta = file.metadata().map_err(|source| BindError::Io {
        path: lock_path.clone(),
        source,
    })?;
    if !meta.is_file() {
        return Err(bad(trust::describe_type(&meta).into()));
    }
    if meta.uid() != trust::my_uid() {
        return Err(bad(format!("owned by uid {}, not by you", meta.uid())));
    }
    Ok(file)
}

/// Accepts connections until `stop_accepting` is cancelled. Each connection
/// runs on the daemon's `tracker` until it ends or `close` is cancelled; the
/// daemon cancels `close` only after the notebooks' final commits, so a
/// client holding a lock keeps it (and its answer) until then.
pub async fn serve(
    socket: Arc<BoundSocket>,
    ctx: Arc<ServerContext>,
    tracker: TaskTracker,
    stop_accepting: CancellationToken,
    close: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let my_uid = trust::my_uid();
    let mut accept_failures = Burst::default();
    let mut refused = Burst::default();
    loop {
        tokio::select! {
            accepted = socket.listener.accept() => match accepted {
                Ok((stream, _)) => {
                    accept_failures.ended("accepting connections again");
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        if refused.started() {
                            tracing::warn!("{MAX_CONNECTIONS} connections are open; closing new ones until one ends");
                        }
                        continue;
                    };
                    refused.ended("taking new connections again");
                    let ctx = ctx.clone();
                    let close = close.clone();
                    tracker.spawn(async move {
                        tokio::select! {
                            () = connection::handle(stream, ctx, my_uid) => {}
                            () = close.cancelled() => {}
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    if accept_failures.started() {
                        tracing::warn!(error = %e, "accept failed (out of file descriptors? raise `ulimit -n`); retrying every 50 ms, logged again once it works");
                    }
                    // EMFILE and friends: give the system a moment instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = stop_accepting.cancelled() => return,
        }
    }
}

/// A run of repeated failures, logged once when it starts and once when it ends.
///
/// A run ends only at a success that comes a quiet second after its last
/// failure: under descriptor pressure one accept often slips through between
/// failures, and that must not start a new run (and a new warning) each time.
#[derive(Default)]
struct Burst {
    /// Failures in the current run (0: none).
    count: u64,
    /// When the run's last failure happened.
    last_failure: Option<Instant>,
}

/// How long a run must stay quiet before a success ends it.
const BURST_QUIET: Duration = Duration::from_secs(1);

impl Burst {
    /// Counts a failure; true for the first of a run (the one to log).
    fn started(&mut self) -> bool {
        self.count += 1;
        self.last_failure = Some(Instant::now());
        self.count == 1
    }

    /// Ends a run, if one was going on and has been quiet long enough,
    /// logging how long it was.
    fn ended(&mut self, what: &str) {
        let quiet = self
            .last_failure
            .is_none_or(|at| at.elapsed() >= BURST_QUIET);
        if self.count > 0 && quiet {
            tracing::info!(failures = self.count, "{what}");
            self.count = 0;
        }
    }
}
