//! The sync timer: when the next fetch/integrate/push or push-only round is
//! due, who waits for it, and how its outcome is recorded (with backoff).

use std::time::{Duration, Instant, SystemTime};

use super::schedule::Backoff;
use super::{NotebookEvent, Shared, SyncFailure, SyncReply};
use crate::config::SyncConfig;
use crate::sync::{self as remote_sync, PushOutcome, SyncError, SyncOutcome};

/// Network work a round does after committing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SyncWork {
    None,
    /// Push local commits only.
    Push,
    /// Fetch, integrate, push.
    Full,
}

/// What a round's sync part did.
pub(super) enum SyncDone {
    Full(SyncOutcome),
    Push(PushOutcome),
}

/// Timers and waiters of the sync schedule.
pub(super) struct SyncSchedule {
    /// Next fetch + integrate + push.
    pub(super) pull_due: Option<Instant>,
    /// Next push of fresh local commits.
    pub(super) push_due: Option<Instant>,
    /// `sync` requests waiting for the next round.
    pub(super) waiting: Vec<SyncReply>,
    /// Requests answered by the round in flight.
    pub(super) in_flight: Vec<SyncReply>,
    pub(super) backoff: Backoff,
}

impl SyncSchedule {
    pub(super) fn new(cfg: Option<&SyncConfig>) -> SyncSchedule {
        // The first pull comes right after the catch-up commit.
        let pull_due = cfg
            .filter(|c| !c.pull_interval.is_zero())
            .map(|_| Instant::now() + Duration::from_millis(200));
        SyncSchedule {
            pull_due,
            push_due: None,
            waiting: Vec::new(),
            in_flight: Vec::new(),
            backoff: Backoff::new(),
        }
    }

    pub(super) fn next_due(&self) -> Option<Instant> {
        if !self.waiting.is_empty() {
            return Some(Instant::now());
        }
        match (self.pull_due, self.push_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Decides the sync part of a round starting now.
    pub(super) fn take_work(&mut self, now: Instant) -> SyncWork {
        if !self.waiting.is_empty() || self.pull_due.is_some_and(|t| t <= now) {
            self.in_flight.append(&mut self.waiting);
            SyncWork::Full
        } else if self.push_due.is_some_and(|t| t <= now) {
            SyncWork::Push
        } else {
            SyncWork::None
        }
    }
}

/// Records a sync's outcome in status and schedules the next one; a new
/// divergence or a new sync error is announced to subscribers.
pub(super) fn settle_sync(
    shared: &Shared,
    cfg: &SyncConfig,
    done: Result<SyncDone, SyncError>,
    schedule: &mut SyncSchedule,
) {
    let snapshot = |shared: &Shared| {
        shared.sync_health.lock().as_ref().map(|h| {
            (
                h.state.clone(),
                h.last_error.clone(),
                h.diverged_ref.clone(),
            )
        })
    };
    let before = snapshot(shared);
    settle_sync_state(shared, cfg, done, schedule);
    let Some((state, error, diverged_ref)) = snapshot(shared) else {
        return;
    };
    let message = match state.as_str() {
        "diverged" if before.as_ref().map(|b| b.0.as_str()) != Some("diverged") => format!(
            "local and remote history diverged; the remote side is kept at {}",
            diverged_ref
                .as_deref()
                .unwrap_or("refs/gitlockd/diverged/...")
        ),
        "error" if before.as_ref().and_then(|b| b.1.as_ref()) != error.as_ref() => {
            error.unwrap_or_default()
        }
        _ => return,
    };
    let _ = shared.events.send(NotebookEvent::Sync {
        notebook: shared.name.clone(),
        state,
        message,
    });
}

/// [`settle_sync`] without the event.
fn settle_sync_state(
    shared: &Shared,
    cfg: &SyncConfig,
    done: Result<SyncDone, SyncError>,
    schedule: &mut SyncSchedule,
) {
    let now = Instant::now();
    let mut guard = shared.sync_health.lock();
    let Some(health) = guard.as_mut() else {
        return;
    };
    match done {
        Ok(SyncDone::Full(outcome)) => {
            schedule.backoff.reset();
            let diverged = outcome.integrated == remote_sync::Integration::Diverged;
            if diverged && health.state != "diverged" {
                tracing::warn!(notebook = %shared.name, remote_ref = ?outcome.diverged_ref, "local and remote history diverged with conflicting changes; nothing in the work tree was touched. Merge the remote side by hand (under `gitlockd lock`) to resolve it");
            } else if !diverged {
                tracing::info!(notebook = %shared.name, integrated = outcome.integrated.as_str(), pushed = outcome.pushed, ahead = outcome.ahead, behind = outcome.behind, "synced");
            }
            health.state = if diverged { "diverged" } else { "ok" }.into();
            health.ahead = outcome.ahead;
            health.behind = outcome.behind;
            health.last_sync = Some(SystemTime::now());
            health.last_error = None;
            health.diverged_ref = outcome.diverged_ref.clone();
            schedule.push_due = None;
            schedule.pull_due = (!cfg.pull_interval.is_zero()).then(|| now + cfg.pull_interval);
            health.next_try = schedule.pull_due.map(|t| SystemTime::now() + (t - now));
            for tx in schedule.in_flight.drain(..) {
                let _ = tx.send(Ok(outcome.clone()));
            }
        }
        Ok(SyncDone::Push(p)) => {
            schedule.backoff.reset();
            health.ahead = p.ahead;
            health.behind = p.behind;
            if p.pushed {
                health.last_sync = Some(SystemTime::now());
                health.last_error = None;
                if health.state == "error" {
                    health.state = "ok".into();
                }
            }
            schedule.push_due = None;
            if p.behind > 0 {
                // The remote moved: integrate it (and push then) at once.
                schedule.pull_due = Some(now);
            }
        }
        Err(error) => {
            let message = error.to_string();
            if health.last_error.as_deref() != Some(message.as_str()) {
                tracing::warn!(notebook = %shared.name, error = %message, "sync failed; local commits continue, retrying with backoff");
            }
            health.state = "error".into();
            health.last_error = Some(message.clone());
            let wait = schedule.backoff.step(Duration::from_secs(300));
            schedule.push_due = None;
            schedule.pull_due = Some(now + wait);
            health.next_try = Some(SystemTime::now() + wait);
            let failure = match error {
                SyncError::Busy { .. } => SyncFailure::Conflict(message),
                _ => SyncFailure::Failed(message),
            };
            for tx in schedule.in_flight.drain(..) {
                let _ = tx.send(Err(failure.clone()));
            }
        }
    }
}
