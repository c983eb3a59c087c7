//! A connection's outgoing lines: answers and events, bounded in bytes.
//!
//! One writer per connection keeps lines whole and in order while answers
//! and `subscribe` events come from different tasks. The fast path writes a
//! line straight to the socket when nothing is queued (one syscall, no task
//! wake-up); only what the kernel does not take waits here.
//!
//! The policy, stated in the README's protocol section:
//! - answers: when [`ANSWER_BUDGET`] bytes of answers wait unread, the
//!   connection stops reading requests until the client reads (back-pressure;
//!   one larger answer alone is let through);
//! - events: when [`EVENT_BUDGET`] bytes of events wait unread, the subscriber
//!   is too slow: it gets a `too_slow` error event (best effort, within
//!   [`GRACE`]) and the connection is closed, releasing its locks.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;

use super::answers::Event;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{watch, Notify};

use super::protocol::to_line;

/// Bytes of answers that may wait unread before requests stop being read.
pub const ANSWER_BUDGET: usize = 1 << 20;
/// Bytes of events that may wait unread before the subscriber is dropped.
pub const EVENT_BUDGET: usize = 1 << 20;
/// How long a too-slow subscriber gets to take its last line and the error event.
pub const GRACE: Duration = Duration::from_secs(1);

/// Where the connection's output stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Lines are accepted.
    Open,
    /// The connection ends: write what is queued, then stop.
    Finish,
    /// The connection ends now: drop what is queued.
    Abort,
    /// A subscriber fell behind: its last line and the error event, then stop.
    TooSlow,
    /// Writing failed: the client is gone.
    Gone,
}

/// Whether a line is an answer or an event, for the budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Answer,
    Event,
    /// The final `too_slow` line, counted in no budget.
    Last,
}

/// A queued line and how much of it is already written.
struct Pending {
    line: Vec<u8>,
    written: usize,
    kind: Kind,
}

struct Queue {
    lines: VecDeque<Pending>,
    answer_bytes: usize,
    event_bytes: usize,
    state: State,
}

struct Shared {
    stream: OwnedWriteHalf,
    queue: Mutex<Queue>,
    /// Wakes the writer task: a line was queued or the state changed.
    wake: Notify,
    /// Wakes answers waiting for budget.
    space: Notify,
    /// Turns true once the connection must end (abort, too slow, gone).
    closing: watch::Sender<bool>,
}

/// The connection closed while a line was being sent.
#[derive(Debug)]
pub struct Closed;

/// A handle for sending lines; cheap to clone into event forwarders.
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// The task that writes what the fast path could not.
pub struct Writer {
    shared: Arc<Shared>,
}

/// An outbox over `stream` and the writer that drains it (run [`Writer::run`]).
pub fn outbox(stream: OwnedWriteHalf) -> (Outbox, Writer) {
    let shared = Arc::new(Shared {
        stream,
        queue: Mutex::new(Queue {
            lines: VecDeque::new(),
            answer_bytes: 0,
            event_bytes: 0,
            state: State::Open,
        }),
        wake: Notify::new(),
        space: Notify::new(),
        closing: watch::channel(false).0,
    });
    (
        Outbox {
            shared: shared.clone(),
        },
        Writer { shared },
    )
}

impl Outbox {
    /// Queues an answer, waiting while [`ANSWER_BUDGET`] is used up.
    pub async fn answer(&self, line: Vec<u8>) -> Result<(), Closed> {
        let shared = &self.shared;
        loop {
            // Created before the check: it sees every notify_waiters() from
            // here on, with no registration cost on the fast path.
            let space = shared.space.notified();
            {
                let mut q = shared.queue.lock();
                if q.state != State::Open {
                    return Err(Closed);
                }
                if q.answer_bytes == 0 || q.answer_bytes + line.len() <= ANSWER_BUDGET {
                    shared.push(&mut q, line, Kind::Answer);
                    return Ok(());
                }
            }
            space.await;
        }
    }

