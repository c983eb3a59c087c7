//! The command line: clap definitions, the duration parser, completions and the man page.
//!
//! Everything a user can type is declared here, so `--help`, the shell
//! completions and the man page all come from one place.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use clap_mangen::roff::{bold, italic, roman, Roff};

/// Text shown after `gitlockd --help` and as extra man page sections.
const AFTER_LONG_HELP: &str = "\
NOTEBOOK is a notebook's name, or a path to the notebook or to anything inside it \
(relative paths are resolved against the current directory, symlinks resolved); \
`.` works from inside a notebook.

Durations take a unit: ms, s, m or h (\"500ms\", \"30s\", \"2m\", \"1h\").

Exit status: 0 success; 1 runtime error; 2 bad usage or invalid config; \
69 the daemon is not reachable; 75 a lock wait timed out; \
`lock -- CMD` exits with CMD's status (128+N if CMD was killed by signal N).";

/// gitlockd's command line (global options and an optional subcommand).
#[derive(Debug, Parser)]
#[command(
    name = "gitlockd",
    version,
    about = "Auto-commits every change in your git notebooks and shares a per-notebook lock",
    long_about = "gitlockd watches \"notebooks\" (folders that are git repositories) and commits \
every change after a short quiet time. It owns one lock per notebook, shared over a Unix \
socket, so scripts and editors can make a group of changes without an auto-commit in the middle.

Without a subcommand, gitlockd runs the daemon in the foreground (this is what the systemd \
user unit runs). The subcommands are clients that talk to a running daemon over its socket.",
    after_long_help = AFTER_LONG_HELP
)]
pub struct Cli {
    /// Config file [default: $XDG_CONFIG_HOME/gitlockd/config.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Control socket of the daemon (overrides the config's `socket`)
    #[arg(long, global = true, env = "GITLOCKD_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Log more (-v debug, -vv trace)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// Log less (-q warn, -qq error)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub quiet: u8,

    /// Log level; overrides -v/-q (RUST_LOG is honoured when neither is given)
    #[arg(
        long,
        global = true,
        value_name = "LEVEL",
        value_parser = ["error", "warn", "info", "debug", "trace"]
    )]
    pub log_level: Option<String>,

    /// What to do; none runs the daemon in the foreground
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config and print the resolved notebooks (exit 0, or 2 if invalid)
    #[command(
        long_about = "Validate the config file and print the resolved notebooks. Starts \
nothing. Exits 0 when the config is valid, 2 when it is not (every error is reported at once)."
    )]
    CheckConfig,

    /// Show every notebook: branch, HEAD, pending changes, lock holders, last commit and error
    #[command(
        long_about = "Show one line per notebook: name, path, branch, HEAD, pending \
changes, whether auto-commits are paused, its state, the lock's holders and waiters, the last \
commit and the last error (\"-\" when none). Never waits for a notebook's lock."
    )]
    Status {
        /// Print the daemon's raw `status` response as JSON
        #[arg(long)]
        json: bool,

        /// Also list each notebook's uncommitted paths (what the next commit would take)
        #[arg(long)]
        pending: bool,

        /// Only this notebook (name or path)
        #[arg(value_name = "NOTEBOOK")]
        notebook: Option<PathBuf>,
    },

    /// Take a notebook's lock, run CMD, release the lock when CMD ends
    #[command(
        long_about = "Take the notebook's lock, run CMD (inheriting stdin, stdout, stderr and \
the current directory), release the lock when CMD ends, and exit with CMD's exit status (128+N \
if CMD was killed by signal N). Like flock(1), but the lock is gitlockd's: while it is held, \
gitlockd makes no commit in the notebook, and other `gitlockd lock` callers wait.

