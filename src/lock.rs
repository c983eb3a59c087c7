//! The one lock per notebook, shared by OS threads, tokio tasks and socket clients.
//!
//! A holder is an [`OwnerId`], not a thread: a socket connection, a watcher
//! task and a plain thread are all owners, so one lock excludes every kind of
//! holder at once (the seed kept separate tables for threads and tasks, and
//! both could "hold" a notebook together). Requests from the current owner
//! re-enter without queueing; everyone else waits in one FIFO queue, and the
//! releasing holder hands the lock directly to the front waiter, so nobody can
//! barge in between. Blocking waiters park on a `Condvar`, async waiters on
//! their own `Notify`; both sit in the same queue.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use tokio::sync::{watch, Notify};

/// Who holds or waits for a lock: a thread, a task's hold, a socket connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerId(u64);

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The owner a thread acts as when nothing is bound: its own identity.
    static THREAD_OWNER: OwnerId = OwnerId::fresh();
    /// The owner bound by [`with_owner`], e.g. an async hold entering `spawn_blocking`.
    static BOUND_OWNER: Cell<Option<OwnerId>> = const { Cell::new(None) };
}

impl OwnerId {
    /// A new owner, distinct from every other in this process.
    pub fn fresh() -> OwnerId {
        OwnerId(NEXT_OWNER.fetch_add(1, Ordering::Relaxed))
    }

    /// The owner this thread acts as: the one bound by [`with_owner`], else
    /// the thread's own identity (which makes plain threads reentrant).
    pub fn current() -> OwnerId {
        BOUND_OWNER
            .with(Cell::get)
            .unwrap_or_else(|| THREAD_OWNER.with(|o| *o))
    }

    /// The numeric id, for logs and status.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "owner#{}", self.0)
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match git_lock_manager().label_of(*self) {
            Some(label) => write!(f, "{label} (owner#{})", self.0),
            None => write!(f, "owner#{}", self.0),
        }
    }
}

/// Runs `f` with [`OwnerId::current`] returning `owner` on this thread.
///
/// This is how code running inside someone's hold (an async task that moved
/// its work into `spawn_blocking`, a request on a connection that holds the
/// lock) lets nested lock calls recognise the hold and re-enter instead of
/// deadlocking on it.
pub fn with_owner<R>(owner: OwnerId, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<OwnerId>);
    impl Drop for Restore {
        fn drop(&mut self) {
            BOUND_OWNER.with(|b| b.set(self.0));
        }
    }
    let previous = BOUND_OWNER.with(|b| b.replace(Some(owner)));
    let _restore = Restore(previous);
    f()
}

/// How a lock is held.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LockMode {
    /// Many shared holders run together (reads, snapshots).
    Shared,
    /// One holder excludes everyone (commits, a client's `git pull`).
    Exclusive,
}

impl LockMode {
    /// The protocol's name for the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Shared => "shared",
            LockMode::Exclusive => "exclusive",
        }
    }
}

/// A wait as a person reads it: whole milliseconds under a second
/// ("200 ms"), seconds with at most one decimal under a minute ("5 s",
/// "1.5 s"), then minutes and seconds ("2 min 5 s"). Debug output of a
/// `Duration` ("201.415086ms") is noise in an error message.
pub fn human_wait(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        return format!("{ms} ms");
    }
    let tenths = (ms + 50) / 100;
    if tenths < 600 {
        return if tenths.is_multiple_of(10) {
            format!("{} s", tenths / 10)
        } else {
            format!("{}.{} s", tenths / 10, tenths % 10)
        };
    }
    let secs = (ms + 500) / 1_000;
    match (secs / 60, secs % 60) {
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

/// Why a lock request did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LockError {
    /// The wait reached its deadline; the request left the queue.
    #[error(
        "lock wait on {notebook} timed out after {} (held by {holders}; {queued} queued); \
         wait longer (`gitlockd lock --timeout`, or lock.timeout in the config) \
         or let the holder finish",
        human_wait(*waited)
    )]
    Timeout {
        /// The notebook's path.
        notebook: PathBuf,
        /// How long the request waited.
        waited: Duration,
        /// Who held the lock at the deadline.
        holders: String,
        /// Waiters still queued.
        queued: usize,
    },
    /// `try_lock` found the lock taken.
    #[error("lock on {notebook} is held by {holders}")]
    WouldBlock {
        /// The notebook's path.
        notebook: PathBuf,
        /// Who holds the lock.
        holders: String,
    },
    /// A shared holder asked for exclusive while others share it: waiting
    /// could deadlock with another upgrading reader, so it is refused.
    #[error("cannot upgrade a shared hold on {notebook} to exclusive while others hold it")]
    UpgradeWouldDeadlock {
        /// The notebook's path.
        notebook: PathBuf,
    },
}

