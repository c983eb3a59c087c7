//! The connection to the daemon: numbered requests, one answer line each, and
//! what each failure means as an exit code.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::args::NotebookArg;
use crate::control::protocol::ErrorBody;
use crate::control::trust::{self, TrustError};

/// Exit status: success.
pub const EXIT_OK: i32 = 0;
/// Exit status: a runtime error (message on stderr).
pub const EXIT_ERROR: i32 = 1;
/// Exit status: bad usage.
pub const EXIT_USAGE: i32 = 2;
/// Exit status: the daemon is not reachable (sysexits EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: i32 = 69;
/// Exit status: a lock wait timed out (sysexits EX_TEMPFAIL).
pub const EXIT_TIMEOUT: i32 = 75;
/// Exit status: CMD could not be found (as a shell does).
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit status: CMD was found but could not be executed (as a shell does).
pub const EXIT_CANNOT_EXEC: i32 = 126;

/// What went wrong in a client command.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be connected (missing, refused, permission...).
    #[error("cannot connect to gitlockd at {}: {source}", path.display())]
    Unreachable {
        /// The socket path that was tried.
        path: PathBuf,
        /// Why connecting failed.
        source: io::Error,
    },
    /// The socket's folder could be tampered with by another user.
    #[error("refusing to use the socket {}: {source}", path.display())]
    UnsafeDir {
        /// The socket path.
        path: PathBuf,
        /// What is wrong with its folder.
        source: TrustError,
    },
    /// The process answering on the socket runs as another user.
    #[error(
        "refusing to talk to {}: the process answering there runs as uid {uid}, not as you \
         (uid {me}); another user may have planted it to fake the daemon's answers \
         (stop it or remove the socket, and start your own gitlockd)",
        path.display()
    )]
    UntrustedServer {
        /// The socket path.
        path: PathBuf,
        /// The server's uid (SO_PEERCRED).
        uid: u32,
        /// Ours.
        me: u32,
    },
    /// The daemon refused a new config (`reload`): exit 2, as for any invalid config.
    #[error("{0}")]
    InvalidConfig(String),
    /// The daemon closed the connection before answering.
    #[error("gitlockd at {} closed the connection before answering", path.display())]
    Closed {
        /// The socket path.
        path: PathBuf,
    },
    /// The daemon answered with an error.
    #[error("{message} ({code})")]
    Daemon {
        /// The protocol error code (`not_found`, `timeout`, ...).
        code: String,
        /// The daemon's explanation, for a person.
        message: String,
    },
    /// Reading from or writing to the socket failed.
    #[error("talking to gitlockd at {}: {source}", path.display())]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The daemon's answer did not follow the protocol.
    #[error("unexpected answer from gitlockd: {0}")]
    Protocol(String),
    /// An argument cannot be sent (e.g. a path that is not UTF-8).
    #[error("{0}")]
    Usage(String),
    /// Writing the result to stdout failed.
    #[error("writing output: {0}")]
    Output(#[source] io::Error),
}

impl ClientError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Unreachable { .. } | ClientError::Closed { .. } => EXIT_UNAVAILABLE,
            ClientError::Daemon { code, .. } => exit_code_for(code),
            ClientError::Usage(_) | ClientError::InvalidConfig(_) => EXIT_USAGE,
            ClientError::Io { .. }
            | ClientError::Protocol(_)
            | ClientError::Output(_)
            | ClientError::UnsafeDir { .. }
            | ClientError::UntrustedServer { .. } => EXIT_ERROR,
        }
    }

    /// A hint telling the user how to fix this error, if there is one.
    pub(super) fn hint(&self) -> Option<String> {
        match self {
            ClientError::Unreachable { .. } | ClientError::Closed { .. } => Some(
                "is the daemon running? start it with `systemctl --user start gitlockd`, \
                 or run `gitlockd --config FILE` in another terminal \
                 (--socket PATH or GITLOCKD_SOCKET choose another socket)"
                    .to_string(),
            ),
            _ => None,
        }
    }
}

/// The exit code for a daemon error code: `timeout` is 75, everything else 1.
pub fn exit_code_for(code: &str) -> i32 {
    match code {
        "timeout" => EXIT_TIMEOUT,
        _ => EXIT_ERROR,
    }
}

/// One connection to the daemon: numbered requests, one answer line each.
pub(super) struct Conn {
    /// The socket path, for messages.
    path: PathBuf,
    /// Buffered reader over the stream.
    pub(super) reader: BufReader<UnixStream>,
    /// The same stream, for writing requests.
    pub(super) writer: UnixStream,
    /// The id of the next request.
    pub(super) next_id: u64,
}