The lock lives as long as gitlockd's connection to the daemon, which CMD inherits as \
descriptor $GITLOCKD_LOCK_FD (as flock(1) does): the lock is released when CMD ends, and if \
this process is killed, even with SIGKILL, CMD keeps the lock until it ends. While CMD runs, gitlockd ignores SIGINT and \
SIGQUIT (CMD receives the terminal's Ctrl-C itself) and forwards SIGTERM and SIGHUP to CMD.

Exits 75 without running CMD when the wait times out, 69 when the daemon is not reachable, \
127 when CMD is not found and 126 when it cannot be executed.",
        override_usage = "gitlockd lock [OPTIONS] <NOTEBOOK> -- <CMD> [ARGS]...",
        after_help = "Example: gitlockd lock notes --timeout 10s -- git -C ~/notes pull --rebase\n\nCMD runs in the current directory, not in the notebook: name the notebook's folder (git -C, absolute paths) or cd into it first."
    )]
    Lock {
        /// Notebook name, or a path to the notebook or anything inside it
        #[arg(value_name = "NOTEBOOK")]
        notebook: PathBuf,

        /// Give up after waiting this long (exit 75) [default: the daemon's lock.timeout]
        #[arg(long, value_name = "DUR", value_parser = parse_duration)]
        timeout: Option<Duration>,

        /// Take the lock in shared mode: shared holders run together, auto-commit still waits
        #[arg(long)]
        shared: bool,

        /// The command to run while holding the lock, and its arguments (best after `--`)
        #[arg(
            value_name = "CMD",
            required = true,
            num_args = 1..,
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        cmd: Vec<OsString>,
    },

    /// Commit now: all pending changes, or only the given paths
    #[command(
        long_about = "Commit now, without waiting for the quiet time: all pending \
changes, or only the given paths. Prints the new commit id, or \"nothing to commit\" when \
nothing changed (exit 0 either way)."
    )]
    Commit {
        /// Notebook name, or a path to the notebook or anything inside it
        #[arg(value_name = "NOTEBOOK")]
        notebook: PathBuf,

        /// Commit message [default: the notebook's message template]
        #[arg(short, long, value_name = "MSG")]
        message: Option<String>,

        /// Only commit these paths (relative to the notebook, or to the current directory)
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },

    /// Show a notebook's history, newest first
    #[command(
        long_about = "Show the notebook's history, newest first, one commit a line: \
short id, time, author and summary. With PATH, only the commits that touched it."
    )]
    Log {
        /// Notebook name, or a path to the notebook or anything inside it
        #[arg(value_name = "NOTEBOOK")]
        notebook: PathBuf,

        /// Only commits that touched this path
        #[arg(value_name = "PATH")]
        path: Option<PathBuf>,

        /// Show at most N commits [default: 50]
        #[arg(
            short = 'n',
            long = "limit",
            visible_alias = "max-count",
            value_name = "N"
        )]
        limit: Option<u64>,

        /// Print the `commits` array as JSON ({id, summary, message, author_name, author_email, time})
        #[arg(long)]
        json: bool,
    },

    /// Write a file's bytes at a revision to stdout
    #[command(
        long_about = "Write the exact bytes of PATH at revision REV (default HEAD) to \
stdout."
    )]
    Show {
        /// Notebook name, or a path to the notebook or anything inside it
        #[arg(value_name = "NOTEBOOK")]
        notebook: PathBuf,

        /// The file (relative to the notebook, or to the current directory)
        #[arg(value_name = "PATH")]
        path: PathBuf,

        /// Revision to read from (anything git understands) [default: HEAD]
        #[arg(long, value_name = "REV")]
        rev: Option<String>,
    },

    /// Show a unified diff (default: HEAD against the working tree)
    #[command(
        long_about = "Print a unified diff between two revisions, by default HEAD \
against the working tree. With PATH, only that file or folder."
    )]
    Diff {
        /// Notebook name, or a path to the notebook or anything inside it
        #[arg(value_name = "NOTEBOOK")]
        notebook: PathBuf,

        /// Only this file or folder
        #[arg(value_name = "PATH")]
        path: Option<PathBuf>,

        /// Old side of the diff [default: HEAD]
        #[arg(long, value_name = "REV")]
        from: Option<String>,

        /// New side of the diff [default: the working tree]
        #[arg(long, value_name = "REV")]
        to: Option<String>,
    },

    /// Stop auto-commits in a notebook (changes still collect)
    #[command(
        long_about = "Stop auto-commits in the notebook, until `gitlockd resume` or for \
the --for duration. File events still collect and are committed when the pause ends. \
The pause is remembered across daemon restarts and reloads \
($XDG_STATE_HOME/gitlockd/paused.json)."
    )]
    Pause {
        /// Notebook name, or a path to the notebook or anything inside it
        #[arg(value_name = "NOTEBOOK")]
        notebook: PathBuf,

        /// Resume by itself after this long (e.g. 1h)
        #[arg(long = "for", value_name = "DUR", value_parser = parse_positive_duration)]
        duration: Option<Duration>,
    },

    /// Restart auto-commits in a paused notebook
    Resume {
        /// Notebook name, or a path to the notebook or anything inside it
        #[arg(value_name = "NOTEBOOK")]
        notebook: PathBuf,
    },

    /// Make the daemon re-read its config (same as SIGHUP)
    #[command(
        long_about = "Make the daemon re-read its config file (same as sending it \
SIGHUP) and print the notebooks now configured. An invalid config is rejected (exit 2) and \
the old one stays in force."
    )]
    Reload,

    /// Fetch, integrate and push a notebook now (notebooks with a [sync] section)
    #[command(
        long_about = "Sync the notebook with its git remote now: fetch, integrate \
(fast-forward, merge, or report divergence) and push. Prints fetched, integrated, pushed, \
ahead and behind."
    )]
    Sync {
        /// Notebook name, or a path to the notebook or anything inside it
        #[arg(value_name = "NOTEBOOK")]
        notebook: PathBuf,
    },

    /// Bring back a file or folder as it was, as a new commit
    #[command(
        long_about = "Write PATH (a file or a folder) as it was at revision REV, or at \
the time --at ago, and commit it as a new commit (history is never rewritten). PATH's \
current state is committed first, so nothing is lost. A folder is restored whole: files \
added to it since are removed (they stay in history). Files are written by your git, \
so filters (git-lfs) apply. Prints the new commit id.",
        after_help = "Examples: gitlockd restore notes todo.md --at 2h\n          gitlockd restore notes todo.md --rev HEAD~3"
    )]
    Restore {
        /// Notebook name, or a path to the notebook or anything inside it
        #[arg(value_name = "NOTEBOOK")]
        notebook: PathBuf,

        /// The file or folder (relative to the notebook, or to the current directory)
        #[arg(value_name = "PATH")]
        path: PathBuf,

        /// Revision to take it from (anything git understands) [default: HEAD]
        #[arg(long, value_name = "REV", conflicts_with = "at")]
        rev: Option<String>,

        /// As it was this long ago (its state in the newest commit not newer than that)
        #[arg(long, value_name = "DUR", value_parser = parse_duration)]
        at: Option<Duration>,
    },

    /// Undo a commit's changes with a new commit (default: the last commit)
    #[command(
        long_about = "Revert the changes of COMMIT (default HEAD) as a new commit; history \
is never rewritten. Refused (exit 1, nothing written) when a file it touched changed \
after it, committed or not, or when it is a merge commit: then bring back the version \
you want with `gitlockd restore`. Prints the new commit id."
    )]
    Undo {
        /// Notebook name, or a path to the notebook or anything inside it
        #[arg(value_name = "NOTEBOOK")]
        notebook: PathBuf,

        /// The commit to undo [default: HEAD]
        #[arg(value_name = "COMMIT")]
        commit: Option<String>,
    },

    /// Print events as they happen: commits, errors, sync problems, lock changes
    #[command(
        long_about = "Print one line per event, as it happens, until interrupted: \
commits, a notebook's new errors, sync divergence or failure, and lock changes. With \
NOTEBOOK, only that notebook's events.",
        after_help = "Example: gitlockd events --json | while read -r e; do notify-send gitlockd \"$e\"; done"
    )]
    Events {
        /// Only this notebook (name or path)
        #[arg(value_name = "NOTEBOOK")]
        notebook: Option<PathBuf>,

        /// Print each event as the daemon's JSON line
        #[arg(long)]
        json: bool,
    },

    /// Print shell completions to stdout
    #[command(
        after_help = "Example: gitlockd completions bash > ~/.local/share/bash-completion/completions/gitlockd"
    )]
    Completions {
        /// The shell to generate completions for
        #[arg(value_name = "SHELL")]
        shell: Shell,
    },

    /// Print the man page (roff) to stdout
    #[command(after_help = "Example: gitlockd man | man -l -")]
    Man,

    /// Print the configured notebook names, one a line (for shell completion)
    #[command(hide = true)]
    NotebookNames,
}