/// Counters of one notebook's lock, shown by `status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LockMetrics {
    /// Holds taken (reentrant levels not counted).
    pub acquisitions: u64,
    /// Holds that had to wait in the queue.
    pub contended: u64,
    /// Waits that ended in a timeout.
    pub timeouts: u64,
    /// Time spent waiting, summed over all holds.
    pub total_wait: Duration,
    /// The longest single wait.
    pub max_wait: Duration,
    /// Time held, summed over all completed holds.
    pub total_hold: Duration,
    /// The longest completed hold.
    pub max_hold: Duration,
}

/// One holder as `status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HolderInfo {
    /// The holder.
    pub owner: OwnerId,
    /// What the holder is ("client pid 42", "auto-commit"), when it said.
    pub label: Option<String>,
    /// Exclusive when any of its levels is exclusive.
    pub mode: LockMode,
    /// Its reentrancy depth.
    pub depth: u32,
    /// How long it has held the lock.
    pub held_for: Duration,
}

/// A consistent picture of one lock, taken without waiting for it.
#[derive(Debug, Clone, PartialEq)]
pub struct LockSnapshot {
    /// Whether anyone holds the lock.
    pub held: bool,
    /// The mode it is held in.
    pub mode: Option<LockMode>,
    /// Everyone holding it.
    pub holders: Vec<HolderInfo>,
    /// Requests queued behind them.
    pub waiters: usize,
    /// Counters since the daemon started.
    pub metrics: LockMetrics,
}

/// One process-wide table of notebook locks, keyed by canonical path.
pub struct GitLockManager {
    /// Locks by canonical notebook path; never removed, so a lock outlives reloads.
    locks: Mutex<HashMap<PathBuf, Arc<NotebookLock>>>,
    /// Human labels of owners, for status and error messages.
    labels: Mutex<HashMap<OwnerId, String>>,
}

/// The process's lock manager.
pub fn git_lock_manager() -> &'static GitLockManager {
    static MANAGER: OnceLock<GitLockManager> = OnceLock::new();
    MANAGER.get_or_init(|| GitLockManager {
        locks: Mutex::new(HashMap::new()),
        labels: Mutex::new(HashMap::new()),
    })
}

impl GitLockManager {
    /// The lock of the notebook at `path`; two spellings of one folder
    /// (symlinks, `..`) resolve to the same lock.
    pub fn lock_for(&self, path: &Path) -> std::io::Result<Arc<NotebookLock>> {
        Ok(self.lock_for_canonical(path.canonicalize()?))
    }

    /// The lock for a path the caller already canonicalized.
    pub fn lock_for_canonical(&self, path: PathBuf) -> Arc<NotebookLock> {
        self.locks
            .lock()
            .entry(path.clone())
            .or_insert_with(|| Arc::new(NotebookLock::new(path)))
            .clone()
    }

    /// Names an owner for status and logs ("client pid 42").
    pub fn label_owner(&self, owner: OwnerId, label: impl Into<String>) {
        self.labels.lock().insert(owner, label.into());
    }

    /// Forgets an owner's label once it is gone.
    pub fn forget_owner(&self, owner: OwnerId) {
        self.labels.lock().remove(&owner);
    }

    /// The label given to `owner`, if any.
    pub fn label_of(&self, owner: OwnerId) -> Option<String> {
        self.labels.lock().get(&owner).cloned()
    }
}

/// A notebook's lock. Cheap to share (`Arc`); see the module docs.
pub struct NotebookLock {
    /// State and wake-up machinery, shared with guards.
    inner: Arc<Inner>,
}

