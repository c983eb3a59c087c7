//! One client connection: its requests in order, its lock holds, its
//! `lock.max_hold`, and its event stream once it subscribes.
//!
//! Each connection is one lock owner: its `lock` requests stack guards, any
//! request it sends runs as that owner (so it re-enters its own hold), and
//! closing the connection, for whatever reason, drops every guard it holds.
//! A subscribed connection keeps taking requests (answers and events share
//! the line stream, in order), and `max_hold` keeps applying to it.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::UnixStream;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::answers::Event;
use super::dispatch::{lock_failure, Outcome};
use super::outbox::{outbox, Outbox};
use super::protocol::{
    failure, parse_line, success, to_line, ErrorCode, Failure, Request, MAX_LINE,
};
use super::server::ServerContext;
use crate::lock::{git_lock_manager, LockError, LockGuard, LockMode, OwnerId};
use crate::notebook::{Notebook, NotebookEvent};

/// One line read from a client.
enum Line {
    /// A whole line, newline stripped.
    Request(Vec<u8>),
    /// Over [`MAX_LINE`] without a newline.
    TooLarge,
    /// The client closed its side in the middle of a line.
    Unterminated,
    /// The client closed its side (or reading failed).
    Closed,
}

/// How a connection ends.
enum End {
    /// Write what is queued, then close (the client closed its side, or a
    /// last failure was sent).
    Finish,
    /// Close now, dropping what is queued (max_hold, the client left).
    Abort,
    /// The outbox already decided (too slow, write failed).
    Closing,
}

/// A connection's state: its owner identity and the holds it stacked.
pub(super) struct Connection {
    /// The lock owner this connection is.
    pub(super) owner: OwnerId,
    /// The daemon's shared state.
    pub(super) ctx: Arc<ServerContext>,
    /// Requests come from here.
    pub(super) reader: BufReader<OwnedReadHalf>,
    /// Answers and events go there.
    out: Outbox,
    /// Guards by notebook root; the Vec's length is the depth.
    pub(super) holds: HashMap<PathBuf, Vec<LockGuard>>,
    /// When the current hold started, for `lock.max_hold`.
    holding_since: Option<Instant>,
    /// The event stream, once `subscribe` succeeded.
    subscription: Option<Subscription>,
}

/// Serves one accepted connection until it closes.
pub(super) async fn handle(stream: UnixStream, ctx: Arc<ServerContext>, my_uid: u32) {
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
    let (out, writer) = outbox(writer);
    let mut conn = Connection {
        owner,
        ctx,
        reader: BufReader::new(read),
        out: out.clone(),
        holds: HashMap::new(),
        holding_since: None,
        subscription: None,
    };
    let serve = async move {
        let end = conn.run().await;
        let released = conn.holds.values().map(Vec::len).sum::<usize>();
        if released > 0 {
            tracing::debug!(%owner, levels = released, "connection closed; releasing its locks");
        }
        // The locks go first, then the socket: a client that sees the
        // connection close finds the lock already free.
        drop(conn);
        match end {
            End::Finish => out.finish(),
            End::Abort => out.abort(),
            End::Closing => {}
        }
    };
    tokio::join!(serve, writer.run());
    git_lock_manager().forget_owner(owner);
}

impl Connection {
    async fn run(&mut self) -> End {
        let mut buf = Vec::with_capacity(256);
        loop {
            let deadline = self.hold_deadline();
            let line = tokio::select! {
                line = read_line(&mut self.reader, &mut buf) => line,
                () = sleep_until_opt(deadline) => return self.over_max_hold(""),
                () = self.out.closing() => return End::Closing,
            };
            let bytes = match line {
                Line::Closed => return End::Finish,
                Line::TooLarge => {
                    let f = Failure::new(
                        ErrorCode::TooLarge,
                        format!(
                            "request line longer than {MAX_LINE} bytes; closing the connection"
                        ),
                    );
                    return self
                        .send(failure(&Value::Null, &f))
                        .await
                        .err()
                        .unwrap_or(End::Finish);
                }
                Line::Unterminated => {
                    let f = Failure::new(
                        ErrorCode::BadRequest,
                        "the connection was closed in the middle of a request line \
                         (every request must end with a newline)",
                    );
                    return self
                        .send(failure(&Value::Null, &f))
                        .await
                        .err()
                        .unwrap_or(End::Finish);
                }
                Line::Request(bytes) => bytes,
            };
            let incoming = parse_line(&bytes);
            let id = incoming.id;
            let answer = match incoming.request {
                Err(f) => failure(&id, &f),
                Ok(Request::Subscribe { notebook }) => {
                    match self.prepare_subscription(notebook) {
                        Ok(prepared) => {
                            // The answer goes out before the first event.
                            if let Err(end) = self.send(success(&id, Map::new())).await {
                                return end;
                            }
                            // A second subscribe replaces the first.
                            self.subscription = Some(prepared.start(&self.out));
                            continue;
                        }
                        Err(f) => failure(&id, &f),
                    }
                }
                Ok(request) => match self.dispatch(request).await {
                    Ok(fields) => success(&id, fields),
                    Err(Outcome::Failed(f)) => failure(&id, &f),
                    Err(Outcome::Disconnected) => return End::Abort,
                },
            };
            if self.holds.values().all(Vec::is_empty) {
                self.holding_since = None;
            } else if self.holding_since.is_none() {
                self.holding_since = Some(Instant::now());
            }
            if let Err(end) = self.send(answer).await {
                return end;
            }
        }
    }