impl Cli {
    /// The log filter from `--log-level`, else from -v/-q relative to "info"; `None` if neither was given.
    pub fn log_filter(&self) -> Option<String> {
        if let Some(level) = &self.log_level {
            return Some(level.clone());
        }
        if self.verbose == 0 && self.quiet == 0 {
            return None;
        }
        let level = match i16::from(self.verbose) - i16::from(self.quiet) {
            i16::MIN..=-2 => "error",
            -1 => "warn",
            0 => "info",
            1 => "debug",
            _ => "trace",
        };
        Some(level.to_string())
    }
}

/// The clap command (for completions, the man page and tests).
pub fn command() -> clap::Command {
    Cli::command()
}

/// Write completions for `shell` to `out`: clap's script, plus completion
/// of NOTEBOOK arguments with the configured names (asked of `gitlockd
/// notebook-names` at each TAB, so they follow the config).
pub fn write_completions(shell: Shell, out: &mut dyn Write) {
    let mut cmd = command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "gitlockd", &mut script);
    let script = String::from_utf8_lossy(&script).into_owned();
    let script = match shell {
        Shell::Bash => format!("{}{}", bash_without_hidden(&script), bash_notebooks()),
        Shell::Zsh => zsh_notebooks(&script),
        Shell::Fish => format!("{script}{}", fish_notebooks()),
        _ => script,
    };
    // Nothing sensible is left to do if stdout fails.
    let _ = out.write_all(script.as_bytes());
}

