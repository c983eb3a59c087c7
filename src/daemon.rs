//! The daemon's life: start-up, readiness, signals, reload and shutdown.
//!
//! Start: validate the config, bind the socket (refusing to run twice),
//! open every notebook and commit what changed while nobody watched, then
//! report readiness. SIGTERM/SIGINT commit everything pending and exit 0; a
//! second one exits at once. SIGHUP (or the socket's `reload`) applies a new
//! config by difference: unchanged notebooks keep their locks and pending
//! changes.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc, watch};

use crate::config::{self, Config, NotebookConfig};
use crate::control::server::{self, BindError, ReloadFailure, ReloadReply, ServerContext};
use crate::notebook::Notebook;
use crate::registry::Registry;
use crate::sd_notify;

/// How the daemon was asked to run.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The config file.
    pub config_path: PathBuf,
    /// `--socket` / `GITLOCKD_SOCKET`, overriding the config's `socket`.
    pub socket_override: Option<PathBuf>,
}

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: a runtime failure (socket taken, notebook cannot open).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: invalid config.
pub const EXIT_CONFIG: i32 = 2;

/// Runs the daemon in the foreground until a signal stops it; returns the exit code.
pub fn run(options: DaemonOptions) -> i32 {
    let config = match config::load(&options.config_path) {
        Ok(c) => c,
        Err(errors) => {
            // One event per error, so each reaches the journal at error priority.
            tracing::error!(
                "invalid config {}; nothing started",
                options.config_path.display()
            );
            for error in &errors.0 {
                tracing::error!("  {error}");
            }
            return EXIT_CONFIG;
        }
    };
    // A second SIGTERM/SIGINT while the first one's flush runs exits at once.
    let terminating = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let first =
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, terminating.clone());
        let second = signal_hook::flag::register(sig, terminating.clone());
        if let Err(e) = first.and(second) {
            tracing::warn!(error = %e, "cannot install the second-signal handler");
        }
    }
    // One runtime thread: every socket request and notebook loop is a short
    // async step, and all git and filesystem work runs on the blocking pool.
    // It saves the cross-thread wake-ups of a work-stealing runtime (socket
    // lock+unlock round trip: ~51 µs instead of ~69 µs median here).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("gitlockd")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gitlockd: cannot start the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    runtime.block_on(run_async(config, options))
}

struct Daemon {
    options: DaemonOptions,
    /// The socket in use; a reload cannot move it.
    socket_path: PathBuf,
    registry: Arc<Registry>,
    ctx: Arc<ServerContext>,
    events: broadcast::Sender<crate::notebook::NotebookEvent>,
}

async fn run_async(config: Config, options: DaemonOptions) -> i32 {
    let socket_path = options
        .socket_override
        .clone()
        .unwrap_or_else(|| config.socket.clone());
    let socket = match server::bind(&socket_path) {
        Ok(s) => Arc::new(s),
        Err(e @ BindError::AlreadyRunning(_)) => {
            tracing::error!("{e}");
            return EXIT_FAILURE;
        }
        Err(e) => {
            tracing::error!("{e}");
            return EXIT_FAILURE;
        }
    };
    let mut sighup = signal(SignalKind::hangup()).ok();
    let mut sigterm = signal(SignalKind::terminate()).ok();
    let mut sigint = signal(SignalKind::interrupt()).ok();

    let (events, _) = broadcast::channel(1024);
    let registry = Arc::new(Registry::default());
    let (reload_tx, mut reload_rx) = mpsc::unbounded_channel::<ReloadReply>();
    let ctx = Arc::new(ServerContext {
        registry: registry.clone(),
        lock: RwLock::new(config.lock.clone()),
        reload: reload_tx,
        events: events.clone(),
    });
    let daemon = Daemon {
        options,
        socket_path: socket_path.clone(),
        registry,
        ctx: ctx.clone(),
        events,
    };

    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let mut started = Vec::new();
    let lock_timeout = config.lock.timeout;
    let starts: Vec<_> = config
        .notebooks
        .iter()
        .cloned()
        .map(|nb| tokio::spawn(start_notebook(nb, lock_timeout, daemon.events.clone())))
        .collect();
    let mut failures = Vec::new();
    for task in starts {
        match task.await {
            Ok(Ok(nb)) => started.push(Arc::new(nb)),
            Ok(Err(message)) => failures.push(message),
            Err(e) => failures.push(format!("a notebook's start-up task failed: {e}")),
        }
    }
    if !failures.is_empty() {
        for message in &failures {
            tracing::error!("{message}");
        }
        stop_all(started).await;
        socket.remove_file();
        return EXIT_FAILURE;
    }
    daemon.registry.replace(started);
    // Accept only now: a client that connected while the notebooks opened
    // waits in the listen backlog instead of being told `not_found` for a
    // configured notebook (the socket is bound, and the flock held, early).
    let server_task = tokio::spawn(server::serve(socket.clone(), ctx.clone(), shutdown_rx));
    let names = daemon.registry.names();
    sd_notify::notify(&format!(
        "READY=1\nSTATUS=watching {} notebook(s)",
        names.len()
    ));
    tracing::info!(socket = %socket.path().display(), notebooks = %names.join(", "), "gitlockd is ready");

    loop {
        tokio::select! {
            _ = recv_signal(&mut sigterm) => { tracing::info!("SIGTERM: committing pending changes and stopping"); break; }
            _ = recv_signal(&mut sigint) => { tracing::info!("SIGINT: committing pending changes and stopping"); break; }
            _ = recv_signal(&mut sighup) => {
                tracing::info!("SIGHUP: reloading the config");
                let _ = daemon.reload().await;
            }
            Some(reply) = reload_rx.recv() => {
                tracing::info!("reload requested over the socket");
                let _ = reply.send(daemon.reload().await);
            }
        }
    }

    sd_notify::notify("STOPPING=1");
    let _ = shutdown_tx.send(true);
    socket.remove_file();
    stop_all(daemon.registry.list()).await;
    server_task.abort();
    tracing::info!("gitlockd stopped");
    EXIT_OK
}

