//! The notebook's loop: waits for file events, timers and control
//! messages, starts commit rounds, and restarts itself (and the watcher)
//! after a crash.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep_until;

use super::round::{commit_round, settle, Round, RoundFuture, RoundResult};
use super::schedule::Backoff;
use super::sync_schedule::{settle_sync, SyncSchedule, SyncWork};
use super::{Control, Shared, SyncFailure};
use crate::filter::PathFilter;
use crate::git::GitError;
use crate::lock::{git_lock_manager, OwnerId};
use crate::watch::{NotebookWatcher, WatchEvent};

/// What it takes to (re)start a notebook's watcher.
#[derive(Clone)]
pub(super) struct WatchSetup {
    pub(super) root: PathBuf,
    pub(super) filter: Arc<PathFilter>,
}

/// Starts the watcher on a blocking thread (it walks the tree), with a fresh
/// queue: the queue closing is how the loop learns that the watcher died.
/// Without a watcher the notebook is marked unwatched: it rescans on a timer
/// and tries again.
async fn start_watcher(
    shared: &Shared,
    setup: &WatchSetup,
) -> (Option<NotebookWatcher>, mpsc::Receiver<WatchEvent>) {
    let (tx, rx) = mpsc::channel(crate::watch::NOTEBOOK_QUEUE);
    let name = shared.name.clone();
    let (root, filter) = (setup.root.clone(), setup.filter.clone());
    let started =
        tokio::task::spawn_blocking(move || NotebookWatcher::start(&name, &root, filter, tx)).await;
    let error = match started {
        Ok(Ok(w)) => {
            *shared.watches.lock() = Some(w.watch_counter());
            // A limit that refused folders inside says so in its first events.
            if shared.unwatched.swap(false, Ordering::SeqCst) {
                tracing::info!(notebook = %shared.name, "watching the notebook again");
                shared.health.lock().watch_problem = None;
            }
            return (Some(w), rx);
        }
        Ok(Err(e)) => e.to_string(),
        Err(join) => format!("the watcher's start-up task failed: {join}"),
    };
    let mut health = shared.health.lock();
    if health.watch_problem.as_deref() != Some(error.as_str()) {
        tracing::error!(notebook = %shared.name, error = %error, "cannot watch the notebook; changes are found by rescans every max_delay until watching works");
    }
    health.watch_problem = Some(error);
    shared.unwatched.store(true, Ordering::SeqCst);
    *shared.watches.lock() = None;
    (None, rx)
}

/// Runs the notebook's loop and restarts it (with backoff) if it panics:
/// the panic is logged and shown in `last_error`, and the restarted loop
/// rescans, so nothing pending is lost (it lives in `Shared`).
pub(super) async fn supervise(
    shared: Arc<Shared>,
    owner: OwnerId,
    setup: WatchSetup,
    control_rx: mpsc::UnboundedReceiver<Control>,
    caught_up: oneshot::Sender<()>,
) {
    // Shared with each incarnation of the loop; a panicking one drops its
    // guard (a tokio mutex does not poison), the next one takes it over.
    let control = Arc::new(tokio::sync::Mutex::new(control_rx));
    let mut caught_up = Some(caught_up);
    let mut backoff = Backoff::new();
    loop {
        let task = tokio::spawn(run(
            shared.clone(),
            owner,
            setup.clone(),
            control.clone(),
            caught_up.take(),
        ));
        let panic = match task.await {
            Ok(()) => return,
            Err(join) if join.is_panic() => crate::fault::panic_message(join.into_panic()),
            // Cancelled: the runtime is shutting down.
            Err(_) => return,
        };
        if shared.stopping.load(Ordering::SeqCst) {
            // Its stop request went down with it; the next start catches up.
            tracing::error!(notebook = %shared.name, error = %panic, "notebook loop crashed while stopping");
            return;
        }
        let message =
            format!("internal error: the notebook's loop crashed ({panic}); it was restarted");
        tracing::error!(notebook = %shared.name, error = %message, "notebook loop crashed; restarting it");
        {
            let mut health = shared.health.lock();
            health.state = "error".into();
            health.last_error = Some(message);
        }
        {
            let mut pending = shared.pending.lock();
            pending.rescan = true;
            pending.touch(Instant::now());
        }
        tokio::time::sleep(backoff.step(Duration::from_secs(5))).await;
    }
}