/// clap's bash script offers hidden subcommands too: drop them from every
/// `opts="..."` word list, so TAB never suggests `notebook-names` (which
/// still runs, for the completion scripts that call it).
fn bash_without_hidden(script: &str) -> String {
    let hidden: Vec<String> = command()
        .get_subcommands()
        .filter(|sub| sub.is_hide_set())
        .map(|sub| sub.get_name().to_string())
        .collect();
    let mut out = String::with_capacity(script.len());
    for line in script.split_inclusive('\n') {
        match line.split_once("opts=\"") {
            Some((head, rest)) => {
                let (words, tail) = rest.split_once('"').unwrap_or((rest, ""));
                let kept: Vec<&str> = words
                    .split(' ')
                    .filter(|w| !hidden.iter().any(|h| h == w))
                    .collect();
                out.push_str(&format!("{head}opts=\"{}\"{tail}", kept.join(" ")));
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Subcommands whose first positional argument is a NOTEBOOK.
fn notebook_subcommands() -> Vec<String> {
    command()
        .get_subcommands()
        .filter(|sub| {
            sub.get_positionals()
                .next()
                .is_some_and(|a| a.get_id() == "notebook")
        })
        .map(|sub| sub.get_name().to_string())
        .collect()
}

/// Every option that takes a value (its value is not a positional word).
fn value_options() -> Vec<String> {
    let mut opts: Vec<String> = command()
        .get_subcommands()
        .flat_map(|sub| sub.get_arguments().cloned().collect::<Vec<_>>())
        .chain(command().get_arguments().cloned())
        .filter(|a| !a.is_positional() && a.get_action().takes_values())
        .flat_map(|a| {
            let long = a.get_long().map(|l| format!("--{l}"));
            let short = a.get_short().map(|s| format!("-{s}"));
            long.into_iter().chain(short)
        })
        .collect();
    opts.sort();
    opts.dedup();
    opts
}

fn bash_notebooks() -> String {
    format!(
        r#"
# Notebook names for NOTEBOOK arguments (from `gitlockd notebook-names`).
_gitlockd_with_notebooks() {{
    _gitlockd "$@"
    local cur="${{COMP_WORDS[COMP_CWORD]}}" sub="" pos=0 i config=()
    [[ ${{cur}} == -* ]] && return 0
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            --config) config=(--config "${{COMP_WORDS[i + 1]}}"); ((i++)) ;;
            {opts}) ((i++)) ;;
            -*) ;;
            *) if [[ -z ${{sub}} ]]; then sub="${{COMP_WORDS[i]}}"; else ((pos++)); fi ;;
        esac
    done
    [[ -n ${{sub}} && ${{pos}} -eq 0 ]] || return 0
    case "${{sub}}" in
        {subs})
            COMPREPLY=( $(compgen -W "$(gitlockd "${{config[@]}}" notebook-names 2>/dev/null)" -- "${{cur}}") ) ;;
    esac
    return 0
}}
complete -F _gitlockd_with_notebooks -o bashdefault -o default gitlockd
"#,
        opts = value_options().join("|"),
        subs = notebook_subcommands().join("|"),
    )
}