async fn recv_signal(sig: &mut Option<tokio::signal::unix::Signal>) {
    match sig {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

async fn start_notebook(
    config: NotebookConfig,
    lock_timeout: std::time::Duration,
    events: broadcast::Sender<crate::notebook::NotebookEvent>,
) -> Result<Notebook, String> {
    let name = config.name.clone();
    let path = config.path.clone();
    Notebook::start(config, lock_timeout, events)
        .await
        .map_err(|e| format!("cannot start notebook {name} at {}: {e}", path.display()))
}

/// Stops notebooks concurrently: each commits its pending changes first.
async fn stop_all(notebooks: Vec<Arc<Notebook>>) {
    let tasks: Vec<_> = notebooks
        .into_iter()
        .map(|nb| tokio::spawn(async move { nb.stop().await }))
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

impl Daemon {
    /// Applies the config file anew; on an invalid file the old config stays.
    async fn reload(&self) -> Result<Vec<String>, ReloadFailure> {
        sd_notify::notify(&sd_notify::reloading_message());
        let result = self.apply(&self.options.config_path).await;
        match &result {
            Ok(_) => {}
            Err(ReloadFailure::InvalidConfig(message)) => {
                tracing::error!("reload failed; the old config stays in force:\n{message}");
            }
            // Each failure was logged where it happened.
            Err(ReloadFailure::NotebooksFailed(_)) => {
                tracing::error!(
                    "reload failed for some notebooks (see above); the new config is in force"
                );
            }
        }
        sd_notify::notify(&format!(
            "READY=1\nSTATUS=watching {} notebook(s)",
            self.registry.names().len()
        ));
        result
    }

    async fn apply(&self, path: &Path) -> Result<Vec<String>, ReloadFailure> {
        let config = config::load(path).map_err(|e| ReloadFailure::InvalidConfig(e.to_string()))?;
        let old = self.registry.list();
        let lock_timeout = config.lock.timeout;
        let keep = |cfg: &NotebookConfig| old.iter().find(|nb| nb.config() == cfg).cloned();
        // Stop what goes or changes first: its pending changes are committed.
        let leaving: Vec<_> = old
            .iter()
            .filter(|nb| !config.notebooks.iter().any(|cfg| cfg == nb.config()))
            .cloned()
            .collect();
        for nb in &leaving {
            tracing::info!(notebook = %nb.name(), "notebook removed or changed by reload; committing and stopping it");
        }
        stop_all(leaving).await;
        let mut next = Vec::with_capacity(config.notebooks.len());
        let mut failures = Vec::new();
        for cfg in &config.notebooks {
            match keep(cfg) {
                Some(nb) => next.push(nb),
                None => {
                    match start_notebook(cfg.clone(), lock_timeout, self.events.clone()).await {
                        Ok(nb) => {
                            tracing::info!(notebook = %nb.name(), "notebook started by reload");
                            next.push(Arc::new(nb));
                        }
                        Err(message) => {
                            tracing::error!("{message}");
                            failures.push(message);
                        }
                    }
                }
            }
        }
        *self.ctx.lock.write() = config.lock.clone();
        if self.options.socket_override.is_none() && config.socket != self.socket_path {
            tracing::warn!(socket = %config.socket.display(), "a changed socket path takes effect at the next start");
        }
        self.registry.replace(next);
        if failures.is_empty() {
            Ok(self.registry.names())
        } else {
            Err(ReloadFailure::NotebooksFailed(failures.join("\n")))
        }
    }
}
