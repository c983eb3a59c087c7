//! The control socket: binding (single instance, stale sockets, 0600), the
//! accept loop, and one task per connection.
//!
//! Each connection is one lock owner: its `lock` requests stack guards, any
//! request it sends runs as that owner (so it re-enters its own hold), and
//! closing the connection, for whatever reason, drops every guard it holds.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use parking_lot::RwLock;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Semaphore};

use super::protocol::{
    self, failure, parse_line, success, ErrorCode, Failure, Request, MAX_LINE, PROTOCOL_VERSION,
};
use crate::config::LockSettings;
use crate::git::GitError;
use crate::lock::{git_lock_manager, with_owner, LockError, LockGuard, LockMode, OwnerId};
use crate::notebook::{Notebook, NotebookEvent, SyncFailure};
use crate::registry::Registry;

/// At most this many connections are served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 1024;

/// A reload request from a client, answered with the notebook names or the errors.
pub type ReloadReply = oneshot::Sender<Result<Vec<String>, String>>;

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
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds the control socket at `path`: refuses when another gitlockd
/// answers there, replaces a stale socket file, creates it 0600.
pub fn bind(path: &Path) -> Result<BoundSocket, BindError> {
    let io_err = |source| BindError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_err)?;
        }
    }
    // The flock closes the race between two daemons starting at once; the
    // kernel drops it when this process dies, however it dies.
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let instance = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io_err)?;
    match instance.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(BindError::AlreadyRunning(path.to_path_buf()))
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
    }
    if path.exists() {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(BindError::AlreadyRunning(path.to_path_buf())),
            Err(_) => {
                tracing::info!(socket = %path.display(), "removing a stale socket file nobody answers on");
                std::fs::remove_file(path).map_err(io_err)?;
            }
        }
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

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    socket: Arc<BoundSocket>,
    ctx: Arc<ServerContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let my_uid = unsafe_free_getuid();
    loop {
        tokio::select! {
            accepted = socket.listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        tracing::warn!("too many connections; closing a new one");
                        continue;
                    };
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        handle_connection(stream, ctx, my_uid).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // EMFILE and friends: give the system a moment instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

fn unsafe_free_getuid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// One line read from a client.
enum Line {
    Request(Vec<u8>),
    TooLarge,
    Closed,
}

/// A connection's state: its owner identity and the holds it stacked.
struct Connection {
    owner: OwnerId,
    ctx: Arc<ServerContext>,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// Guards by notebook root; the Vec's length is the depth.
    holds: HashMap<PathBuf, Vec<LockGuard>>,
    /// When the current hold started, for `lock.max_hold`.
    holding_since: Option<Instant>,
}

async fn handle_connection(stream: UnixStream, ctx: Arc<ServerContext>, my_uid: u32) {
    let cred = stream.peer_cred().ok();
    let (read, mut writer) = stream.into_split();
    if cred.as_ref().map(|c| c.uid()) != Some(my_uid) {
        let who = cred
            .map(|c| c.uid().to_string())
            .unwrap_or_else(|| "unknown".into());
        tracing::warn!(uid = %who, "refused a connection from another user");
        let line = failure(
            &Value::Null,
            &Failure::new(
                ErrorCode::Forbidden,
                format!("uid {who} may not use this gitlockd (it serves uid {my_uid})"),
            ),
        );
        let _ = writer.write_all(&line).await;
        return;
    }
    let owner = OwnerId::fresh();
    let label = match cred.and_then(|c| c.pid()) {
        Some(pid) => format!("client pid {pid}"),
        None => "client".to_string(),
    };
    git_lock_manager().label_owner(owner, label);
    let mut conn = Connection {
        owner,
        ctx,
        reader: BufReader::new(read),
        writer,
        holds: HashMap::new(),
        holding_since: None,
    };
    conn.run().await;
    let released = conn.holds.values().map(Vec::len).sum::<usize>();
    if released > 0 {
        tracing::debug!(%owner, levels = released, "connection closed; releasing its locks");
    }
    drop(conn);
    git_lock_manager().forget_owner(owner);
}

impl Connection {
    async fn run(&mut self) {
        let mut buf = Vec::with_capacity(256);
        loop {
            let max_hold = self.ctx.lock.read().max_hold;
            let deadline = self.holding_since.map(|since| since + max_hold);
            let line = tokio::select! {
                line = read_line(&mut self.reader, &mut buf) => line,
                _ = sleep_until_opt(deadline) => {
                    tracing::warn!(owner = %self.owner, ?max_hold, "client held a lock longer than lock.max_hold; disconnecting it and releasing its locks");
                    return;
                }
            };
            let bytes = match line {
                Line::Closed => return,
                Line::TooLarge => {
                    let f = Failure::new(
                        ErrorCode::TooLarge,
                        format!(
                            "request line longer than {MAX_LINE} bytes; closing the connection"
                        ),
                    );
                    let _ = self.writer.write_all(&failure(&Value::Null, &f)).await;
                    return;
                }
                Line::Request(bytes) => bytes,
            };
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let incoming = parse_line(&bytes);
            let id = incoming.id;
            let request = match incoming.request {
                Ok(r) => r,
                Err(f) => {
                    if self.writer.write_all(&failure(&id, &f)).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            if let Request::Subscribe { notebook } = request {
                self.subscribe(id, notebook).await;
                return;
            }
            let answer = match self.dispatch(request).await {
                Ok(fields) => success(&id, fields),
                Err(Outcome::Failed(f)) => failure(&id, &f),
                Err(Outcome::Disconnected) => return,
            };
            if self.writer.write_all(&answer).await.is_err() {
                return;
            }
            if self.holds.values().all(Vec::is_empty) {
                self.holding_since = None;
            } else if self.holding_since.is_none() {
                self.holding_since = Some(Instant::now());
            }
        }
    }

    fn notebook(&self, arg: &str) -> Result<Arc<Notebook>, Failure> {
        if let Some(failed) = self.ctx.registry.find_failed(arg) {
            return Err(Failure::new(
                ErrorCode::NotFound,
                format!(
                    "notebook {} is not running: {} (gitlockd retries it; see `gitlockd status`)",
                    failed.config.name, failed.error
                ),
            ));
        }
        self.ctx.registry.find(arg).ok_or_else(|| {
            Failure::new(
                ErrorCode::NotFound,
                format!(
                    "no notebook named or containing {arg:?} (configured: {})",
                    self.ctx.registry.names().join(", ")
                ),
            )
        })
    }

    fn lock_timeout(&self, ms: Option<u64>) -> Duration {
        ms.map(Duration::from_millis)
            .unwrap_or_else(|| self.ctx.lock.read().timeout)
    }

    /// Waits for the lock as this connection, giving up if the client goes away.
    async fn acquire(
        &mut self,
        nb: &Notebook,
        mode: LockMode,
        timeout: Duration,
    ) -> Result<LockGuard, Outcome> {
        let lock = nb.lock().clone();
        // Fast path: a free lock (or our own, re-entered) is taken without
        // the wait machinery below and its extra read on the socket.
        match lock.try_lock(self.owner, mode) {
            Ok(guard) => return Ok(guard),
            Err(e @ LockError::UpgradeWouldDeadlock { .. }) => {
                return Err(Outcome::Failed(lock_failure(nb.name(), &e)))
            }
            Err(_) => {}
        }
        let wait = lock.lock_async(self.owner, mode, Some(timeout));
        tokio::pin!(wait);
        // A connection that already holds a lock stays bounded by max_hold while it waits.
        let max_hold = self.ctx.lock.read().max_hold;
        let cut = sleep_until_opt(self.holding_since.map(|since| since + max_hold));
        tokio::pin!(cut);
        let over = |owner: OwnerId| {
            tracing::warn!(%owner, ?max_hold, "client held a lock longer than lock.max_hold (while waiting for another); disconnecting it and releasing its locks");
            Outcome::Disconnected
        };
        tokio::select! {
            got = &mut wait => return got.map_err(|e| Outcome::Failed(lock_failure(nb.name(), &e))),
            () = &mut cut => return Err(over(self.owner)),
            filled = self.reader.fill_buf() => match filled {
                // EOF: the client left while queued; dropping `wait` withdraws it.
                Ok([]) | Err(_) => return Err(Outcome::Disconnected),
                // A pipelined request: it waits in the buffer for its turn.
                Ok(_) => {}
            },
        }
        // Requests are buffered: watch the socket itself for the client leaving.
        tokio::select! {
            got = &mut wait => got.map_err(|e| Outcome::Failed(lock_failure(nb.name(), &e))),
            () = &mut cut => Err(over(self.owner)),
            () = peer_closed(self.reader.get_ref().as_ref()) => Err(Outcome::Disconnected),
        }
    }

    async fn dispatch(&mut self, request: Request) -> Result<Map<String, Value>, Outcome> {
        match request {
            Request::Ping => Ok(fields(json!({
                "version": env!("CARGO_PKG_VERSION"),
                "protocol": PROTOCOL_VERSION,
            }))),
            Request::Status { notebook } => {
                // A notebook that could not start is listed with state "error".
                let failed = match &notebook {
                    Some(arg) => self.ctx.registry.find_failed(arg).map(|f| vec![f.status()]),
                    None => None,
                };
                if let Some(entries) = failed {
                    return Ok(fields(json!({ "notebooks": entries })));
                }
                let notebooks = match &notebook {
                    Some(arg) => vec![self.notebook(arg)?],
                    None => self.ctx.registry.list(),
                };
                let mut entries = Vec::with_capacity(notebooks.len());
                for nb in notebooks {
                    entries.push(nb.status().await);
                }
                if notebook.is_none() {
                    entries.extend(self.ctx.registry.failed_status());
                }
                Ok(fields(json!({ "notebooks": entries })))
            }
            Request::Lock {
                notebook,
                timeout_ms,
                shared,
            } => {
                let nb = self.notebook(&notebook)?;
                let mode = if shared.unwrap_or(false) {
                    LockMode::Shared
                } else {
                    LockMode::Exclusive
                };
                let guard = self
                    .acquire(&nb, mode, self.lock_timeout(timeout_ms))
                    .await?;
                let holds = self.holds.entry(nb.root().to_path_buf()).or_default();
                holds.push(guard);
                Ok(fields(json!({ "depth": holds.len() })))
            }
            Request::Unlock { notebook } => {
                let nb = self.notebook(&notebook)?;
                let holds = self.holds.entry(nb.root().to_path_buf()).or_default();
                if holds.pop().is_none() {
                    return Err(Outcome::Failed(Failure::new(
                        ErrorCode::NotHeld,
                        format!("this connection does not hold the lock of {}", nb.name()),
                    )));
                }
                Ok(fields(json!({ "depth": holds.len() })))
            }
            Request::Commit {
                notebook,
                message,
                paths,
            } => self.commit(notebook, message, paths).await,
            Request::Log {
                notebook,
                path,
                limit,
            } => {
                let limit = limit.unwrap_or(50);
                let commits = self
                    .read_op(&notebook, move |nb| {
                        let path = path
                            .map(|p| nb.git().resolve_path(Path::new(&p)))
                            .transpose()?;
                        nb.git().get_file_history(path.as_deref(), limit)
                    })
                    .await?;
                let commits: Vec<Value> = commits
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id.to_string(),
                            "summary": c.summary,
                            "message": c.message,
                            "author_name": c.author_name,
                            "author_email": c.author_email,
                            "time": c.rfc3339(),
                        })
                    })
                    .collect();
                Ok(fields(json!({ "commits": commits })))
            }
            Request::Show {
                notebook,
                path,
                rev,
            } => {
                let rev = rev.unwrap_or_else(|| "HEAD".into());
                let (commit, bytes) = self
                    .read_op(&notebook, move |nb| {
                        let path = nb.git().resolve_path(Path::new(&path))?;
                        nb.git().get_file_at_commit(&path, &rev)
                    })
                    .await?;
                let mut out = Map::new();
                out.insert("commit".into(), Value::from(commit.to_string()));
                match String::from_utf8(bytes) {
                    Ok(text) => out.insert("content".into(), Value::from(text)),
                    Err(e) => out.insert(
                        "content_base64".into(),
                        Value::from(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
                    ),
                };
                Ok(out)
            }
            Request::Diff {
                notebook,
                path,
                from,
                to,
            } => {
                let patch = self
                    .read_op(&notebook, move |nb| {
                        let path = path
                            .map(|p| nb.git().resolve_path(Path::new(&p)))
                            .transpose()?;
                        nb.git()
                            .get_diff(from.as_deref(), to.as_deref(), path.as_deref())
                    })
                    .await?;
                Ok(fields(json!({ "patch": patch })))
            }
            Request::Pause { notebook } => {
                let nb = self.notebook(&notebook)?;
                nb.set_paused(true);
                tracing::info!(notebook = %nb.name(), "auto-commits paused");
                Ok(fields(json!({ "paused": true })))
            }
            Request::Resume { notebook } => {
                let nb = self.notebook(&notebook)?;
                nb.set_paused(false);
                tracing::info!(notebook = %nb.name(), "auto-commits resumed");
                Ok(fields(json!({ "paused": false })))
            }
            Request::Reload => {
                let (tx, rx) = oneshot::channel();
                self.ctx
                    .reload
                    .send(tx)
                    .map_err(|_| internal("the daemon is shutting down"))?;
                match rx.await {
                    Ok(Ok(names)) => Ok(fields(json!({ "notebooks": names }))),
                    Ok(Err(message)) => Err(Outcome::Failed(Failure::new(
                        ErrorCode::BadRequest,
                        format!(
                            "the new config is invalid; the old one stays in force:\n{message}"
                        ),
                    ))),
                    Err(_) => Err(internal("the daemon is shutting down")),
                }
            }
            Request::Sync { notebook } => {
                let nb = self.notebook(&notebook)?;
                match nb.sync_now().await {
                    Ok(o) => Ok(fields(json!({
                        "fetched": o.fetched,
                        "integrated": o.integrated.as_str(),
                        "pushed": o.pushed,
                        "ahead": o.ahead,
                        "behind": o.behind,
                        "diverged_ref": o.diverged_ref,
                    }))),
                    Err(SyncFailure::NotConfigured(m)) => {
                        Err(Outcome::Failed(Failure::new(ErrorCode::BadRequest, m)))
                    }
                    Err(SyncFailure::Conflict(m)) => {
                        Err(Outcome::Failed(Failure::new(ErrorCode::Conflict, m)))
                    }
                    Err(SyncFailure::Failed(m)) => {
                        Err(Outcome::Failed(Failure::new(ErrorCode::Git, m)))
                    }
                }
            }
            Request::Subscribe { .. } => Err(internal("subscribe is handled by the connection")),
        }
    }

    /// Runs a read-only git operation under a shared hold taken as this connection.
    async fn read_op<T, F>(&mut self, notebook: &str, op: F) -> Result<T, Outcome>
    where
        T: Send + 'static,
        F: FnOnce(&Notebook) -> Result<T, GitError> + Send + 'static,
    {
        let nb = self.notebook(notebook)?;
        let guard = self
            .acquire(&nb, LockMode::Shared, self.lock_timeout(None))
            .await?;
        let owner = self.owner;
        let task = tokio::task::spawn_blocking(move || {
            let _hold = guard;
            with_owner(owner, || op(&nb))
        });
        match task.await {
            Ok(result) => result.map_err(|e| Outcome::Failed(git_failure(&e))),
            Err(e) => Err(internal(&format!("git task failed: {e}"))),
        }
    }

    async fn commit(
        &mut self,
        notebook: String,
        message: Option<String>,
        paths: Option<Vec<String>>,
    ) -> Result<Map<String, Value>, Outcome> {
        let nb = self.notebook(&notebook)?;
        let guard = self
            .acquire(&nb, LockMode::Exclusive, self.lock_timeout(None))
            .await?;
        let owner = self.owner;
        let worker = nb.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _hold = guard;
            with_owner(owner, || {
                let git = worker.git();
                let paths = paths
                    .map(|ps| {
                        ps.iter()
                            .map(|p| git.resolve_path(Path::new(p)))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .transpose()?;
                let _marker =
                    crate::recovery::WriteMarker::begin(worker.git_dir()).map_err(|source| {
                        GitError::Io {
                            context: format!(
                                "writing the crash marker in {}",
                                worker.git_dir().display()
                            ),
                            source,
                        }
                    })?;
                git.commit_now(
                    message.as_deref(),
                    paths.as_deref(),
                    worker.commit_options(),
                )
            })
        });
        let outcome = match task.await {
            Ok(result) => result.map_err(|e| Outcome::Failed(git_failure(&e)))?,
            Err(e) => return Err(internal(&format!("git task failed: {e}"))),
        };
        let commit = outcome.commit.map(|id| id.to_string());
        if let Some(id) = &commit {
            tracing::info!(notebook = %nb.name(), commit = &id[..id.len().min(8)], files = outcome.paths.len(), "committed on request");
            nb.announce_commit(
                id.clone(),
                outcome
                    .paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            );
        }
        Ok(fields(json!({ "commit": commit })))
    }

    /// Streams events until the client closes the connection.
    async fn subscribe(&mut self, id: Value, notebook: Option<String>) {
        let only = match notebook.map(|arg| self.notebook(&arg)).transpose() {
            Ok(nb) => nb,
            Err(f) => {
                let _ = self.writer.write_all(&failure(&id, &f)).await;
                return;
            }
        };
        let mut events = self.ctx.events.subscribe();
        let notebooks = match &only {
            Some(nb) => vec![nb.clone()],
            None => self.ctx.registry.list(),
        };
        let (lock_tx, mut lock_rx) = mpsc::unbounded_channel::<(String, bool)>();
        let mut watchers = Vec::new();
        for nb in &notebooks {
            let mut held = nb.lock().watch_held();
            let name = nb.name().to_string();
            let tx = lock_tx.clone();
            watchers.push(tokio::spawn(async move {
                while held.changed().await.is_ok() {
                    let now = *held.borrow_and_update();
                    if tx.send((name.clone(), now)).is_err() {
                        return;
                    }
                }
            }));
        }
        let only_name = only.map(|nb| nb.name().to_string());
        if self
            .writer
            .write_all(&success(&id, Map::new()))
            .await
            .is_err()
        {
            return;
        }
        let mut sink = [0u8; 4096];
        loop {
            let line = tokio::select! {
                ev = events.recv() => match ev {
                    Ok(NotebookEvent::Commit { notebook, commit, paths }) => {
                        if only_name.as_ref().is_some_and(|n| *n != notebook) {
                            continue;
                        }
                        json!({"event": "commit", "notebook": notebook, "commit": commit, "paths": paths})
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        json!({"event": "lagged", "missed": n})
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some((notebook, held)) = lock_rx.recv() => {
                    json!({"event": "lock", "notebook": notebook, "held": held})
                }
                // Anything the client sends now is ignored; EOF ends the stream.
                n = self.reader.read(&mut sink) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                },
            };
            if self
                .writer
                .write_all(&protocol::to_line(&line))
                .await
                .is_err()
            {
                break;
            }
        }
        for w in watchers {
            w.abort();
        }
    }
}

/// Why a request produced no success.
enum Outcome {
    /// Answer with this failure.
    Failed(Failure),
    /// The client went away: answer nothing, close.
    Disconnected,
}

impl From<Failure> for Outcome {
    fn from(f: Failure) -> Outcome {
        Outcome::Failed(f)
    }
}

fn internal(message: &str) -> Outcome {
    Outcome::Failed(Failure::new(ErrorCode::Internal, message))
}

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn lock_failure(notebook: &str, e: &LockError) -> Failure {
    match e {
        LockError::Timeout { .. } | LockError::WouldBlock { .. } => {
            Failure::new(ErrorCode::Timeout, format!("{notebook}: {e}"))
        }
        LockError::UpgradeWouldDeadlock { .. } => {
            Failure::new(ErrorCode::Conflict, format!("{notebook}: {e}"))
        }
    }
}

/// Maps a git failure to the protocol's codes.
pub fn git_failure(e: &GitError) -> Failure {
    let code = match e {
        GitError::Busy { .. } => ErrorCode::Conflict,
        GitError::Forbidden { .. } => ErrorCode::Forbidden,
        GitError::NotFound { .. } => ErrorCode::NotFound,
        GitError::Lock(LockError::UpgradeWouldDeadlock { .. }) => ErrorCode::Conflict,
        GitError::Lock(_) => ErrorCode::Timeout,
        _ => ErrorCode::Git,
    };
    Failure::new(code, e.describe())
}

/// Resolves once the peer has closed the stream (EOF or an error), without
/// consuming any byte; pends while it is open. If yet more requests are
/// waiting in the socket, EOF cannot be seen behind them: it pends for ever.
async fn peer_closed(stream: &UnixStream) {
    use std::os::fd::AsRawFd;
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        let peeked = stream.try_io(tokio::io::Interest::READABLE, || {
            let mut byte = 0u8;
            // SAFETY: the fd is open for the stream's lifetime; one byte of buffer.
            let n = unsafe {
                libc::recv(
                    stream.as_raw_fd(),
                    (&mut byte as *mut u8).cast(),
                    1,
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n)
            }
        });
        match peeked {
            Ok(0) => return,
            Ok(_) => std::future::pending::<()>().await,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        }
    }
}

async fn read_line(reader: &mut BufReader<OwnedReadHalf>, buf: &mut Vec<u8>) -> Line {
    buf.clear();
    let limit = MAX_LINE as u64 + 1;
    match (&mut *reader).take(limit).read_until(b'\n', buf).await {
        Ok(0) | Err(_) => Line::Closed,
        Ok(_) if buf.last() == Some(&b'\n') => {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            Line::Request(std::mem::take(buf))
        }
        // No newline: either the line is over the limit, or the client
        // closed half-way through a request (which is not answered).
        Ok(_) if buf.len() > MAX_LINE => Line::TooLarge,
        Ok(_) => Line::Closed,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
