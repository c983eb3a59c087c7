//! The daemon's life: start-up, readiness, signals, reload and shutdown.
//!
//! Start: validate the config, bind the socket (refusing to run twice),
//! open every notebook and commit what changed while nobody watched, then
//! report readiness. A notebook that cannot start does not stop the others:
//! it is shown with state "error" and tried again with capped backoff. SIGTERM/SIGINT commit everything pending and exit 0; a
//! second one exits at once. SIGHUP (or the socket's `reload`) applies a new
//! config by difference: unchanged notebooks keep their locks and pending
//! changes.
//!
//! Tasks: every long-lived task (notebook starts and stops, the accept loop,
//! each connection) is spawned on the daemon's one [`TaskTracker`] and told
//! to stop through its [`CancellationToken`]; shutdown cancels, then waits
//! for the tracker to drain, so no task outlives the daemon unobserved.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::RwLock;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, Config, NotebookConfig};
use crate::control::server::{self, BindError, ReloadFailure, ReloadReply, ServerContext};
use crate::notebook::Notebook;
use crate::registry::{FailedNotebook, Registry};
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
    tune_malloc();
    crate::git::stop_caching_trees();
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
    /// Notebook names in config order, to keep the registry in that order.
    order: RwLock<Vec<String>>,
    /// Every task the daemon spawns, waited for at shutdown.
    tracker: TaskTracker,
}

/// First wait before a notebook that could not start is tried again; it
/// doubles per failure up to [`RETRY_CAP`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between two tries of a notebook that cannot start.
const RETRY_CAP: Duration = Duration::from_secs(60);
/// How long shutdown waits, after the final commits, for tasks to return.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// The wait before try number `attempts + 1`.
fn retry_delay(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_CAP)
}

fn failed_entry(config: NotebookConfig, error: String, attempts: u32) -> FailedNotebook {
    FailedNotebook {
        config,
        error,
        next_try: SystemTime::now() + retry_delay(attempts),
        attempts,
    }
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
        order: RwLock::new(config.notebooks.iter().map(|n| n.name.clone()).collect()),
        tracker: TaskTracker::new(),
    };
    // Cancelling `shutdown` closes every connection; its child stops only
    // the accept loop, which goes first.
    let shutdown = CancellationToken::new();
    let stop_accepting = shutdown.child_token();

    let mut started = Vec::new();
    let lock_timeout = config.lock.timeout;
    let starts: Vec<_> = config
        .notebooks
        .iter()
        .cloned()
        .map(|nb| {
            daemon.tracker.spawn(start_notebook(
                nb,
                lock_timeout,
                daemon.events.clone(),
                daemon.tracker.clone(),
            ))
        })
        .collect();
    // One notebook that cannot start takes nothing else down: it is listed
    // with state "error" and tried again with backoff.
    let mut failed = Vec::new();
    for (task, cfg) in starts.into_iter().zip(config.notebooks.iter()) {
        let message = match task.await {
            Ok(Ok(nb)) => {
                started.push(Arc::new(nb));
                continue;
            }
            Ok(Err(message)) => message,
            Err(e) => format!("notebook {}: its start-up task failed: {e}", cfg.name),
        };
        tracing::error!("{message}; retrying in {:?}", retry_delay(1));
        failed.push(failed_entry(cfg.clone(), message, 1));
    }
    daemon.registry.replace(started);
    daemon.registry.set_failed(failed);
    // Accept only now: a client that connected while the notebooks opened
    // waits in the listen backlog instead of being told `not_found` for a
    // configured notebook (the socket is bound, and the flock held, early).
    let server_task = daemon.tracker.spawn(server::serve(
        socket.clone(),
        ctx.clone(),
        daemon.tracker.clone(),
        stop_accepting.clone(),
        shutdown.clone(),
    ));
    let names = daemon.registry.names();
    sd_notify::notify(&format!(
        "READY=1\nSTATUS=watching {} notebook(s)",
        names.len()
    ));
    tracing::info!(socket = %socket.path().display(), notebooks = %names.join(", "), "gitlockd is ready");

    loop {
        let retry_at = daemon.next_retry();
        tokio::select! {
            _ = sleep_until_opt(retry_at) => daemon.retry_failed().await,
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
    stop_accepting.cancel();
    if let Err(e) = server_task.await {
        tracing::error!(error = %e, "the accept loop failed");
    }
    socket.remove_file();
    daemon.stop_all(daemon.registry.list()).await;
    // Connections (a held lock, a subscription) end only now, after the
    // final commits, so their clients were answered until the end.
    shutdown.cancel();
    daemon.tracker.close();
    // Every loop answered its stop above; this only waits for them to
    // return. Bounded all the same: a stuck task must not keep a stopping
    // daemon alive (systemd would SIGKILL it mid-write instead).
    if tokio::time::timeout(DRAIN_LIMIT, daemon.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            tasks = daemon.tracker.len(),
            "some tasks did not end within {DRAIN_LIMIT:?} of the final commits; exiting anyway"
        );
    }
    tracing::info!("gitlockd stopped");
    EXIT_OK
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
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
    tasks: TaskTracker,
) -> Result<Notebook, String> {
    let name = config.name.clone();
    let path = config.path.clone();
    Notebook::start(config, lock_timeout, events, &tasks)
        .await
        .map_err(|e| {
            // The whole chain: "opening the repository" alone does not say why.
            let mut message = format!(
                "cannot start notebook {name} at {}: {}",
                path.display(),
                e.reason()
            );
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                let text = cause.to_string();
                if !message.contains(&text) {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                source = cause.source();
            }
            message
        })
}