async fn run(
    shared: Arc<Shared>,
    owner: OwnerId,
    setup: WatchSetup,
    control: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Control>>>,
    mut caught_up: Option<oneshot::Sender<()>>,
) {
    let mut control_rx = control.lock().await;
    let (mut watcher, mut watch_rx) = start_watcher(&shared, &setup).await;
    // Restarts of a watcher that died, spaced out.
    let mut watch_backoff = Backoff::new();
    // The first round (catch-up) starts at once.
    let mut round: Option<RoundFuture> = Some(Box::pin(commit_round(
        shared.clone(),
        owner,
        None,
        SyncWork::None,
    )));
    let mut retry_at: Option<Instant> = None;
    let mut backoff = Backoff::new();
    let mut stop_waiter: Option<oneshot::Sender<()>> = None;
    // One budget of lock.timeout for the whole stop: the round in flight and the final flush.
    let mut stop_deadline: Option<Instant> = None;
    let mut sync = SyncSchedule::new(shared.config.sync.as_ref());
    // While folders are unwatched: when to rescan and retry the watches.
    let mut watch_due: Option<Instant> = None;

    loop {
        watch_due = match (shared.unwatched.load(Ordering::SeqCst), watch_due) {
            (false, _) => None,
            (true, None) => Some(Instant::now() + shared.config.max_delay),
            (true, due) => due,
        };
        let due = if round.is_some() {
            None
        } else {
            let commit_due = due_time(&shared, retry_at);
            let sync_due = if shared.paused.load(Ordering::SeqCst) && sync.waiting.is_empty() {
                None
            } else {
                sync.next_due()
            };
            match (commit_due, sync_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        tokio::select! {
            result = async { match round.as_mut() { Some(r) => r.await, None => std::future::pending().await } } => {
                round = None;
                let committed = matches!(&result.commit, Round::Done(o) if o.commit.is_some());
                let commit_failed = matches!(&result.commit, Round::Retry(_) | Round::LockTimeout);
                let commit_error = match &result.commit {
                    Round::Retry(GitError::Busy { state }) => Some(SyncFailure::Conflict(format!("repository is mid-{state}; sync waits until it is resolved"))),
                    Round::Retry(e) => Some(SyncFailure::Failed(e.to_string())),
                    Round::LockTimeout => Some(SyncFailure::Failed("timed out waiting for the notebook lock".into())),
                    _ => None,
                };
                retry_at = settle(&shared, result.commit, &mut backoff);
                if let Some(cfg) = shared.config.sync.as_ref() {
                    match result.sync {
                        Some(done) => settle_sync(&shared, cfg, done, &mut sync),
                        None if commit_failed => {
                            for tx in sync.in_flight.drain(..) {
                                let _ = tx.send(Err(commit_error.clone().unwrap_or_else(|| SyncFailure::Failed("commit failed".into()))));
                            }
                        }
                        None => {}
                    }
                    if committed && cfg.push && sync.push_due.is_none() {
                        sync.push_due = Some(Instant::now() + cfg.push_delay);
                    }
                }
                if let Some(tx) = caught_up.take() {
                    let _ = tx.send(());
                }
                if stop_waiter.is_some() {
                    break;
                }
            }
            event = watch_rx.recv(), if watcher.is_some() => match event {
                Some(event) => {
                    let changed = matches!(event, WatchEvent::Changed { .. });
                    on_watch_event(&shared, event);
                    if changed && shared.health.lock().retry_on_change {
                        retry_at = None;
                    }
                }
                None => {
                    // The pump thread ended on its own: it crashed.
                    let why = watcher.take().and_then(NotebookWatcher::into_crash_reason).unwrap_or_else(|| "it stopped".into());
                    let message = format!("the file watcher stopped unexpectedly ({why}); restarting it");
                    tracing::error!(notebook = %shared.name, error = %message, "file watcher died");
                    shared.health.lock().watch_problem = Some(message);
                    shared.unwatched.store(true, Ordering::SeqCst);
                    *shared.watches.lock() = None;
                    let mut pending = shared.pending.lock();
                    pending.rescan = true;
                    pending.touch(Instant::now());
                    watch_due = Some(Instant::now() + watch_backoff.step(shared.config.max_delay));
                }
            },
            _ = sleep_until_opt(watch_due) => {
                watch_due = None;
                {
                    let mut pending = shared.pending.lock();
                    pending.rescan = true;
                    pending.touch(Instant::now());
                }
                match &watcher {
                    Some(w) => w.retry_watches(),
                    None => (watcher, watch_rx) = start_watcher(&shared, &setup).await,
                }
            }
            message = control_rx.recv() => match message {
                Some(Control::Pause) => {}
                Some(Control::Resume) => retry_at = None,
                Some(Control::Sync(tx)) => sync.waiting.push(tx),
                Some(Control::Stop(tx)) => {
                    stop_waiter = Some(tx);
                    stop_deadline = Some(Instant::now() + shared.lock_timeout);
                    match round.take() {
                        // Let the round in flight finish, bounded by lock.timeout.
                        Some(r) => {
                            let timeout = shared.lock_timeout;
                            round = Some(Box::pin(async move {
                                tokio::time::timeout(timeout, r).await.unwrap_or(RoundResult { commit: Round::LockTimeout, sync: None })
                            }));
                        }
                        None => break,
                    }
                }
                None => break,
            },
            _ = sleep_until_opt(due) => {
                let work = if shared.config.sync.is_some() { sync.take_work(Instant::now()) } else { SyncWork::None };
                round = Some(Box::pin(commit_round(shared.clone(), owner, None, work)));
            }
        }
    }

    // Final flush. The watcher stops first and may drop a batch in hand, and a
    // save made just before the stop may still be on its way: compare the
    // whole work tree with HEAD, as at start. For that check alone wait only
    // briefly for the lock: a client holding it must not delay the exit for
    // nothing.
    if let Some(w) = watcher {
        w.stop();
    }
    drain_watch_events(&shared, &mut watch_rx);
    let known = !shared.pending.lock().is_empty();
    shared.pending.lock().rescan = true;
    let budget = stop_deadline
        .map(|d| d.saturating_duration_since(Instant::now()))
        .unwrap_or(shared.lock_timeout);
    let wait = if known {
        budget
    } else {
        budget.min(Duration::from_secs(1))
    };
    let result = commit_round(shared.clone(), owner, Some(wait), SyncWork::None).await;
    settle(&shared, result.commit, &mut backoff);
    if known && !shared.pending.lock().is_empty() {
        tracing::warn!(notebook = %shared.name, "stopping with uncommitted changes; they are committed at the next start");
    }
    git_lock_manager().forget_owner(owner);
    for tx in sync.waiting.into_iter().chain(sync.in_flight) {
        let _ = tx.send(Err(SyncFailure::Failed("the notebook stopped".into())));
    }
    if let Some(tx) = caught_up {
        let _ = tx.send(());
    }
    if let Some(tx) = stop_waiter {
        let _ = tx.send(());
    }
}

async fn sleep_until_opt(due: Option<Instant>) {
    match due {
        Some(at) => sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn drain_watch_events(shared: &Shared, rx: &mut mpsc::Receiver<WatchEvent>) {
    while let Ok(event) = rx.try_recv() {
        on_watch_event(shared, event);
    }
}

/// When the next round should start, if one is due at all.
fn due_time(shared: &Shared, retry_at: Option<Instant>) -> Option<Instant> {
    if shared.paused.load(Ordering::SeqCst) {
        return None;
    }
    let pending = shared.pending.lock();
    if pending.is_empty() {
        return None;
    }
    if let Some(at) = retry_at {
        return Some(at);
    }
    pending.due(shared.config.debounce, shared.config.max_delay)
}

fn on_watch_event(shared: &Shared, event: WatchEvent) {
    let now = Instant::now();
    match event {
        WatchEvent::Changed { paths, at } => {
            crate::fault::test_panic("loop", &paths);
            shared.pending.lock().changed(paths, at, now);
        }
        WatchEvent::Rescan { reason } => {
            // Once: nothing to show in status after the rescan.
            tracing::warn!(notebook = %shared.name, %reason, "rescanning the notebook");
            let mut pending = shared.pending.lock();
            pending.rescan = true;
            pending.touch(now);
        }
        WatchEvent::Degraded { reason } => {
            {
                let mut health = shared.health.lock();
                if health.watch_problem.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(notebook = %shared.name, %reason, "some folders are not watched; rescanning every max_delay until they are");
                }
                health.watch_problem = Some(reason);
            }
            shared.unwatched.store(true, Ordering::SeqCst);
            let mut pending = shared.pending.lock();
            pending.rescan = true;
            pending.touch(now);
        }
        WatchEvent::Restored => {
            tracing::info!(notebook = %shared.name, "every folder is watched again");
            shared.health.lock().watch_problem = None;
            shared.unwatched.store(false, Ordering::SeqCst);
            // Changes made before the watches came back made no event.
            let mut pending = shared.pending.lock();
            pending.rescan = true;
            pending.touch(now);
        }
        WatchEvent::Error(message) => {
            tracing::warn!(notebook = %shared.name, %message, "watcher problem");
            shared.health.lock().watch_problem = Some(message);
        }
    }
}
