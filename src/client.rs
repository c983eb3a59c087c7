//! The CLI client: turns a parsed [`Cli`] into requests on the control socket and
//! prints the answers.
//!
//! Blocking std I/O on purpose: the client sends one request at a time and
//! waits for its answer, so an async runtime would buy nothing.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Component, Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::cli::{Cli, Command};

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

/// How long to wait for the answer to a request other than `lock`. Generous,
/// because `commit`, `log` & co. may themselves wait for the notebook's lock
/// and `sync` talks to a remote.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// How long to wait for the answer to the final `unlock` of `lock -- CMD`.
const UNLOCK_TIMEOUT: Duration = Duration::from_secs(5);

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
            ClientError::Usage(_) => EXIT_USAGE,
            ClientError::Io { .. } | ClientError::Protocol(_) | ClientError::Output(_) => {
                EXIT_ERROR
            }
        }
    }

    /// A hint telling the user how to fix this error, if there is one.
    fn hint(&self) -> Option<String> {
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

/// Run a client subcommand against the daemon on `socket`; returns the process exit code.
///
/// `check-config`, `completions`, `man` and the daemon itself are main's, not the client's.
pub fn run(cli: &Cli, socket: &Path) -> i32 {
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(e) => {
            eprintln!("gitlockd: error: cannot read the current directory: {e}");
            return EXIT_ERROR;
        }
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut err = io::stderr();
    run_with_io(cli, socket, &cwd, &mut out, &mut err)
}

/// [`run`] with an explicit current directory, stdout and stderr (CMD of `lock` still inherits the real ones).
pub fn run_with_io(
    cli: &Cli,
    socket: &Path,
    cwd: &Path,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let result = dispatch(cli, socket, cwd, out, err).and_then(|code| {
        out.flush().map_err(ClientError::Output)?;
        Ok(code)
    });
    match result {
        Ok(code) => code,
        // Like ripgrep: a reader that went away (`gitlockd log | head`) is not an error.
        Err(ClientError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => {
            report(err, &e);
            e.exit_code()
        }
    }
}

/// Print `e` (and its hint) on `err`.
fn report(err: &mut dyn Write, e: &ClientError) {
    // Nothing sensible is left to do if stderr itself fails.
    let _ = writeln!(err, "gitlockd: error: {e}");
    if let Some(hint) = e.hint() {
        let _ = writeln!(err, "gitlockd: {hint}");
    }
}

/// Run one subcommand; `Ok` carries the exit code.
fn dispatch(
    cli: &Cli,
    socket: &Path,
    cwd: &Path,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, ClientError> {
    let Some(command) = &cli.command else {
        return Err(ClientError::Usage(
            "no subcommand: running the daemon is not the client's job".into(),
        ));
    };
    match command {
        Command::CheckConfig | Command::Completions { .. } | Command::Man => Err(
            ClientError::Usage("this subcommand does not talk to the daemon".into()),
        ),
        Command::Status { json, notebook } => {
            let mut conn = Conn::connect(socket)?;
            let resp = match notebook {
                Some(nb) => {
                    let nb = NotebookArg::classify(nb, cwd)?;
                    conn.request_nb("status", &nb, Map::new(), Some(ANSWER_TIMEOUT))?
                }
                None => conn.request("status", Map::new(), Some(ANSWER_TIMEOUT))?,
            };
            if *json {
                print_json(out, &Value::Object(resp))?;
            } else {
                write_out(out, format_status(&resp).as_bytes())?;
            }
            Ok(EXIT_OK)
        }
        Command::Lock {
            notebook,
            timeout,
            shared,
            cmd,
        } => {
            let nb = NotebookArg::classify(notebook, cwd)?;
            lock_and_run(socket, &nb, *timeout, *shared, cmd, err)
        }
        Command::Commit {
            notebook,
            message,
            paths,
        } => {
            let nb = NotebookArg::classify(notebook, cwd)?;
            let mut args = Map::new();
            if let Some(m) = message {
                args.insert("message".into(), json!(m));
            }
            if !paths.is_empty() {
                let paths = paths
                    .iter()
                    .map(|p| path_arg(p, cwd).map(Value::String))
                    .collect::<Result<Vec<_>, _>>()?;
                args.insert("paths".into(), Value::Array(paths));
            }
            let resp = call(socket, "commit", &nb, args)?;
            match resp.get("commit") {
                Some(Value::String(id)) => write_out(out, format!("{id}\n").as_bytes())?,
                None | Some(Value::Null) => write_out(out, b"nothing to commit\n")?,
                Some(other) => {
                    return Err(ClientError::Protocol(format!("`commit` is {other}")));
                }
            }
            Ok(EXIT_OK)
        }
        Command::Log {
            notebook,
            path,
            limit,
            json,
        } => {
            let nb = NotebookArg::classify(notebook, cwd)?;
            let mut args = Map::new();
            if let Some(p) = path {
                args.insert("path".into(), Value::String(path_arg(p, cwd)?));
            }
            if let Some(n) = limit {
                args.insert("limit".into(), json!(n));
            }
            let resp = call(socket, "log", &nb, args)?;
            let commits = resp.get("commits").cloned().unwrap_or(Value::Array(vec![]));
            if *json {
                print_json(out, &commits)?;
            } else {
                write_out(out, format_log(&commits).as_bytes())?;
            }
            Ok(EXIT_OK)
        }
        Command::Show {
            notebook,
            path,
            rev,
        } => {
            let nb = NotebookArg::classify(notebook, cwd)?;
            let mut args = Map::new();
            args.insert("path".into(), Value::String(path_arg(path, cwd)?));
            if let Some(r) = rev {
                args.insert("rev".into(), json!(r));
            }
            let resp = call(socket, "show", &nb, args)?;
            write_out(out, &show_bytes(&resp)?)?;
            Ok(EXIT_OK)
        }
        Command::Diff {
            notebook,
            path,
            from,
            to,
        } => {
            let nb = NotebookArg::classify(notebook, cwd)?;
            let mut args = Map::new();
            if let Some(p) = path {
                args.insert("path".into(), Value::String(path_arg(p, cwd)?));
            }
            if let Some(r) = from {
                args.insert("from".into(), json!(r));
            }
            if let Some(r) = to {
                args.insert("to".into(), json!(r));
            }
            let resp = call(socket, "diff", &nb, args)?;
            match resp.get("patch") {
                Some(Value::String(patch)) => write_out(out, patch.as_bytes())?,
                None | Some(Value::Null) => {}
                Some(other) => return Err(ClientError::Protocol(format!("`patch` is {other}"))),
            }
            Ok(EXIT_OK)
        }
        Command::Pause { notebook } | Command::Resume { notebook } => {
            let pause = matches!(command, Command::Pause { .. });
            let cmd = if pause { "pause" } else { "resume" };
            let nb = NotebookArg::classify(notebook, cwd)?;
            let resp = call(socket, cmd, &nb, Map::new())?;
            let paused = resp.get("paused").and_then(Value::as_bool).unwrap_or(pause);
            let word = if paused { "paused" } else { "resumed" };
            write_out(out, format!("{}: {word}\n", notebook.display()).as_bytes())?;
            Ok(EXIT_OK)
        }
        Command::Reload => {
            let resp =
                Conn::connect(socket)?.request("reload", Map::new(), Some(ANSWER_TIMEOUT))?;
            let mut text = String::new();
            if let Some(Value::Array(names)) = resp.get("notebooks") {
                for name in names {
                    text.push_str(&cell(name));
                    text.push('\n');
                }
            }
            write_out(out, text.as_bytes())?;
            Ok(EXIT_OK)
        }
        Command::Sync { notebook } => {
            let nb = NotebookArg::classify(notebook, cwd)?;
            let resp = Conn::connect(socket)?.request_nb("sync", &nb, Map::new(), None)?;
            let mut text = String::new();
            for key in ["fetched", "integrated", "pushed", "ahead", "behind"] {
                let value = match resp.get(key) {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => "-".into(),
                };
                text.push_str(&format!("{key}: {value}\n"));
            }
            write_out(out, text.as_bytes())?;
            Ok(EXIT_OK)
        }
    }
}

/// Connect, send one request naming a notebook, and return its answer.
fn call(
    socket: &Path,
    cmd: &str,
    nb: &NotebookArg,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, ClientError> {
    Conn::connect(socket)?.request_nb(cmd, nb, args, Some(ANSWER_TIMEOUT))
}

/// Write `bytes` to stdout.
fn write_out(out: &mut dyn Write, bytes: &[u8]) -> Result<(), ClientError> {
    out.write_all(bytes).map_err(ClientError::Output)
}

/// Pretty-print `value` as JSON, newline-terminated.
fn print_json(out: &mut dyn Write, value: &Value) -> Result<(), ClientError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| ClientError::Protocol(format!("cannot print JSON: {e}")))?;
    write_out(out, format!("{text}\n").as_bytes())
}

/// The file bytes in a `show` response: `content` as UTF-8, or `content_base64` decoded.
pub fn show_bytes(resp: &Map<String, Value>) -> Result<Vec<u8>, ClientError> {
    if let Some(Value::String(text)) = resp.get("content") {
        return Ok(text.clone().into_bytes());
    }
    if let Some(Value::String(b64)) = resp.get("content_base64") {
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| ClientError::Protocol(format!("`content_base64` is not base64: {e}")));
    }
    Err(ClientError::Protocol(
        "`show` answered without `content` or `content_base64`".into(),
    ))
}

// ---------------------------------------------------------------------------
// Arguments

/// How a NOTEBOOK argument goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotebookArg {
    /// Looks like a name: sent as-is; on `not_found`, retried once with `fallback` (the path it also names).
    Name {
        /// The name as typed.
        name: String,
        /// The canonical absolute path, when the argument also exists on disk.
        fallback: Option<String>,
    },
    /// A path, made absolute (symlinks resolved where it exists).
    Path(String),
}