    /// Queues an event; a subscriber over [`EVENT_BUDGET`] is dropped as too
    /// slow. `false` once the connection is closing.
    pub fn event(&self, line: Vec<u8>) -> bool {
        let shared = &self.shared;
        let mut q = shared.queue.lock();
        if q.state != State::Open {
            return false;
        }
        if q.event_bytes > 0 && q.event_bytes + line.len() > EVENT_BUDGET {
            let unread = q.event_bytes;
            // Keep only a line already begun, so the stream stays whole
            // lines; it no longer counts in a budget (both are reset).
            let begun = q
                .lines
                .pop_front()
                .filter(|p| p.written > 0)
                .map(|p| Pending {
                    kind: Kind::Last,
                    ..p
                });
            q.lines.clear();
            q.answer_bytes = 0;
            q.event_bytes = 0;
            q.lines.extend(begun);
            q.lines.push_back(Pending {
                line: to_line(&Value::Object(super::answers::to_fields(&Event::Error {
                    notebook: None,
                    code: Some("too_slow".into()),
                    message: format!(
                        "this subscriber left more than {unread} bytes of events unread \
                         (limit {EVENT_BUDGET}); closing the connection (its locks are released)"
                    ),
                }))),
                written: 0,
                kind: Kind::Last,
            });
            q.state = State::TooSlow;
            drop(q);
            shared.notify_state(true);
            tracing::warn!(
                unread,
                "a subscriber reads its events too slowly; sent it too_slow and closing its connection"
            );
            return false;
        }
        shared.push(&mut q, line, Kind::Event);
        true
    }

    /// Resolves once the connection must end (aborted, too slow, client gone).
    pub async fn closing(&self) {
        let mut rx = self.shared.closing.subscribe();
        let _ = rx.wait_for(|closing| *closing).await;
    }

    /// Ends the connection after what is queued has been written.
    pub fn finish(&self) {
        self.shared.set_state_if_open(State::Finish);
    }

    /// Ends the connection now, dropping what is queued.
    pub fn abort(&self) {
        self.shared.set_state_if_open(State::Abort);
    }
}

