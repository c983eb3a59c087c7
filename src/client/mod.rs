//! The CLI client: turns a parsed [`Cli`] into requests on the control socket and
//! prints the answers.
//!
//! Blocking std I/O on purpose: the client sends one request at a time and
//! waits for its answer, so an async runtime would buy nothing.
//!
//! Layout: `conn` (the socket connection, its errors and exit codes), `args`
//! (how NOTEBOOK and PATH arguments go on the wire), `lock` (`lock -- CMD`:
//! the held connection, the child and its signals), `format` (the human
//! `status` and `log` tables). This file dispatches the subcommands.

mod args;
mod conn;
mod events;
mod format;
mod lock;
mod time;

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::cli::{Cli, Command};
use crate::control::answers::{
    from_fields, CommitAnswer, DiffAnswer, LogAnswer, PauseAnswer, ReloadAnswer, RestoreAnswer,
    ShowAnswer, SyncAnswer, UndoAnswer,
};
use crate::status::StatusAnswer;

pub use args::{is_name, path_arg, NotebookArg};
pub use conn::{
    exit_code_for, parse_response, ClientError, EXIT_CANNOT_EXEC, EXIT_ERROR, EXIT_NOT_FOUND,
    EXIT_OK, EXIT_TIMEOUT, EXIT_UNAVAILABLE, EXIT_USAGE,
};
pub use format::{format_log, lock_summary, pending_lines, status_table};
pub use lock::exit_code_of;
pub use time::local as local_time;

use conn::Conn;
use format::cell;
use lock::lock_and_run;

/// How long to wait for the answer to a request other than `lock`. Generous,
/// because `commit`, `log` & co. may themselves wait for the notebook's lock
/// and `sync` talks to a remote.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

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
        Command::CheckConfig
        | Command::Completions { .. }
        | Command::Man
        | Command::NotebookNames => Err(ClientError::Usage(
            "this subcommand does not talk to the daemon".into(),
        )),
        Command::Status {
            json,
            pending,
            notebook,
        } => {
            let mut conn = Conn::connect(socket)?;
            let mut args = Map::new();
            if *pending {
                args.insert("pending".into(), json!(true));
            }
            let resp = match notebook {
                Some(nb) => {
                    let nb = NotebookArg::classify(nb, cwd)?;
                    conn.request_nb("status", &nb, args, Some(ANSWER_TIMEOUT))?
                }
                None => conn.request("status", args, Some(ANSWER_TIMEOUT))?,
            };
            // The typed parse is the check that this daemon speaks our
            // protocol; `--json` still prints the answer as it came.
            let answer: StatusAnswer = typed("status", &resp)?;
            if *json {
                print_json(out, &Value::Object(resp))?;
            } else {
                write_out(out, status_table(&answer).as_bytes())?;
                if *pending {
                    write_out(out, pending_lines(&answer).as_bytes())?;
                }
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
            let resp: CommitAnswer = typed("commit", &call(socket, "commit", &nb, args)?)?;
            print_new_commit(out, resp.commit, "nothing to commit")
        }
        Command::Log {
            notebook,
            path,
            limit,
            json,
        } => {
            let nb = NotebookArg::classify(notebook, cwd)?;
            let args = path_and(path.as_deref(), cwd, [("limit", limit.map(|n| json!(n)))])?;
            let resp: LogAnswer = typed("log", &call(socket, "log", &nb, args)?)?;
            let commits = serde_json::to_value(&resp.commits)
                .map_err(|e| ClientError::Protocol(format!("cannot print the log: {e}")))?;
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
            let args = path_and(Some(path), cwd, [("rev", rev.as_ref().map(|r| json!(r)))])?;
            let resp: ShowAnswer = typed("show", &call(socket, "show", &nb, args)?)?;
            write_out(out, &resp.bytes().map_err(ClientError::Protocol)?)?;
            Ok(EXIT_OK)
        }
        Command::Diff {
            notebook,
            path,
            from,
            to,
        } => {
            let nb = NotebookArg::classify(notebook, cwd)?;
            let args = path_and(
                path.as_deref(),
                cwd,
                [
                    ("from", from.as_ref().map(|r| json!(r))),
                    ("to", to.as_ref().map(|r| json!(r))),
                ],
            )?;
            let resp: DiffAnswer = typed("diff", &call(socket, "diff", &nb, args)?)?;
            write_out(out, resp.patch.as_bytes())?;
            Ok(EXIT_OK)
        }
        Command::Pause { notebook, .. } | Command::Resume { notebook } => {
            let (cmd, mut args) = match command {
                Command::Pause { duration, .. } => {
                    let mut args = Map::new();
                    if let Some(d) = duration {
                        args.insert("for_ms".into(), json!(d.as_millis() as u64));
                    }
                    ("pause", args)
                }
                _ => ("resume", Map::new()),
            };
            let nb = NotebookArg::classify(notebook, cwd)?;
            let resp: PauseAnswer =
                typed(cmd, &call(socket, cmd, &nb, std::mem::take(&mut args))?)?;
            let mut line = format!(
                "{}: {}",
                notebook.display(),
                if resp.paused { "paused" } else { "resumed" }
            );
            if let Some(until) = &resp.until {
                line.push_str(&format!(" until {}", time::local(until)));
            }
            line.push('\n');
            write_out(out, line.as_bytes())?;
            Ok(EXIT_OK)
        }
        Command::Restore {
            notebook,
            path,
            rev,
            at,
        } => {
            let nb = NotebookArg::classify(notebook, cwd)?;
            let mut args = path_and(Some(path), cwd, [("rev", rev.as_ref().map(|r| json!(r)))])?;
            if let Some(ago) = at {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let before = now.saturating_sub(*ago).as_secs();
                args.insert("before".into(), json!(before));
            }
            let resp: RestoreAnswer = typed("restore", &call(socket, "restore", &nb, args)?)?;
            print_new_commit(out, resp.commit, "already as it was; nothing to commit")
        }
        Command::Undo { notebook, commit } => {
            let nb = NotebookArg::classify(notebook, cwd)?;
            let mut args = Map::new();
            if let Some(c) = commit {
                args.insert("commit".into(), json!(c));
            }
            let resp: UndoAnswer = typed("undo", &call(socket, "undo", &nb, args)?)?;
            print_new_commit(
                out,
                resp.commit,
                "the commit changed nothing; nothing to commit",
            )
        }
        Command::Events { notebook, json } => {
            let nb = notebook
                .as_ref()
                .map(|n| NotebookArg::classify(n, cwd))
                .transpose()?;
            events::stream(socket, nb.as_ref(), *json, out)
        }
        Command::Reload => {
            let resp = Conn::connect(socket)?
                .request("reload", Map::new(), Some(ANSWER_TIMEOUT))
                .map_err(|e| match e {
                    // `reload` has no argument to get wrong: bad_request is the config.
                    ClientError::Daemon { code, message } if code == "bad_request" => {
                        ClientError::InvalidConfig(message)
                    }
                    other => other,
                })?;
            let resp: ReloadAnswer = typed("reload", &resp)?;
            let mut text = String::new();
            for name in &resp.notebooks {
                text.push_str(&cell(&Value::String(name.clone())));
                text.push('\n');
            }
            write_out(out, text.as_bytes())?;
            Ok(EXIT_OK)
        }
        Command::Sync { notebook } => {
            let nb = NotebookArg::classify(notebook, cwd)?;
            let resp: SyncAnswer = typed(
                "sync",
                &Conn::connect(socket)?.request_nb("sync", &nb, Map::new(), None)?,
            )?;
            let text = format!(
                "fetched: {}\nintegrated: {}\npushed: {}\nahead: {}\nbehind: {}\n",
                resp.fetched, resp.integrated, resp.pushed, resp.ahead, resp.behind
            );
            write_out(out, text.as_bytes())?;
            Ok(EXIT_OK)
        }
    }
}