impl NotebookArg {
    /// Classify a NOTEBOOK argument typed in directory `cwd`.
    pub fn classify(arg: &Path, cwd: &Path) -> Result<NotebookArg, ClientError> {
        let text = utf8(arg)?;
        let abs = cwd.join(arg);
        if is_name(text) {
            let fallback = std::fs::canonicalize(&abs)
                .ok()
                .and_then(|p| p.to_str().map(str::to_string));
            return Ok(NotebookArg::Name {
                name: text.to_string(),
                fallback,
            });
        }
        let path = std::fs::canonicalize(&abs).unwrap_or_else(|_| normalize(&abs));
        Ok(NotebookArg::Path(utf8(&path)?.to_string()))
    }

    /// What to send first.
    pub fn first(&self) -> &str {
        match self {
            NotebookArg::Name { name, .. } => name,
            NotebookArg::Path(path) => path,
        }
    }

    /// What to send after a `not_found`, if anything.
    pub fn retry(&self) -> Option<&str> {
        match self {
            NotebookArg::Name { fallback, .. } => fallback.as_deref(),
            NotebookArg::Path(_) => None,
        }
    }
}

/// True for a notebook name as the config allows it: `[A-Za-z0-9._-]+`, not `.` or `..`.
pub fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text != "."
        && text != ".."
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// How a PATH argument (commit/log/show/diff) goes on the wire.
///
/// Absolute paths, `./x`, `../x` and paths that exist relative to `cwd` are
/// sent absolute (the parent resolved, the last component kept so a symlink is
/// named, not followed); anything else is sent as typed, relative to the notebook.
pub fn path_arg(arg: &Path, cwd: &Path) -> Result<String, ClientError> {
    let explicit = arg.is_absolute()
        || matches!(
            arg.components().next(),
            Some(Component::CurDir | Component::ParentDir)
        );
    if !explicit && cwd.join(arg).symlink_metadata().is_err() {
        return Ok(utf8(arg)?.to_string());
    }
    let abs = normalize(&cwd.join(arg));
    let resolved = match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or(abs),
        _ => std::fs::canonicalize(&abs).unwrap_or(abs),
    };
    Ok(utf8(&resolved)?.to_string())
}