struct Inner {
    /// The notebook's canonical path, for logs and errors.
    path: PathBuf,
    /// Holders, queue and counters; held for microseconds only.
    state: Mutex<State>,
    /// Where blocking waiters park.
    parked: Condvar,
    /// Set once somebody subscribes to held/free transitions.
    held_tx: OnceLock<watch::Sender<bool>>,
}

#[derive(Default)]
struct State {
    /// Current holders (a handful at most, so a Vec beats a map).
    holders: Vec<Holder>,
    /// Waiters in arrival order.
    queue: VecDeque<Waiter>,
    /// Tickets handed the lock whose waiter has not woken up yet.
    granted: Vec<u64>,
    /// Next waiter ticket.
    next_ticket: u64,
    /// Counters for status.
    metrics: LockMetrics,
}

struct Holder {
    owner: OwnerId,
    /// All levels held.
    depth: u32,
    /// Levels taken in exclusive mode; the hold is exclusive while > 0.
    exclusive_depth: u32,
    since: Tick,
}

/// A cheap monotonic timestamp for hold times (`CLOCK_MONOTONIC_COARSE`,
/// resolution one kernel tick, 1–4 ms). The uncontended lock + unlock reads
/// the clock twice; `Instant::now()` costs ~50 ns on a VM's TSC clock, which
/// alone broke the 100 ns target, while the coarse clock costs ~15 ns. Hold
/// times are shown in status in milliseconds, so a tick's resolution is
/// enough; waits (the slow path) keep `Instant`'s precision.
#[derive(Clone, Copy)]
struct Tick(Duration);