    /// When `lock.max_hold` runs out for the current hold, if any.
    fn hold_deadline(&self) -> Option<Instant> {
        let max_hold = self.ctx.lock.read().max_hold;
        self.holding_since.map(|since| since + max_hold)
    }

    fn over_max_hold(&self, doing: &str) -> End {
        let max_hold = self.ctx.lock.read().max_hold;
        tracing::warn!(owner = %self.owner, ?max_hold, "client held a lock longer than lock.max_hold{doing}; disconnecting it and releasing its locks");
        End::Abort
    }

    /// Queues an answer; a client that does not read it stays bounded by max_hold.
    async fn send(&mut self, line: Vec<u8>) -> Result<(), End> {
        let deadline = self.hold_deadline();
        tokio::select! {
            sent = self.out.answer(line) => sent.map_err(|_| End::Closing),
            () = sleep_until_opt(deadline) => Err(self.over_max_hold(" (not reading its answers)")),
        }
    }

    pub(super) fn notebook(&self, arg: &str) -> Result<Arc<Notebook>, Failure> {
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
            let names = self.ctx.registry.names();
            let hint = match super::suggest::closest(arg, &names) {
                Some(name) => format!("did you mean {name:?}? "),
                None => String::new(),
            };
            Failure::new(
                ErrorCode::NotFound,
                format!(
                    "no notebook named or containing {arg:?} ({hint}configured: {})",
                    names.join(", ")
                ),
            )
        })
    }

    pub(super) fn lock_timeout(&self, ms: Option<u64>) -> Duration {
        ms.map(Duration::from_millis)
            .unwrap_or_else(|| self.ctx.lock.read().timeout)
    }

    /// Waits for the lock as this connection, giving up if the client goes away.
    pub(super) async fn acquire(
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
        let out = self.out.clone();
        let closing = out.closing();
        tokio::pin!(closing);
        tokio::select! {
            got = &mut wait => return got.map_err(|e| Outcome::Failed(lock_failure(nb.name(), &e))),
            () = &mut cut => return Err(over(self.owner)),
            () = &mut closing => return Err(Outcome::Disconnected),
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
            () = &mut closing => Err(Outcome::Disconnected),
            () = peer_closed(self.reader.get_ref().as_ref()) => Err(Outcome::Disconnected),
        }
    }

    /// Checks the filter and starts buffering events (nothing is sent yet).
    fn prepare_subscription(&self, notebook: Option<String>) -> Result<Prepared, Failure> {
        let only = notebook.map(|arg| self.notebook(&arg)).transpose()?;
        let notebooks = match &only {
            Some(nb) => vec![nb.clone()],
            None => self.ctx.registry.list(),
        };
        Ok(Prepared {
            commits: self.ctx.events.subscribe(),
            only: only.map(|nb| nb.name().to_string()),
            held: notebooks
                .iter()
                .map(|nb| (nb.name().to_string(), nb.lock().watch_held()))
                .collect(),
        })
    }
}

/// A subscription whose receivers exist (so no event is missed) but whose
/// forwarders have not started (so the answer goes out first).
struct Prepared {
    commits: broadcast::Receiver<NotebookEvent>,
    only: Option<String>,
    held: Vec<(String, watch::Receiver<bool>)>,
}

impl Prepared {
    /// Starts forwarding events into `out`, as [`Outbox::event`] allows.
    fn start(self, out: &Outbox) -> Subscription {
        let mut tasks = Vec::with_capacity(self.held.len() + 1);
        let (mut commits, only) = (self.commits, self.only);
        let commit_out = out.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let event = match commits.recv().await {
                    Ok(event) => {
                        let (notebook, line) = event_json(event);
                        if only.as_ref().is_some_and(|n| *n != notebook) {
                            continue;
                        }
                        line
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        to_value(&Event::Lagged { missed: n })
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if !commit_out.event(to_line(&event)) {
                    return;
                }
            }
        }));
        for (name, mut held) in self.held {
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                while held.changed().await.is_ok() {
                    let now = *held.borrow_and_update();
                    let event = to_value(&Event::Lock {
                        notebook: name.clone(),
                        held: now,
                    });
                    if !out.event(to_line(&event)) {
                        return;
                    }
                }
            }));
        }
        Subscription { tasks }
    }
}

/// A notebook event as its line in the stream, with the notebook's name.
fn event_json(event: NotebookEvent) -> (String, Value) {
    let (name, event) = match event {
        NotebookEvent::Commit {
            notebook,
            commit,
            paths,
        } => (
            notebook.clone(),
            Event::Commit {
                notebook,
                commit,
                paths,
            },
        ),
        NotebookEvent::Error { notebook, message } => (
            notebook.clone(),
            Event::Error {
                notebook: Some(notebook),
                code: None,
                message,
            },
        ),
        NotebookEvent::Sync {
            notebook,
            state,
            message,
        } => (
            notebook.clone(),
            Event::Sync {
                notebook,
                state,
                message,
            },
        ),
    };
    (name, to_value(&event))
}

/// An event as JSON (cannot fail: plain strings, numbers and lists).
fn to_value(event: &Event) -> Value {
    Value::Object(super::answers::to_fields(event))
}

/// A running event stream: its forwarder tasks, stopped when it is dropped.
struct Subscription {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
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
        // closed half-way through a request.
        Ok(_) if buf.len() > MAX_LINE => Line::TooLarge,
        Ok(_) => Line::Unterminated,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