/// The path as UTF-8, or a usage error (the protocol is JSON).
fn utf8(path: &Path) -> Result<&str, ClientError> {
    path.to_str().ok_or_else(|| {
        ClientError::Usage(format!(
            "{} is not valid UTF-8, which the control socket cannot carry",
            path.display()
        ))
    })
}

/// Resolve `.` and `..` in an absolute path lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut result = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                result.pop();
            }
            other => result.push(other.as_os_str()),
        }
    }
    result
}

// ---------------------------------------------------------------------------
// The connection

/// One connection to the daemon: numbered requests, one answer line each.
struct Conn {
    /// The socket path, for messages.
    path: PathBuf,
    /// Buffered reader over the stream.
    reader: BufReader<UnixStream>,
    /// The same stream, for writing requests.
    writer: UnixStream,
    /// The id of the next request.
    next_id: u64,
}

impl Conn {
    /// Connect to the daemon's socket.
    fn connect(path: &Path) -> Result<Conn, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            path: path.to_path_buf(),
            source,
        };
        let stream = UnixStream::connect(path).map_err(unreachable)?;
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

    /// Send a request and wait for its answer.
    fn request(
        &mut self,
        cmd: &str,
        args: Map<String, Value>,
        timeout: Option<Duration>,
    ) -> Result<Map<String, Value>, ClientError> {
        let id = self.send(cmd, args)?;
        self.receive(id, timeout)
    }

    /// Send a request naming a notebook; after `not_found` on a name that is also a path, retry with the path.
    fn request_nb(
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
    fn request_nb_as(
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
            let error = map.get("error");
            let field = |key: &str| {
                error
                    .and_then(|e| e.get(key))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let code = field("code");
            let message = field("message");
            Err(ClientError::Daemon {
                code: if code.is_empty() {
                    "internal".into()
                } else {
                    code
                },
                message: if message.is_empty() {
                    "the daemon gave no reason".into()
                } else {
                    message
                },
            })
        }
        _ => Err(ClientError::Protocol(format!(
            "no `ok` field: {}",
            line.trim_end()
        ))),
    }
}