impl Daemon {
    /// Stops notebooks concurrently: each commits its pending changes first.
    async fn stop_all(&self, notebooks: Vec<Arc<Notebook>>) {
        let tasks: Vec<_> = notebooks
            .into_iter()
            .map(|nb| {
                let name = nb.name().to_string();
                (name, self.tracker.spawn(async move { nb.stop().await }))
            })
            .collect();
        for (name, task) in tasks {
            if let Err(e) = task.await {
                tracing::error!(notebook = %name, error = %e, "stopping the notebook failed");
            }
        }
    }

    /// When the next notebook that could not start is due for a try.
    fn next_retry(&self) -> Option<Instant> {
        let now = SystemTime::now();
        self.registry
            .failed()
            .iter()
            .map(|f| Instant::now() + f.next_try.duration_since(now).unwrap_or_default())
            .min()
    }

    /// Tries again every notebook that could not start and is due.
    async fn retry_failed(&self) {
        let now = SystemTime::now();
        let lock_timeout = self.ctx.lock.read().timeout;
        let mut still = Vec::new();
        let mut started = Vec::new();
        for f in self.registry.failed() {
            if f.next_try > now {
                still.push(f);
                continue;
            }
            match start_notebook(
                f.config.clone(),
                lock_timeout,
                self.events.clone(),
                self.tracker.clone(),
            )
            .await
            {
                Ok(nb) => {
                    tracing::info!(notebook = %nb.name(), attempts = f.attempts + 1, "notebook started");
                    started.push(Arc::new(nb));
                }
                Err(message) => {
                    let attempts = f.attempts + 1;
                    if message != f.error {
                        tracing::error!("{message}; retrying in {:?}", retry_delay(attempts));
                    }
                    still.push(failed_entry(f.config, message, attempts));
                }
            }
        }
        if !started.is_empty() {
            let mut list = self.registry.list();
            list.extend(started);
            self.in_config_order(&mut list);
            self.registry.replace(list);
        }
        self.registry.set_failed(still);
    }

    fn in_config_order(&self, list: &mut [Arc<Notebook>]) {
        let order = self.order.read();
        list.sort_by_key(|nb| order.iter().position(|n| n == nb.name()));
    }

    /// Applies the config file anew; on an invalid file the old config stays.
    async fn reload(&self) -> Result<Vec<String>, ReloadFailure> {
        sd_notify::notify(&sd_notify::reloading_message());
        let result = self.apply(&self.options.config_path).await;
        match &result {
            Err(ReloadFailure::InvalidConfig(message)) => {
                tracing::error!("reload failed; the old config stays in force:\n{message}");
            }
            Err(ReloadFailure::NotebooksFailed(message)) => {
                tracing::error!("reload applied, but some notebooks could not start (retried with backoff):\n{message}");
            }
            Ok(_) => {}
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
        self.stop_all(leaving).await;
        let mut next = Vec::with_capacity(config.notebooks.len());
        let mut failures = Vec::new();
        let mut failed = Vec::new();
        // Notebooks that could not start are tried again at once by a reload.
        let previous_failures = self.registry.failed();
        for cfg in &config.notebooks {
            match keep(cfg) {
                Some(nb) => next.push(nb),
                None => {
                    match start_notebook(
                        cfg.clone(),
                        lock_timeout,
                        self.events.clone(),
                        self.tracker.clone(),
                    )
                    .await
                    {
                        Ok(nb) => {
                            tracing::info!(notebook = %nb.name(), "notebook started by reload");
                            next.push(Arc::new(nb));
                        }
                        Err(message) => {
                            tracing::error!("{message}");
                            let attempts = previous_failures
                                .iter()
                                .find(|f| f.config == *cfg)
                                .map_or(1, |f| f.attempts + 1);
                            failed.push(failed_entry(cfg.clone(), message.clone(), attempts));
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
        *self.order.write() = config.notebooks.iter().map(|n| n.name.clone()).collect();
        self.registry.replace(next);
        self.registry.set_failed(failed);
        if failures.is_empty() {
            Ok(self.registry.names())
        } else {
            Err(ReloadFailure::NotebooksFailed(failures.join("\n")))
        }
    }
}

/// Caps glibc's malloc arenas at two. Each blocking thread that loads an
/// index otherwise gets an arena of its own, which keeps its peak after the
/// index is freed: with a 100,000-entry index that is several MiB per thread.
///
/// Also fixes the mmap threshold at 1 MiB. glibc otherwise raises it (and the
/// trim threshold, to twice that) when a big mmapped block is freed, the
/// 8 MiB read buffer of a 100,000-entry index among them; from then on a
/// second arena's free top is never given back (`malloc_trim` does not trim
/// a non-main arena's top), and RSS 12 s after a commit stayed at 17 MiB
/// instead of 8 MiB, depending on heap layout.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_of_a_notebook_that_cannot_start_back_off_to_a_minute() {
        let secs: Vec<u64> = (1..=8).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(retry_delay(u32::MAX), RETRY_CAP);
        assert_eq!(retry_delay(0), RETRY_FIRST);
    }
}
