//! Inotify limits: the `GITLOCKD_WATCH_LIMIT` knob, refused watches and
//! lost events turned into rescans, and messages that name the sysctl to raise.

use std::fs;
use std::path::Path;

use super::pump::Pump;
use super::{WatchError, WatchEvent};

impl Pump {
    /// Why a watch on `dir` was refused, naming `GITLOCKD_WATCH_LIMIT` when
    /// that refused it rather than the kernel.
    pub(super) fn limit_reason(&self, dir: &Path, err: &notify::Error) -> String {
        match self.watch_limit {
            Some(n) if self.watched.len() >= n => format!(
                "GITLOCKD_WATCH_LIMIT={n} (a test and diagnostic setting) refused a watch \
                 on {}; until it is lifted, changes in unwatched directories are found \
                 by rescans",
                dir.display()
            ),
            _ => refusal_reason(dir, err),
        }
    }
}

/// `GITLOCKD_WATCH_LIMIT`: a cap on the watches each notebook adds, refused
/// beyond it exactly like the kernel's `max_user_watches` would. For tests
/// and diagnostics: it makes the limit path reproducible without sysctl.
pub(super) fn watch_limit() -> Option<usize> {
    std::env::var("GITLOCKD_WATCH_LIMIT")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Maps errors notify reports from its inotify thread to what the notebook must do.
/// Anything that may have lost events asks for a rescan.
pub(super) fn errors_to_events(errors: &[notify::Error]) -> Vec<WatchEvent> {
    let mut events: Vec<WatchEvent> = Vec::new();
    for err in errors {
        let event = match &err.kind {
            notify::ErrorKind::MaxFilesWatch => {
                let dir = err.paths.first().map_or_else(
                    || "a new directory".to_string(),
                    |p| p.display().to_string(),
                );
                WatchEvent::Rescan {
                    reason: max_watches_reason(&dir, read_proc_limit("max_user_watches")),
                }
            }
            // A failed read of the inotify descriptor loses whatever it held.
            notify::ErrorKind::Io(_) | notify::ErrorKind::Generic(_) => WatchEvent::Rescan {
                reason: format!("the file watcher failed, events may be lost: {err}"),
            },
            // Removing the watch of a folder that is already gone (the
            // kernel dropped it with the folder): expected, nothing is lost.
            notify::ErrorKind::WatchNotFound => {
                tracing::debug!(error = %err, "watch already gone");
                continue;
            }
            notify::ErrorKind::PathNotFound | notify::ErrorKind::InvalidConfig(_) => {
                WatchEvent::Error(format!("file watcher: {err}"))
            }
        };
        if !events.contains(&event) {
            events.push(event);
        }
    }
    events
}

/// Why nothing is watched after the notebook folder went away.
pub(super) fn root_gone_reason(root: &Path) -> String {
    format!(
        "the notebook folder {} was moved or deleted; it is watched again once it is back",
        root.display()
    )
}

/// The reason for a refused watch on `dir`: the limit and its fix when it is the limit.
pub(super) fn refusal_reason(dir: &Path, err: &notify::Error) -> String {
    match err.kind {
        notify::ErrorKind::MaxFilesWatch => max_watches_reason(
            &dir.display().to_string(),
            read_proc_limit("max_user_watches"),
        ),
        _ => format!("the kernel refused a watch on {}: {err}", dir.display()),
    }
}

/// The user-facing explanation of `fs.inotify.max_user_watches` being reached.
pub(super) fn max_watches_reason(dir: &str, limit: Option<u64>) -> String {
    format!(
        "the kernel refused a watch on {dir}: inotify max_user_watches is {} \
         (read /proc/sys/fs/inotify/max_user_watches; the limit is per user and shared \
         with other programs); raise it with `sysctl fs.inotify.max_user_watches={}`; \
         until then changes in unwatched directories are found only by rescans",
        limit.map_or_else(|| "unknown".to_string(), |n| n.to_string()),
        suggest(limit, 524_288),
    )
}

/// The user-facing explanation of an inotify queue overflow.
pub(super) fn overflow_reason(limit: Option<u64>) -> String {
    format!(
        "event queue overflow: the kernel dropped file events (fs.inotify.max_queued_events is {}); \
         too many changes at once",
        limit.map_or_else(|| "unknown".to_string(), |n| n.to_string()),
    )
}

/// Maps an inotify_init failure to a start error, naming the instance limit when that is it.
pub(super) fn init_error(root: &Path, source: notify::Error) -> WatchError {
    let emfile = matches!(&source.kind, notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::EMFILE));
    if emfile {
        let limit = read_proc_limit("max_user_instances");
        WatchError::TooManyInstances {
            path: root.to_path_buf(),
            limit: limit.map_or_else(|| "unknown".to_string(), |n| n.to_string()),
            suggested: suggest(limit, 512),
        }
    } else {
        WatchError::Notify {
            path: root.to_path_buf(),
            source,
        }
    }
}

/// A value worth raising a limit to: at least `floor`, and at least double the current one.
pub(super) fn suggest(current: Option<u64>, floor: u64) -> u64 {
    current.map_or(floor, |n| floor.max(n.saturating_mul(2)))
}

/// Reads `/proc/sys/fs/inotify/<name>`.
pub(super) fn read_proc_limit(name: &str) -> Option<u64> {
    fs::read_to_string(Path::new("/proc/sys/fs/inotify").join(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}