// ---------------------------------------------------------------------------
// lock -- CMD

/// A line (or the end) seen on the lock connection while CMD runs.
enum Incoming {
    /// One answer line.
    Line(String),
    /// The connection closed or failed.
    Closed,
}

/// Take the lock, run `cmd`, release, and return CMD's exit code (or the error's).
fn lock_and_run(
    socket: &Path,
    nb: &NotebookArg,
    timeout: Option<Duration>,
    shared: bool,
    cmd: &[OsString],
    err: &mut dyn Write,
) -> Result<i32, ClientError> {
    let mut conn = Conn::connect(socket)?;
    let mut args = Map::new();
    if let Some(t) = timeout {
        args.insert(
            "timeout_ms".into(),
            json!(u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        );
    }
    args.insert("shared".into(), json!(shared));
    // No read timeout: the daemon answers when the lock is granted or its wait times out.
    let (_, held_name) = conn.request_nb_as("lock", nb, args, None)?;

    // From here on, the open connection *is* the lock. A reader thread notices
    // if the daemon drops it (max_hold, shutdown) while CMD still runs.
    let finished = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let Conn {
        mut reader,
        mut writer,
        next_id,
        ..
    } = conn;
    {
        let finished = Arc::clone(&finished);
        let held_name = held_name.clone();
        std::thread::spawn(move || loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(n) if n > 0 => {
                    if tx.send(Incoming::Line(line)).is_err() {
                        return;
                    }
                }
                _ => {
                    // Straight to the real stderr: CMD is writing there too, right now.
                    if !finished.load(Ordering::SeqCst) {
                        eprintln!(
                            "gitlockd: warning: the daemon closed the connection; \
                             the lock on {held_name} is no longer held"
                        );
                    }
                    let _ = tx.send(Incoming::Closed);
                    return;
                }
            }
        });
    }

    let code = run_child(cmd, err);
    finished.store(true, Ordering::SeqCst);

    // Best effort: closing the connection releases the lock anyway.
    let lost = matches!(rx.try_recv(), Ok(Incoming::Closed));
    if !lost {
        let id = next_id;
        let line = json!({"id": id, "cmd": "unlock", "notebook": held_name}).to_string() + "\n";
        if writer.write_all(line.as_bytes()).is_ok() {
            if let Ok(Incoming::Line(answer)) = rx.recv_timeout(UNLOCK_TIMEOUT) {
                if let Err(e) = parse_response(&answer, id) {
                    let _ = writeln!(err, "gitlockd: warning: unlock: {e}");
                }
            }
        }
    }
    let _ = writer.shutdown(std::net::Shutdown::Both);
    Ok(code)
}