impl Tick {
    fn now() -> Tick {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC_COARSE;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec. On failure (never for
        // these clocks) it stays zero and hold times read as zero-based.
        unsafe { libc::clock_gettime(CLOCK, &mut ts) };
        Tick(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }

    fn elapsed(self) -> Duration {
        Tick::now().0.saturating_sub(self.0)
    }
}

struct Waiter {
    ticket: u64,
    owner: OwnerId,
    mode: LockMode,
    enqueued: Instant,
    /// `None` for a blocking waiter (woken through the Condvar).
    notify: Option<Arc<Notify>>,
}

/// What an immediate attempt found.
enum Attempt {
    /// Granted; `true` when this started a new hold (not a reentrant level).
    Granted { counted_exclusive: bool },
    /// The caller must queue.
    MustWait,
}

impl State {
    fn is_exclusive(&self) -> bool {
        self.holders.iter().any(|h| h.exclusive_depth > 0)
    }

    fn mode(&self) -> Option<LockMode> {
        match (self.holders.is_empty(), self.is_exclusive()) {
            (true, _) => None,
            (false, true) => Some(LockMode::Exclusive),
            (false, false) => Some(LockMode::Shared),
        }
    }

    fn compatible(&self, mode: LockMode) -> bool {
        match mode {
            LockMode::Exclusive => self.holders.is_empty(),
            LockMode::Shared => !self.is_exclusive(),
        }
    }

    fn holders_text(&self) -> String {
        if self.holders.is_empty() {
            return "nobody".to_string();
        }
        self.holders
            .iter()
            .map(|h| h.owner.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn try_acquire(
        &mut self,
        path: &Path,
        owner: OwnerId,
        mode: LockMode,
    ) -> Result<Attempt, LockError> {
        let sole_holder = self.holders.len() == 1;
        if let Some(h) = self.holders.iter_mut().find(|h| h.owner == owner) {
            // Reentrant: never queue behind others, or the holder deadlocks on itself.
            return match mode {
                LockMode::Shared => {
                    h.depth += 1;
                    Ok(Attempt::Granted {
                        counted_exclusive: false,
                    })
                }
                LockMode::Exclusive if h.exclusive_depth > 0 || sole_holder => {
                    h.depth += 1;
                    h.exclusive_depth += 1;
                    Ok(Attempt::Granted {
                        counted_exclusive: true,
                    })
                }
                LockMode::Exclusive => Err(LockError::UpgradeWouldDeadlock {
                    notebook: path.to_path_buf(),
                }),
            };
        }
        // Joining only behind an empty queue keeps readers from starving a queued writer.
        if self.queue.is_empty() && self.compatible(mode) {
            self.holders.push(Holder {
                owner,
                depth: 1,
                exclusive_depth: u32::from(mode == LockMode::Exclusive),
                since: Tick::now(),
            });
            self.metrics.acquisitions += 1;
            return Ok(Attempt::Granted {
                counted_exclusive: mode == LockMode::Exclusive,
            });
        }
        Ok(Attempt::MustWait)
    }

    fn enqueue(&mut self, owner: OwnerId, mode: LockMode, notify: Option<Arc<Notify>>) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.queue.push_back(Waiter {
            ticket,
            owner,
            mode,
            enqueued: Instant::now(),
            notify,
        });
        ticket
    }

    /// Takes a grant addressed to `ticket`, if one is waiting.
    fn take_grant(&mut self, ticket: u64) -> bool {
        match self.granted.iter().position(|t| *t == ticket) {
            Some(i) => {
                self.granted.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Removes a waiter that gives up; true when it was still queued.
    fn withdraw(&mut self, ticket: u64) -> bool {
        match self.queue.iter().position(|w| w.ticket == ticket) {
            Some(i) => {
                self.queue.remove(i);
                true
            }
            None => false,
        }
    }

    /// Hands the lock to the front of the queue while it fits: one writer, or
    /// a run of consecutive readers. Returns whether blocking waiters must wake.
    fn hand_off(&mut self) -> bool {
        let mut wake_threads = false;
        while let Some(front) = self.queue.front() {
            if !self.compatible(front.mode) {
                break;
            }
            let Some(w) = self.queue.pop_front() else {
                break;
            };
            let now = Instant::now();
            let waited = now.saturating_duration_since(w.enqueued);
            self.metrics.acquisitions += 1;
            self.metrics.total_wait += waited;
            self.metrics.max_wait = self.metrics.max_wait.max(waited);
            self.holders.push(Holder {
                owner: w.owner,
                depth: 1,
                exclusive_depth: u32::from(w.mode == LockMode::Exclusive),
                since: Tick::now(),
            });
            self.granted.push(w.ticket);
            match &w.notify {
                Some(n) => n.notify_one(),
                None => wake_threads = true,
            }
            if w.mode == LockMode::Exclusive {
                break;
            }
        }
        wake_threads
    }

    /// Releases one level of `owner`; true when its hold ended.
    fn release(&mut self, owner: OwnerId, counted_exclusive: bool) -> bool {
        let Some(i) = self.holders.iter().position(|h| h.owner == owner) else {
            return false;
        };
        let h = &mut self.holders[i];
        h.depth = h.depth.saturating_sub(1);
        if counted_exclusive {
            h.exclusive_depth = h.exclusive_depth.saturating_sub(1);
        }
        if h.depth > 0 {
            return false;
        }
        let held = h.since.elapsed();
        self.holders.swap_remove(i);
        self.metrics.total_hold += held;
        self.metrics.max_hold = self.metrics.max_hold.max(held);
        true
    }
}

impl NotebookLock {
    /// A lock for the notebook at the canonical `path`. Prefer
    /// [`GitLockManager::lock_for`], which makes it the process's one lock.
    pub fn new(path: PathBuf) -> NotebookLock {
        NotebookLock {
            inner: Arc::new(Inner {
                path,
                state: Mutex::new(State::default()),
                parked: Condvar::new(),
                held_tx: OnceLock::new(),
            }),
        }
    }

    /// The notebook's canonical path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Takes the lock on this thread, waiting up to `timeout` (`None`: forever).
    /// Reentrant for `owner`. Never call it on a tokio worker thread.
    pub fn lock_blocking(
        &self,
        owner: OwnerId,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<LockGuard, LockError> {
        let inner = &self.inner;
        tracing::debug!(notebook = %inner.path.display(), %owner, mode = mode.as_str(), "lock acquiring");
        let mut st = inner.state.lock();
        let was_free = st.holders.is_empty();
        if let Attempt::Granted { counted_exclusive } = st.try_acquire(&inner.path, owner, mode)? {
            drop(st);
            return Ok(self.granted(owner, mode, counted_exclusive, was_free));
        }
        let ticket = st.enqueue(owner, mode, None);
        st.metrics.contended += 1;
        let started = Instant::now();
        let deadline = timeout.and_then(|t| started.checked_add(t));
        loop {
            if st.take_grant(ticket) {
                drop(st);
                return Ok(self.granted(owner, mode, mode == LockMode::Exclusive, false));
            }
            match deadline {
                None => inner.parked.wait(&mut st),
                Some(d) => {
                    // On a timeout a grant may still have arrived: the loop's top takes it.
                    if inner.parked.wait_until(&mut st, d).timed_out()
                        && !st.granted.contains(&ticket)
                    {
                        return Err(self.give_up(st, ticket, started));
                    }
                }
            }
        }
    }

    /// Takes the lock from async code, waiting up to `timeout` (`None`:
    /// forever), in the same FIFO queue as blocking waiters. Cancel-safe: a
    /// future dropped while queued leaves the queue, and one dropped after the
    /// lock was handed to it passes the lock on.
    pub async fn lock_async(
        &self,
        owner: OwnerId,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<LockGuard, LockError> {
        let inner = &self.inner;
        tracing::debug!(notebook = %inner.path.display(), %owner, mode = mode.as_str(), "lock acquiring");
        let notify = Arc::new(Notify::new());
        let ticket = {
            let mut st = inner.state.lock();
            let was_free = st.holders.is_empty();
            if let Attempt::Granted { counted_exclusive } =
                st.try_acquire(&inner.path, owner, mode)?
            {
                drop(st);
                return Ok(self.granted(owner, mode, counted_exclusive, was_free));
            }
            st.metrics.contended += 1;
            st.enqueue(owner, mode, Some(notify.clone()))
        };
        let started = Instant::now();
        let mut pending = PendingTicket {
            inner: inner.clone(),
            ticket,
            owner,
            mode,
            armed: true,
        };
        let wait_for_grant = async {
            loop {
                notify.notified().await;
                if inner.state.lock().take_grant(ticket) {
                    return;
                }
            }
        };
        let got = match timeout {
            None => {
                wait_for_grant.await;
                true
            }
            Some(t) => tokio::time::timeout(t, wait_for_grant).await.is_ok(),
        };
        pending.armed = false;
        if got {
            return Ok(self.granted(owner, mode, mode == LockMode::Exclusive, false));
        }
        let mut st = inner.state.lock();
        if st.take_grant(ticket) {
            drop(st);
            return Ok(self.granted(owner, mode, mode == LockMode::Exclusive, false));
        }
        Err(self.give_up(st, ticket, started))
    }

    /// Takes the lock only if that needs no wait.
    pub fn try_lock(&self, owner: OwnerId, mode: LockMode) -> Result<LockGuard, LockError> {
        let mut st = self.inner.state.lock();
        let was_free = st.holders.is_empty();
        match st.try_acquire(&self.inner.path, owner, mode)? {
            Attempt::Granted { counted_exclusive } => {
                drop(st);
                Ok(self.granted(owner, mode, counted_exclusive, was_free))
            }
            Attempt::MustWait => Err(LockError::WouldBlock {
                notebook: self.inner.path.clone(),
                holders: st.holders_text(),
            }),
        }
    }

    /// Who holds and waits now, and the counters; never waits for the lock.
    pub fn snapshot(&self) -> LockSnapshot {
        let st = self.inner.state.lock();
        let manager = git_lock_manager();
        let holders = st
            .holders
            .iter()
            .map(|h| HolderInfo {
                owner: h.owner,
                label: None,
                mode: if h.exclusive_depth > 0 {
                    LockMode::Exclusive
                } else {
                    LockMode::Shared
                },
                depth: h.depth,
                held_for: h.since.elapsed(),
            })
            .collect::<Vec<_>>();
        let snapshot = LockSnapshot {
            held: !st.holders.is_empty(),
            mode: st.mode(),
            holders,
            waiters: st.queue.len(),
            metrics: st.metrics.clone(),
        };
        drop(st);
        // Labels are looked up outside the state mutex: never nest the two.
        let mut snapshot = snapshot;
        for h in &mut snapshot.holders {
            h.label = manager.label_of(h.owner);
        }
        snapshot
    }

    /// A receiver that sees `true` while the lock is held and `false` when it
    /// is free (for `subscribe` lock events).
    pub fn watch_held(&self) -> watch::Receiver<bool> {
        let held = !self.inner.state.lock().holders.is_empty();
        self.inner
            .held_tx
            .get_or_init(|| watch::Sender::new(held))
            .subscribe()
    }

    fn granted(
        &self,
        owner: OwnerId,
        mode: LockMode,
        counted_exclusive: bool,
        was_free: bool,
    ) -> LockGuard {
        tracing::debug!(notebook = %self.inner.path.display(), %owner, mode = mode.as_str(), "lock acquired");
        if was_free {
            self.inner.publish_held(true);
        }
        LockGuard {
            inner: self.inner.clone(),
            owner,
            mode,
            counted_exclusive,
        }
    }

    fn give_up(&self, mut st: MutexGuard<'_, State>, ticket: u64, started: Instant) -> LockError {
        st.withdraw(ticket);
        st.metrics.timeouts += 1;
        // A waiter leaving the front can unblock the ones behind it.
        let wake = st.hand_off();
        let err = LockError::Timeout {
            notebook: self.inner.path.clone(),
            waited: started.elapsed(),
            holders: st.holders_text(),
            queued: st.queue.len(),
        };
        drop(st);
        if wake {
            self.inner.parked.notify_all();
        }
        err
    }
}

impl Inner {
    fn publish_held(&self, held: bool) {
        if let Some(tx) = self.held_tx.get() {
            tx.send_if_modified(|v| std::mem::replace(v, held) != held);
        }
    }

    fn release(&self, owner: OwnerId, counted_exclusive: bool) {
        let mut st = self.state.lock();
        let ended = st.release(owner, counted_exclusive);
        let wake = st.hand_off();
        let now_free = st.holders.is_empty();
        drop(st);
        if wake {
            self.parked.notify_all();
        }
        if ended {
            tracing::debug!(notebook = %self.path.display(), %owner, "lock released");
            if now_free {
                self.publish_held(false);
            }
        }
    }
}

/// One level of a hold. Dropping it releases that level; the last level
/// hands the lock to the next waiter. `Send + 'static`, so it can move into
/// `spawn_blocking` or live in a connection's state.
pub struct LockGuard {
    inner: Arc<Inner>,
    owner: OwnerId,
    mode: LockMode,
    /// Whether this level counts toward the exclusive depth.
    counted_exclusive: bool,
}

impl LockGuard {
    /// The holder this level belongs to.
    pub fn owner(&self) -> OwnerId {
        self.owner
    }

    /// The mode this level was asked for.
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// The notebook's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("notebook", &self.inner.path)
            .field("owner", &self.owner)
            .field("mode", &self.mode)
            .finish()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.inner.release(self.owner, self.counted_exclusive);
    }
}

/// Cleans up after an async wait that was dropped before it finished.
struct PendingTicket {
    inner: Arc<Inner>,
    ticket: u64,
    owner: OwnerId,
    mode: LockMode,
    armed: bool,
}

impl Drop for PendingTicket {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut st = self.inner.state.lock();
        if st.take_grant(self.ticket) {
            // Handed to us while we were being dropped: pass it on.
            drop(st);
            self.inner
                .release(self.owner, self.mode == LockMode::Exclusive);
        } else {
            st.withdraw(self.ticket);
            let wake = st.hand_off();
            drop(st);
            if wake {
                self.inner.parked.notify_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lock() -> NotebookLock {
        NotebookLock::new(PathBuf::from("/nb"))
    }

    #[test]
    fn reentrant_levels_release_one_at_a_time() {
        let l = lock();
        let me = OwnerId::fresh();
        let a = l.lock_blocking(me, LockMode::Exclusive, None).unwrap();
        let b = l.lock_blocking(me, LockMode::Exclusive, None).unwrap();
        let c = l.lock_blocking(me, LockMode::Shared, None).unwrap();
        assert_eq!(l.snapshot().holders[0].depth, 3);
        let other = OwnerId::fresh();
        assert!(l.try_lock(other, LockMode::Shared).is_err());
        drop(c);
        drop(b);
        assert!(l.try_lock(other, LockMode::Shared).is_err());
        drop(a);
        assert!(l.try_lock(other, LockMode::Shared).is_ok());
    }

    #[test]
    fn upgrade_is_allowed_only_for_the_sole_holder() {
        let l = lock();
        let (a, b) = (OwnerId::fresh(), OwnerId::fresh());
        let ga = l.lock_blocking(a, LockMode::Shared, None).unwrap();
        let up = l.lock_blocking(a, LockMode::Exclusive, None).unwrap();
        assert_eq!(l.snapshot().mode, Some(LockMode::Exclusive));
        drop(up);
        assert_eq!(l.snapshot().mode, Some(LockMode::Shared));
        let gb = l.lock_blocking(b, LockMode::Shared, None).unwrap();
        assert!(matches!(
            l.lock_blocking(a, LockMode::Exclusive, None),
            Err(LockError::UpgradeWouldDeadlock { .. })
        ));
        drop((ga, gb));
        assert!(!l.snapshot().held);
    }

    #[test]
    fn timeout_leaves_no_waiter_and_counts() {
        let l = lock();
        let _held = l
            .lock_blocking(OwnerId::fresh(), LockMode::Exclusive, None)
            .unwrap();
        let err = l
            .lock_blocking(
                OwnerId::fresh(),
                LockMode::Exclusive,
                Some(Duration::from_millis(30)),
            )
            .unwrap_err();
        assert!(matches!(err, LockError::Timeout { .. }), "{err}");
        let text = err.to_string();
        // Whole milliseconds, not Debug's "30.412345ms".
        let waited = text
            .split("timed out after ")
            .nth(1)
            .and_then(|rest| rest.split(" ms (held by").next())
            .and_then(|n| n.parse::<u64>().ok());
        assert!(waited.is_some_and(|n| n >= 30), "{text}");
        assert!(text.contains("--timeout"), "{text}");
        let snap = l.snapshot();
        assert_eq!(snap.waiters, 0);
        assert_eq!(snap.metrics.timeouts, 1);
    }

    #[test]
    fn human_wait_reads_like_a_person_wrote_it() {
        let ms = Duration::from_millis;
        assert_eq!(human_wait(Duration::from_micros(201_415)), "201 ms");
        assert_eq!(human_wait(ms(0)), "0 ms");
        assert_eq!(human_wait(ms(999)), "999 ms");
        assert_eq!(human_wait(ms(1_000)), "1 s");
        assert_eq!(human_wait(ms(5_003)), "5 s");
        assert_eq!(human_wait(ms(1_500)), "1.5 s");
        assert_eq!(human_wait(ms(59_940)), "59.9 s");
        assert_eq!(human_wait(ms(59_960)), "1 min");
        assert_eq!(human_wait(ms(125_000)), "2 min 5 s");
    }

    #[test]
    fn with_owner_binds_and_restores() {
        let outer = OwnerId::current();
        let bound = OwnerId::fresh();
        with_owner(bound, || {
            assert_eq!(OwnerId::current(), bound);
            let inner = OwnerId::fresh();
            with_owner(inner, || assert_eq!(OwnerId::current(), inner));
            assert_eq!(OwnerId::current(), bound);
        });
        assert_eq!(OwnerId::current(), outer);
    }

    #[test]
    fn writer_is_not_starved_by_a_stream_of_readers() {
        let l = Arc::new(lock());
        let r1 = l
            .lock_blocking(OwnerId::fresh(), LockMode::Shared, None)
            .unwrap();
        let l2 = l.clone();
        let writer = std::thread::spawn(move || {
            l2.lock_blocking(OwnerId::fresh(), LockMode::Exclusive, None)
                .map(|_| ())
        });
        // Wait until the writer is queued (bounded poll, not a sleep for sync).
        let deadline = Instant::now() + Duration::from_secs(5);
        while l.snapshot().waiters == 0 {
            assert!(Instant::now() < deadline, "writer never queued");
            std::thread::yield_now();
        }
        // A new reader must not overtake the queued writer.
        assert!(l.try_lock(OwnerId::fresh(), LockMode::Shared).is_err());
        drop(r1);
        writer.join().unwrap().unwrap();
    }
}