impl Shared {
    /// Writes `line` at once when nothing waits before it, else queues it.
    fn push(&self, q: &mut Queue, line: Vec<u8>, kind: Kind) {
        let mut written = 0;
        if q.lines.is_empty() {
            match write_some(&self.stream, &line) {
                Ok(n) if n == line.len() => return,
                Ok(n) => written = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    q.state = State::Gone;
                    self.notify_state(true);
                    return;
                }
            }
        }
        match kind {
            Kind::Answer => q.answer_bytes += line.len(),
            Kind::Event => q.event_bytes += line.len(),
            Kind::Last => {}
        }
        q.lines.push_back(Pending {
            line,
            written,
            kind,
        });
        self.wake.notify_one();
    }

    fn set_state_if_open(&self, state: State) {
        let mut q = self.queue.lock();
        if q.state == State::Open {
            q.state = state;
            drop(q);
            self.notify_state(state != State::Finish);
        }
    }

    /// Wakes everyone after a state change; `closing` when the connection must end.
    fn notify_state(&self, closing: bool) {
        self.wake.notify_one();
        self.space.notify_waiters();
        if closing {
            self.closing.send_replace(true);
        }
    }

    /// Writes queued lines until the socket is full or the queue is empty.
    fn drain(&self) -> Step {
        let mut q = self.queue.lock();
        loop {
            if matches!(q.state, State::Abort | State::Gone) {
                return Step::Done;
            }
            let Some(front) = q.lines.front_mut() else {
                return match q.state {
                    State::Open => Step::Idle,
                    _ => Step::Done,
                };
            };
            match write_some(&self.stream, &front.line[front.written..]) {
                Ok(n) => {
                    front.written += n;
                    if front.written == front.line.len() {
                        let (len, kind) = (front.line.len(), front.kind);
                        q.lines.pop_front();
                        match kind {
                            Kind::Answer => q.answer_bytes -= len,
                            Kind::Event => q.event_bytes -= len,
                            Kind::Last => {}
                        }
                        self.space.notify_waiters();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Blocked,
                Err(_) => {
                    q.state = State::Gone;
                    q.lines.clear();
                    drop(q);
                    self.notify_state(true);
                    return Step::Done;
                }
            }
        }
    }
}

/// What the writer does next.
enum Step {
    /// Nothing queued: wait for a line.
    Idle,
    /// The socket is full: wait until it is writable.
    Blocked,
    /// Stop.
    Done,
}

fn write_some(stream: &OwnedWriteHalf, bytes: &[u8]) -> io::Result<usize> {
    match stream.try_write(bytes) {
        Ok(0) if !bytes.is_empty() => Err(io::ErrorKind::WriteZero.into()),
        other => other,
    }
}

impl Writer {
    /// Writes queued lines until the connection ends, then shuts the socket down.
    pub async fn run(self) {
        let shared = &self.shared;
        let mut closing = shared.closing.subscribe();
        let mut grace: Option<tokio::time::Instant> = None;
        loop {
            let wake = shared.wake.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            let step = shared.drain();
            if grace.is_none() && shared.queue.lock().state == State::TooSlow {
                grace = Some(tokio::time::Instant::now() + GRACE);
            }
            let out_of_time = async {
                match grace {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            match step {
                Step::Done => break,
                Step::Idle => tokio::select! {
                    () = &mut wake => {}
                    () = out_of_time => break,
                },
                Step::Blocked => tokio::select! {
                    ready = shared.stream.writable() => if ready.is_err() { break },
                    () = &mut wake => {}
                    _ = closing.changed() => {}
                    () = out_of_time => break,
                },
            }
        }
        // SAFETY: shutdown(2) on the connection's own fd, alive while `shared` is.
        unsafe {
            libc::shutdown(
                AsRef::<tokio::net::UnixStream>::as_ref(&shared.stream).as_raw_fd(),
                libc::SHUT_RDWR,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;
    use tokio::io::AsyncReadExt;
    use tokio::net::UnixStream;

    /// Whether `fut` completes on its first poll.
    async fn ready_now<F: std::future::Future>(fut: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            out = fut => Some(out),
            () = std::future::ready(()) => None,
        }
    }

    fn line(kind: &str, size: usize) -> Vec<u8> {
        to_line(&json!({ "event": kind, "pad": "x".repeat(size) }))
    }

    #[tokio::test]
    async fn answers_wait_for_the_budget_then_flow_in_order() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let (_read, write) = ours.into_split();
        let (out, writer) = outbox(write);
        let writer = tokio::spawn(writer.run());
        // A client that does not read: answers fill the kernel buffer, then
        // the budget, then the next one waits.
        let mut sent = 0usize;
        let mut n = 0;
        loop {
            let answer = line(&format!("a{n}"), 16 * 1024);
            match ready_now(out.answer(answer.clone())).await {
                Some(result) => {
                    result.unwrap();
                    sent += answer.len();
                    n += 1;
                }
                None => break,
            }
            assert!(sent < 16 * ANSWER_BUDGET, "answers were never held back");
        }
        assert!(sent > ANSWER_BUDGET, "the budget was used ({sent} bytes)");
        // Reading lets everything through, whole lines in order.
        let last = tokio::spawn({
            let out = out.clone();
            async move { out.answer(line("last", 10)).await }
        });
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while !(got.ends_with(b"\n") && String::from_utf8_lossy(&got).contains("\"last\"")) {
            let k = tokio::time::timeout(Duration::from_secs(10), peer.read(&mut buf))
                .await
                .expect("answers flow once the client reads")
                .unwrap();
            assert!(k > 0, "closed early");
            got.extend_from_slice(&buf[..k]);
        }
        last.await.unwrap().unwrap();
        let text = String::from_utf8(got).unwrap();
        let kinds: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].to_string())
            .collect();
        assert_eq!(kinds.len(), n + 1);
        for (i, k) in kinds.iter().take(n).enumerate() {
            assert_eq!(k, &format!("\"a{i}\""));
        }
        out.finish();
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_subscriber_over_the_event_budget_gets_too_slow_and_eof() {
        // Small events, and events so large that one is cut off half-written.
        for size in [200, 300_000] {
            too_slow_with(size).await;
        }
    }

    async fn too_slow_with(size: usize) {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let (_read, write) = ours.into_split();
        let (out, writer) = outbox(write);
        let writer = tokio::spawn(writer.run());
        let mut pushed = 0usize;
        while out.event(line("lock", size)) {
            pushed += 1;
            assert!(pushed < 1_000_000, "never found too slow");
        }
        assert!(
            pushed * size > EVENT_BUDGET / 2,
            "dropped early after {pushed}"
        );
        ready_now(out.closing()).await.expect("closing at once");
        // Answers are refused from now on.
        assert!(out.answer(line("late", 1)).await.is_err());
        // A reader that shows up in time gets whole lines, too_slow last, then EOF.
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), peer.read_to_end(&mut got))
            .await
            .expect("EOF within 10 s")
            .unwrap();
        writer.await.unwrap();
        let text = String::from_utf8(got).unwrap();
        let last = text.lines().last().unwrap();
        let last: serde_json::Value = serde_json::from_str(last).unwrap();
        assert_eq!(last["code"], json!("too_slow"), "{last}");
        for l in text.lines() {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
    }
}