/// Run `cmd` with inherited stdio, signals handled as `lock` promises; returns the exit code.
fn run_child(cmd: &[OsString], err: &mut dyn Write) -> i32 {
    let Some((program, args)) = cmd.split_first() else {
        let _ = writeln!(err, "gitlockd: error: no command given");
        return EXIT_USAGE;
    };
    // Registered before the spawn so a signal arriving in between is queued,
    // not fatal: the forwarder delivers it once the child exists.
    let signals = signal_hook::iterator::Signals::new([
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
    ]);
    let signals = match signals {
        Ok(s) => Some(s),
        Err(e) => {
            let _ = writeln!(
                err,
                "gitlockd: warning: cannot handle signals ({e}); a signal may kill gitlockd and release the lock early"
            );
            None
        }
    };
    let mut child = match std::process::Command::new(program).args(args).spawn() {
        Ok(child) => child,
        Err(e) => {
            let name = Path::new(program).display();
            let (code, why) = match e.kind() {
                io::ErrorKind::NotFound => (EXIT_NOT_FOUND, "command not found".to_string()),
                io::ErrorKind::PermissionDenied => (EXIT_CANNOT_EXEC, "permission denied".into()),
                _ => (EXIT_CANNOT_EXEC, e.to_string()),
            };
            let _ = writeln!(err, "gitlockd: {name}: {why}");
            return code;
        }
    };
    let pid = child.id();

    // `alive` is cleared before the child is reaped, under the same mutex the
    // forwarder holds while calling kill(): a reaped (and possibly reused) pid
    // is never signalled.
    let alive = Arc::new(Mutex::new(true));
    let forwarder = signals.map(|mut signals| {
        let handle = signals.handle();
        let alive = Arc::clone(&alive);
        let thread = std::thread::spawn(move || {
            for sig in signals.forever() {
                // SIGINT/SIGQUIT come from the terminal to the whole process
                // group, so CMD already has them; only TERM/HUP are forwarded.
                if sig == libc::SIGTERM || sig == libc::SIGHUP {
                    let guard = alive.lock().unwrap_or_else(|p| p.into_inner());
                    if *guard {
                        if let Ok(pid) = libc::pid_t::try_from(pid) {
                            // SAFETY: kill(2) on a child we have not reaped yet.
                            unsafe {
                                libc::kill(pid, sig);
                            }
                        }
                    }
                }
            }
        });
        (handle, thread)
    });

    wait_without_reaping(pid);
    *alive.lock().unwrap_or_else(|p| p.into_inner()) = false;
    let status = child.wait();
    if let Some((handle, thread)) = forwarder {
        handle.close();
        let _ = thread.join();
    }
    match status {
        Ok(status) => exit_code_of(status),
        Err(e) => {
            let _ = writeln!(err, "gitlockd: error: waiting for the command: {e}");
            EXIT_ERROR
        }
    }
}

/// Block until child `pid` has exited, leaving it unreaped (waitid with WNOWAIT).
fn wait_without_reaping(pid: u32) {
    let id = libc::id_t::from(pid);
    loop {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid(2).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child with a valid siginfo pointer.
        let rc = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// A shell-style exit code: the child's code, or 128+N when killed by signal N.
pub fn exit_code_of(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => EXIT_ERROR,
    }
}

// ---------------------------------------------------------------------------
// Formatting

/// A JSON value as a table cell: strings bare, null as "-", others compact.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.replace(['\n', '\t'], " "),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        other => other.to_string(),
    }
}

/// A commit id cut to 8 characters (other strings unchanged).
fn short_id(id: &str) -> String {
    if id.len() > 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        id[..8].to_string()
    } else {
        id.to_string()
    }
}

/// A count from a number, or the length of a list.
fn count(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::Array(items) => Some(items.len() as u64),
        Value::Object(map) => Some(map.len() as u64),
        _ => None,
    }
}

/// A lock holder, e.g. "client pid 123".
fn holder(value: &Value) -> String {
    let Value::Object(map) = value else {
        return cell(value);
    };
    for key in ["description", "desc", "label"] {
        if let Some(Value::String(s)) = map.get(key) {
            return s.clone();
        }
    }
    let kind = ["kind", "type", "owner", "who"]
        .iter()
        .find_map(|k| map.get(*k).and_then(Value::as_str));
    let pid = map.get("pid").filter(|p| !p.is_null()).map(cell);
    match (kind, pid) {
        (Some(kind), Some(pid)) => format!("{kind} pid {pid}"),
        (Some(kind), None) => kind.to_string(),
        (None, Some(pid)) => format!("pid {pid}"),
        (None, None) => value.to_string(),
    }
}

/// The LOCK column: "free", or e.g. "exclusive by client pid 123, 2 waiting".
pub fn format_lock(lock: Option<&Value>) -> String {
    let Some(Value::Object(lock)) = lock else {
        return lock.map(cell).unwrap_or_else(|| "-".into());
    };
    let held = match lock.get("held") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0) > 0,
        Some(Value::Null) | None => count(lock.get("holders")).unwrap_or(0) > 0,
        Some(_) => true,
    };
    let waiters = count(lock.get("waiters")).unwrap_or(0);
    let mut text = if held {
        let mode = lock
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or("held")
            .to_string();
        let holders = match lock.get("holders") {
            Some(Value::Array(list)) if !list.is_empty() => {
                list.iter().map(holder).collect::<Vec<_>>().join(", ")
            }
            Some(Value::Number(n)) => {
                let n = n.as_u64().unwrap_or(0);
                format!("{n} holder{}", if n == 1 { "" } else { "s" })
            }
            _ => String::new(),
        };
        if holders.is_empty() {
            mode
        } else {
            format!("{mode} by {holders}")
        }
    } else {
        "free".to_string()
    };
    if waiters > 0 {
        text.push_str(&format!(", {waiters} waiting"));
    }
    text
}