/// Print a new commit's id, or `none` when there is none.
fn print_new_commit(
    out: &mut dyn Write,
    commit: Option<String>,
    none: &str,
) -> Result<i32, ClientError> {
    let line = commit.unwrap_or_else(|| none.to_string());
    write_out(out, format!("{line}\n").as_bytes())?;
    Ok(EXIT_OK)
}

/// An answer's fields as the protocol's typed answer to `cmd`.
fn typed<T: for<'de> serde::Deserialize<'de>>(
    cmd: &str,
    fields: &Map<String, Value>,
) -> Result<T, ClientError> {
    from_fields(fields)
        .map_err(|e| ClientError::Protocol(format!("unexpected answer to `{cmd}`: {e}")))
}

/// The arguments of a request about a path: `path` when given (resolved as
/// a PATH argument), and each of `more` that is set.
fn path_and<const N: usize>(
    path: Option<&Path>,
    cwd: &Path,
    more: [(&str, Option<Value>); N],
) -> Result<Map<String, Value>, ClientError> {
    let mut args = Map::new();
    if let Some(p) = path {
        args.insert("path".into(), Value::String(path_arg(p, cwd)?));
    }
    for (key, value) in more {
        if let Some(value) = value {
            args.insert(key.into(), value);
        }
    }
    Ok(args)
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
    let content = |key: &str| resp.get(key).and_then(Value::as_str).map(str::to_string);
    ShowAnswer {
        commit: String::new(),
        content: content("content"),
        content_base64: content("content_base64"),
    }
    .bytes()
    .map_err(ClientError::Protocol)
}