fn zsh_notebooks(script: &str) -> String {
    let helper = r#"
(( $+functions[_gitlockd_notebooks] )) ||
_gitlockd_notebooks() {
    local -a names
    names=(${(f)"$(gitlockd notebook-names 2>/dev/null)"})
    _alternative 'notebooks:notebook:compadd -a names' 'files:file:_files'
}

"#;
    let mut out = String::with_capacity(script.len() + helper.len());
    for line in script.lines() {
        if line.starts_with(r#"if [ "$funcstack[1]" = "_gitlockd" ]"#) {
            out.push_str(helper);
        }
        if line.contains(":notebook -- ") && line.ends_with(":_files' \\") {
            out.push_str(&line.replace(":_files' \\", ":_gitlockd_notebooks' \\"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

fn fish_notebooks() -> String {
    let mut out = String::from("\n# Notebook names for NOTEBOOK arguments.\n");
    for sub in notebook_subcommands() {
        out.push_str(&format!(
            "complete -c gitlockd -n \"__fish_gitlockd_using_subcommand {sub}\" -f -a \"(gitlockd notebook-names 2>/dev/null)\" -d notebook\n"
        ));
    }
    out
}

/// Write the man page gitlockd(1), every subcommand included, to `out`.
pub fn write_man(out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = command();
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;

    // One page for everything: clap_mangen would otherwise point at
    // gitlockd-lock(1) and friends, which nobody installs.
    let mut roff = Roff::default();
    roff.control("SH", ["COMMANDS"]);
    for sub in cmd.get_subcommands_mut() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let usage = sub.render_usage().to_string();
        let usage = usage.trim_start_matches("Usage:").trim().to_string();
        roff.control("SS", [usage.as_str()]);
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            paragraphs(&mut roff, &about.to_string());
        }
        for arg in sub.get_arguments() {
            if arg.is_hide_set() || arg.is_global_set() {
                continue;
            }
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let value = arg
                .get_value_names()
                .map(|names| names.join(" "))
                .unwrap_or_else(|| id.to_uppercase());
            let mut head = Vec::new();
            match (arg.get_short(), arg.get_long()) {
                (Some(s), Some(l)) => head.push(bold(format!("-{s}, --{l}"))),
                (None, Some(l)) => head.push(bold(format!("--{l}"))),
                (Some(s), None) => head.push(bold(format!("-{s}"))),
                (None, None) => head.push(italic(value.clone())),
            }
            if (arg.get_short().is_some() || arg.get_long().is_some())
                && arg.get_action().takes_values()
            {
                head.push(roman(" "));
                head.push(italic(value));
            }
            roff.control("TP", []);
            roff.text(head);
            if let Some(help) = arg.get_long_help().or_else(|| arg.get_help()) {
                roff.text([roman(help.to_string())]);
            }
        }
        if let Some(after) = sub.get_after_long_help().or_else(|| sub.get_after_help()) {
            roff.control("PP", []);
            roff.text([roman(after.to_string())]);
        }
    }
    roff.control("SH", ["NOTEBOOK AND DURATION ARGUMENTS"]);
    let (args_text, exit_text) = AFTER_LONG_HELP
        .split_once("\n\nExit status: ")
        .unwrap_or((AFTER_LONG_HELP, ""));
    paragraphs(&mut roff, args_text);
    roff.control("SH", ["EXIT STATUS"]);
    paragraphs(&mut roff, exit_text);
    roff.control("SH", ["ENVIRONMENT"]);
    env_entry(
        &mut roff,
        "GITLOCKD_SOCKET",
        "The control socket, like --socket.",
    );
    env_entry(
        &mut roff,
        "RUST_LOG",
        "Log filter when neither --log-level nor -v/-q is given.",
    );
    env_entry(
        &mut roff,
        "XDG_CONFIG_HOME",
        "Where the default config lives: $XDG_CONFIG_HOME/gitlockd/config.toml (~/.config when unset).",
    );
    env_entry(
        &mut roff,
        "XDG_RUNTIME_DIR",
        "Where the default socket lives: $XDG_RUNTIME_DIR/gitlockd.sock.",
    );
    roff.control("SH", ["VERSION"]);
    roff.text([roman(format!("v{}", env!("CARGO_PKG_VERSION")))]);
    roff.to_writer(out)
}

/// Add `text` to `roff`, a paragraph break at each blank line.
fn paragraphs(roff: &mut Roff, text: &str) {
    for (i, para) in text.split("\n\n").enumerate() {
        if i > 0 {
            roff.control("PP", []);
        }
        roff.text([roman(para.replace('\n', " "))]);
    }
}

/// Add one ENVIRONMENT entry to `roff`.
fn env_entry(roff: &mut Roff, name: &str, text: &str) {
    roff.control("TP", []);
    roff.text([bold(name)]);
    roff.text([roman(text)]);
}

/// [`parse_duration`] refusing zero: `pause --for 0s` would end at once,
/// which is never what was meant.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err(format!(
            "{text:?} is no time at all: give a positive duration (e.g. \"30m\", \"1h\"), \
             or leave --for out to pause until `gitlockd resume`"
        )),
        d => Ok(d),
    }
}

