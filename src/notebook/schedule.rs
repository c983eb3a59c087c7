//! A notebook's pending changes and when to commit them: pure, so that the
//! timing rules (quiet period from the last *event*, `max_delay` from the
//! first) are table-tested without a clock or a watcher.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Changes seen but not committed yet.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub(crate) paths: BTreeSet<PathBuf>,
    /// The event stream lost something: compare the whole work tree with HEAD.
    pub(crate) rescan: bool,
    /// When the oldest pending change happened: `max_delay` runs from here.
    pub(crate) first_at: Option<Instant>,
    /// When the latest pending change happened: `debounce` runs from here.
    pub(crate) last_at: Option<Instant>,
}

impl Pending {
    pub(crate) fn is_empty(&self) -> bool {
        self.paths.is_empty() && !self.rescan
    }

    /// Notes a change seen at `at`; times may arrive out of order (an
    /// event's receipt time is older than a rescan request's), so keep the
    /// earliest first and the latest last.
    pub(crate) fn touch(&mut self, at: Instant) {
        self.first_at = Some(self.first_at.map_or(at, |t| t.min(at)));
        self.last_at = Some(self.last_at.map_or(at, |t| t.max(at)));
    }

    /// Paths from the watcher whose last event came at `at`, delivered at
    /// `now`. The quiet period runs from `at`, not from the delivery (which
    /// the watcher's batching window delays by up to 100 ms); a time from
    /// the future (clock skew between threads cannot make one, but a bug
    /// could) counts as `now`.
    pub(crate) fn changed(&mut self, paths: Vec<PathBuf>, at: Instant, now: Instant) {
        self.paths.extend(paths);
        self.touch(at.min(now));
    }

    /// When the next commit round is due: `debounce` after the last change
    /// or `max_delay` after the first, whichever comes first; `None` when
    /// nothing is pending.
    pub(crate) fn due(&self, debounce: Duration, max_delay: Duration) -> Option<Instant> {
        if self.is_empty() {
            return None;
        }
        let quiet = self.last_at.map(|t| t + debounce);
        let latest = self.first_at.map(|t| t + max_delay);
        match (quiet, latest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b).or(Some(Instant::now())),
        }
    }

    /// Takes the pending paths for a commit, dropping those under another
    /// pending path (see [`covering`]).
    pub(crate) fn take_paths(&mut self) -> Vec<PathBuf> {
        covering(std::mem::take(&mut self.paths))
    }
}

/// The paths of `paths` not below another one of them. Staging a directory
/// brings everything under it in line with the work tree (new, changed and
/// deleted files alike), and so does staging a path that is now a file or is
/// gone; staging its files again would read and hash each one twice (a new
/// folder of 2,000 files is reported as the folder and as each file in it).
/// The empty path (the whole tree) covers everything.
pub(crate) fn covering(paths: BTreeSet<PathBuf>) -> Vec<PathBuf> {
    let mut kept: Vec<PathBuf> = Vec::with_capacity(paths.len());
    // Paths order by component, so a path's descendants follow it
    // contiguously: comparing with the last kept path is enough.
    for path in paths {
        let below = kept
            .last()
            .is_some_and(|top: &PathBuf| is_below(&path, top));
        if !below {
            kept.push(path);
        }
    }
    kept
}

fn is_below(path: &Path, top: &Path) -> bool {
    top.as_os_str().is_empty() || (path != top && path.starts_with(top))
}

/// Backoff for retries: doubles from 100 ms up to a cap, with jitter so
/// gitlockd and another process do not retry in lockstep.
pub(super) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);

    pub(super) fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    pub(super) fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    pub(super) fn step(&mut self, cap: Duration) -> Duration {
        let base = self.next.min(cap);
        self.next = (self.next * 2).min(cap);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // Up to +25 % jitter.
        base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DEBOUNCE: Duration = Duration::from_millis(500);
    const MAX_DELAY: Duration = Duration::from_secs(10);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_quiet_period_runs_from_the_last_event_not_from_delivery() {
        let t0 = Instant::now();
        // (batches as (event time, delivery time) offsets in ms, expected due offset)
        let table: &[(&[(u64, u64)], u64)] = &[
            // One save, delivered at the end of a 100 ms window.
            (&[(0, 100)], 500),
            // Two batches: the later event counts, whenever it arrives.
            (&[(0, 100), (150, 250)], 650),
            // A batch delivered late (a busy notebook queue) after a newer one:
            // the latest event still sets the quiet period.
            (&[(300, 400), (50, 900)], 800),
            // An event time later than its delivery is clamped to the delivery.
            (&[(200, 120)], 620),
            // A file written all the time: max_delay from the first event bounds it.
            (&[(0, 100), (9_700, 9_800)], 10_000),
        ];
        for (batches, want) in table {
            let mut pending = Pending::default();
            for (at, delivered) in batches.iter() {
                pending.changed(vec!["a.md".into()], t0 + ms(*at), t0 + ms(*delivered));
            }
            assert_eq!(
                pending.due(DEBOUNCE, MAX_DELAY),
                Some(t0 + ms(*want)),
                "{batches:?}"
            );
        }
    }

    #[test]
    fn nothing_pending_is_never_due_and_a_rescan_alone_is() {
        let mut pending = Pending::default();
        assert_eq!(pending.due(DEBOUNCE, MAX_DELAY), None);
        let t0 = Instant::now();
        pending.rescan = true;
        pending.touch(t0);
        assert_eq!(pending.due(DEBOUNCE, MAX_DELAY), Some(t0 + DEBOUNCE));
    }

    #[test]
    fn a_recheck_keeps_max_delay_from_the_first_change() {
        // A file still being written is pending again after a round: touched
        // now, with the batch's first time put back (as commit_round does).
        let t0 = Instant::now();
        let mut pending = Pending::default();
        pending.paths.insert("growing.log".into());
        pending.touch(t0 + ms(9_800));
        pending.first_at = pending.first_at.map(|t| t.min(t0));
        assert_eq!(pending.due(DEBOUNCE, MAX_DELAY), Some(t0 + MAX_DELAY));
    }

    #[test]
    fn covering_drops_paths_under_another_pending_path() {
        let set = |v: &[&str]| v.iter().map(PathBuf::from).collect::<BTreeSet<_>>();
        let table: &[(&[&str], &[&str])] = &[
            (
                &["burst", "burst/a.md", "burst/sub/b.md", "burst.md", "c.md"],
                &["burst", "burst.md", "c.md"],
            ),
            // A sibling whose name extends the folder's is not below it.
            (&["a", "a-b/x", "a/b", "ab"], &["a", "a-b/x", "ab"]),
            (&["d/e/f", "d/e", "d/g"], &["d/e", "d/g"]),
            (&["", "x", "y/z"], &[""]),
            (&["only.md"], &["only.md"]),
            (&[], &[]),
        ];
        for (input, want) in table {
            let got = covering(set(input));
            let want: Vec<PathBuf> = want.iter().map(PathBuf::from).collect();
            assert_eq!(got, want, "{input:?}");
        }
    }
}