/// The LAST-COMMIT column: a short id (and time when the daemon gives one).
fn format_last_commit(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) if !s.is_empty() => short_id(s),
        Some(Value::Object(map)) => {
            let id = map
                .get("id")
                .or_else(|| map.get("commit"))
                .and_then(Value::as_str)
                .map(short_id);
            let time = map.get("time").and_then(Value::as_str);
            match (id, time) {
                (Some(id), Some(time)) => format!("{id} {time}"),
                (Some(id), None) => id,
                (None, Some(time)) => time.to_string(),
                (None, None) => Value::Object(map.clone()).to_string(),
            }
        }
        Some(other) => cell(other),
        None => "-".into(),
    }
}

/// An error as one line: a string, or an object's `message`.
fn format_error(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Object(map) => Some(
            map.get("message")
                .and_then(Value::as_str)
                .map(|m| m.replace('\n', " "))
                .unwrap_or_else(|| Value::Object(map.clone()).to_string()),
        ),
        other => Some(cell(other)),
    }
}

/// The SYNC column: e.g. "origin/main ok +1 -0", or "-" when sync is off.
fn format_sync(value: Option<&Value>) -> String {
    let Some(Value::Object(sync)) = value else {
        return "-".into();
    };
    let s = |key: &str| sync.get(key).map(cell).unwrap_or_else(|| "?".into());
    format!(
        "{}/{} {} +{} -{}",
        s("remote"),
        s("branch"),
        s("state"),
        s("ahead"),
        s("behind")
    )
}

/// Lay out rows as left-aligned columns separated by two spaces.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(widths[i] - c.chars().count()));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// The human `status` table from a `status` response.
pub fn format_status(resp: &Map<String, Value>) -> String {
    let notebooks = match resp.get("notebooks") {
        Some(Value::Array(list)) => list.as_slice(),
        _ => &[],
    };
    if notebooks.is_empty() {
        return "no notebooks configured\n".into();
    }
    let with_sync = notebooks
        .iter()
        .any(|nb| nb.get("sync").is_some_and(|s| !s.is_null()));
    let mut header: Vec<String> = [
        "NAME",
        "PATH",
        "BRANCH",
        "HEAD",
        "PENDING",
        "PAUSED",
        "STATE",
        "LOCK",
        "LAST-COMMIT",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if with_sync {
        header.push("SYNC".into());
    }
    header.push("LAST-ERROR".into());
    let mut rows = vec![header];
    for nb in notebooks {
        let field = |key: &str| nb.get(key);
        let text = |key: &str| field(key).map(cell).unwrap_or_else(|| "-".into());
        let pending = match count(field("pending")) {
            Some(n) => n.to_string(),
            None => text("pending"),
        };
        let mut row = vec![
            text("name"),
            text("path"),
            text("branch"),
            field("head")
                .and_then(Value::as_str)
                .map(short_id)
                .unwrap_or_else(|| text("head")),
            pending,
            text("paused"),
            text("state"),
            format_lock(field("lock")),
            format_last_commit(field("last_commit")),
        ];
        if with_sync {
            row.push(format_sync(field("sync")));
        }
        let sync_error = field("sync")
            .and_then(|s| format_error(s.get("last_error")))
            .map(|e| format!("sync: {e}"));
        row.push(
            format_error(field("last_error"))
                .or(sync_error)
                .unwrap_or_else(|| "-".into()),
        );
        rows.push(row);
    }
    table(&rows)
}

/// The human `log`: one `SHORTID  TIME  AUTHOR  SUMMARY` line per commit.
pub fn format_log(commits: &Value) -> String {
    let Value::Array(commits) = commits else {
        return String::new();
    };
    let rows: Vec<Vec<String>> = commits
        .iter()
        .map(|c| {
            let s = |key: &str| c.get(key).map(cell).unwrap_or_else(|| "-".into());
            vec![
                c.get("id")
                    .and_then(Value::as_str)
                    .map(short_id)
                    .unwrap_or_else(|| "-".into()),
                s("time"),
                s("author_name"),
                s("summary"),
            ]
        })
        .collect();
    table(&rows)
}