/// Parse a duration with a unit: "500ms", "30s", "2m", "1h" (several may be chained: "1m30s").
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!("invalid duration {text:?}: expected a number and a unit (ms, s, m, h), e.g. \"500ms\", \"30s\", \"2m\", \"1h\"")
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Some(Duration::from_millis(number)),
            "s" => Some(Duration::from_secs(number)),
            "m" => number.checked_mul(60).map(Duration::from_secs),
            "h" => number.checked_mul(3600).map(Duration::from_secs),
            _ => return Err(bad()),
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| format!("duration {text:?} is too large"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn durations() {
        let ok = [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("0s", Duration::ZERO),
            ("1m30s", Duration::from_secs(90)),
            (" 5s ", Duration::from_secs(5)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in [
            "",
            "5",
            "s",
            "5x",
            "1.5s",
            "-1s",
            "5 s",
            "5S",
            "ms5",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
        assert!(parse_duration("18446744073709551615h").is_err());
        assert!(parse_positive_duration("0s").is_err());
        assert!(parse_positive_duration("0ms").is_err());
        assert_eq!(parse_positive_duration("1ms"), Ok(Duration::from_millis(1)));
    }

    #[test]
    fn log_filter_levels() {
        let f = |args: &[&str]| {
            let mut v = vec!["gitlockd"];
            v.extend_from_slice(args);
            Cli::try_parse_from(v).unwrap().log_filter()
        };
        assert_eq!(f(&[]), None);
        assert_eq!(f(&["-v"]).as_deref(), Some("debug"));
        assert_eq!(f(&["-vv"]).as_deref(), Some("trace"));
        assert_eq!(f(&["-vvv"]).as_deref(), Some("trace"));
        assert_eq!(f(&["-q"]).as_deref(), Some("warn"));
        assert_eq!(f(&["-qqq"]).as_deref(), Some("error"));
        assert_eq!(f(&["-v", "-q"]).as_deref(), Some("info"));
        assert_eq!(f(&["-vv", "--log-level", "warn"]).as_deref(), Some("warn"));
        assert_eq!(f(&["status", "-v"]).as_deref(), Some("debug"));
        assert!(Cli::try_parse_from(["gitlockd", "--log-level", "loud"]).is_err());
    }

    #[test]
    fn lock_parses_command_after_double_dash() {
        let cli = Cli::try_parse_from([
            "gitlockd",
            "lock",
            "notes",
            "--timeout",
            "2s",
            "--shared",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Lock {
                notebook,
                timeout,
                shared,
                cmd,
            }) => {
                assert_eq!(notebook, PathBuf::from("notes"));
                assert_eq!(timeout, Some(Duration::from_secs(2)));
                assert!(shared);
                assert_eq!(cmd, ["sh", "-c", "exit 3"]);
            }
            other => panic!("{other:?}"),
        }
        // Options of CMD stay CMD's.
        let cli = Cli::try_parse_from(["gitlockd", "lock", "nb", "--", "ls", "--timeout"]).unwrap();
        match cli.command {
            Some(Command::Lock { timeout, cmd, .. }) => {
                assert_eq!(timeout, None);
                assert_eq!(cmd, ["ls", "--timeout"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn usage_errors_exit_2() {
        for args in [
            vec!["gitlockd", "lock", "nb"],
            vec!["gitlockd", "lock", "nb", "--timeout", "5", "--", "true"],
            vec!["gitlockd", "lock", "nb", "--timeout", "soon", "--", "true"],
            vec!["gitlockd", "show", "nb"],
            vec!["gitlockd", "log", "nb", "-n", "many"],
            vec!["gitlockd", "frobnicate"],
            vec!["gitlockd", "completions", "cmd.exe"],
        ] {
            let err = Cli::try_parse_from(&args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn socket_from_env_or_flag() {
        let cli = Cli::try_parse_from(["gitlockd", "status", "--socket", "/tmp/x.sock"]).unwrap();
        assert_eq!(cli.socket, Some(PathBuf::from("/tmp/x.sock")));
    }

    #[test]
    fn man_and_completions_render() {
        let mut man = Vec::new();
        write_man(&mut man).unwrap();
        let man = String::from_utf8(man).unwrap();
        for needle in [
            "COMMANDS",
            "EXIT STATUS",
            "lock",
            "timeout",
            "GITLOCKD_SOCKET",
            "75",
        ] {
            assert!(man.contains(needle), "man page lacks {needle}");
        }
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            write_completions(shell, &mut out);
            let out = String::from_utf8(out).unwrap();
            assert!(out.contains("check-config"), "{shell}");
        }
    }
}