impl Conn {
    /// Connect to the daemon's socket, after checking that no other user can
    /// have put it there and that the process answering runs as us (or root).
    pub(super) fn connect(path: &Path) -> Result<Conn, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            path: path.to_path_buf(),
            source,
        };
        match trust::check_dir(trust::socket_dir(path)) {
            Ok(()) => {}
            // No folder, no daemon: connecting below says so (exit 69).
            Err(TrustError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ClientError::UnsafeDir {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        let stream = UnixStream::connect(path).map_err(unreachable)?;
        let uid = trust::peer_uid(&stream).map_err(unreachable)?;
        if !trust::trusted_server(uid) {
            return Err(ClientError::UntrustedServer {
                path: path.to_path_buf(),
                uid,
                me: trust::my_uid(),
            });
        }
        let writer = stream.try_clone().map_err(unreachable)?;
        Ok(Conn {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
        })
    }

    /// An I/O error on this connection, as a [`ClientError`].
    fn io_error(&self, source: io::Error) -> ClientError {
        match source.kind() {
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof => ClientError::Closed {
                path: self.path.clone(),
            },
            _ => ClientError::Io {
                path: self.path.clone(),
                source,
            },
        }
    }

    /// Send `cmd` with `args`; returns its id.
    fn send(&mut self, cmd: &str, mut args: Map<String, Value>) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        args.insert("id".into(), json!(id));
        args.insert("cmd".into(), json!(cmd));
        let mut line = Value::Object(args).to_string();
        line.push('\n');
        if let Err(e) = self.writer.write_all(line.as_bytes()) {
            return Err(self.write_error(e));
        }
        Ok(id)
    }

    /// A failed write: the daemon may have refused the connection with a last
    /// line before closing it (`forbidden` for another uid); report that line.
    fn write_error(&mut self, source: io::Error) -> ClientError {
        let _ = self
            .reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(1)));
        let mut line = String::new();
        if matches!(self.reader.read_line(&mut line), Ok(n) if n > 0) {
            if let Err(e @ ClientError::Daemon { .. }) = parse_response(&line, 0) {
                return e;
            }
        }
        self.io_error(source)
    }

    /// Read the answer to request `id`, waiting at most `timeout` (forever if `None`).
    fn receive(
        &mut self,
        id: u64,
        timeout: Option<Duration>,
    ) -> Result<Map<String, Value>, ClientError> {
        self.reader
            .get_ref()
            .set_read_timeout(timeout)
            .map_err(|e| self.io_error(e))?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(ClientError::Closed {
                path: self.path.clone(),
            }),
            Ok(_) => parse_response(&line, id),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(ClientError::Io {
                    path: self.path.clone(),
                    source: io::Error::new(
                        e.kind(),
                        format!(
                            "no answer within {}",
                            humantime::format_duration(timeout.unwrap_or_default())
                        ),
                    ),
                })
            }
            Err(e) => Err(self.io_error(e)),
        }
    }

    /// The next line the daemon sends (an event), waiting as long as it
    /// takes; `None` when the daemon closed the connection.
    pub(super) fn next_line(&mut self) -> Result<Option<String>, ClientError> {
        self.reader
            .get_ref()
            .set_read_timeout(None)
            .map_err(|e| self.io_error(e))?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(line)),
            Err(e) => Err(self.io_error(e)),
        }
    }

    /// Send a request and wait for its answer.
    pub(super) fn request(
        &mut self,
        cmd: &str,
        args: Map<String, Value>,
        timeout: Option<Duration>,
    ) -> Result<Map<String, Value>, ClientError> {
        let id = self.send(cmd, args)?;
        self.receive(id, timeout)
    }

    /// Send a request naming a notebook; after `not_found` on a name that is also a path, retry with the path.
    pub(super) fn request_nb(
        &mut self,
        cmd: &str,
        nb: &NotebookArg,
        args: Map<String, Value>,
        timeout: Option<Duration>,
    ) -> Result<Map<String, Value>, ClientError> {
        self.request_nb_as(cmd, nb, args, timeout)
            .map(|(answer, _)| answer)
    }

    /// [`Conn::request_nb`], also returning the `notebook` value the daemon accepted.
    pub(super) fn request_nb_as(
        &mut self,
        cmd: &str,
        nb: &NotebookArg,
        args: Map<String, Value>,
        timeout: Option<Duration>,
    ) -> Result<(Map<String, Value>, String), ClientError> {
        let with_nb = |name: &str| {
            let mut args = args.clone();
            args.insert("notebook".into(), json!(name));
            args
        };
        match (self.request(cmd, with_nb(nb.first()), timeout), nb.retry()) {
            (Err(ClientError::Daemon { code, .. }), Some(path)) if code == "not_found" => self
                .request(cmd, with_nb(path), timeout)
                .map(|answer| (answer, path.to_string())),
            (result, _) => result.map(|answer| (answer, nb.first().to_string())),
        }
    }
}

/// Parse one answer line to request `id`: the result fields, or the daemon's error.
pub fn parse_response(line: &str, id: u64) -> Result<Map<String, Value>, ClientError> {
    let value: Value = serde_json::from_str(line.trim_end())
        .map_err(|e| ClientError::Protocol(format!("not JSON ({e}): {}", line.trim_end())))?;
    let Value::Object(map) = value else {
        return Err(ClientError::Protocol(format!(
            "not an object: {}",
            line.trim_end()
        )));
    };
    // A failure with a null id answers no request in particular: the daemon
    // refused the connection (`forbidden`) or the line (`too_large`).
    let unattributed_failure = matches!(map.get("id"), None | Some(Value::Null))
        && map.get("ok") == Some(&Value::Bool(false));
    if map.get("id") != Some(&json!(id)) && !unattributed_failure {
        return Err(ClientError::Protocol(format!(
            "answer to request {id} has id {}",
            map.get("id").unwrap_or(&Value::Null)
        )));
    }
    match map.get("ok") {
        Some(Value::Bool(true)) => Ok(map),
        Some(Value::Bool(false)) => {
            // The same type the daemon writes; a daemon that sends less
            // still gets its refusal through.
            let error: ErrorBody = map
                .get("error")
                .cloned()
                .and_then(|e| serde_json::from_value(e).ok())
                .unwrap_or(ErrorBody {
                    code: String::new(),
                    message: String::new(),
                });
            Err(ClientError::Daemon {
                code: if error.code.is_empty() {
                    "internal".into()
                } else {
                    error.code
                },
                message: if error.message.is_empty() {
                    "the daemon gave no reason".into()
                } else {
                    error.message
                },
            })
        }
        _ => Err(ClientError::Protocol(format!(
            "no `ok` field: {}",
            line.trim_end()
        ))),
    }
}
