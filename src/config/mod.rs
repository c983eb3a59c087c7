//! The config file (interface.md §2): read, validate and resolve it into the
//! runtime form the daemon uses.
//!
//! Two stages, like ripgrep: the TOML text is parsed into toml's spanned
//! `DeTable` (so every value knows its line), then walked by hand. Serde with
//! `deny_unknown_fields` would stop at the first problem; walking by hand lets
//! [`parse`] report *every* error at once, each naming its key.
//!
//! Decisions the rest of gitlockd relies on:
//! - Keys of errors are dotted paths: `socket`, `lock.timeout`,
//!   `defaults.sync.remote`, `notebook "notes".debounce`. A notebook is named
//!   by its `name` when that is a valid name, else by its position counting
//!   from 1: `notebook[2].path` is the second `[[notebook]]`. Array elements
//!   (`ignore[1]`) also count from 1.
//! - Errors are sorted by line; errors without a line come last.
//! - A notebook key replaces the `[defaults]` value (`ignore` too: lists are
//!   not concatenated). `[notebook.sync]` merges key by key over
//!   `[defaults.sync]`; `sync = false` in a notebook turns off an inherited
//!   `[defaults.sync]`, `sync = true` turns sync on with default settings.
//! - Paths: `~`/`~/` from `$HOME`, `$VAR` / `${VAR}` expanded (a `$` not
//!   followed by a name or `{` stays literal), relative to the config file's
//!   folder, then symlinks resolved. A path that does not exist (yet) gets its
//!   deepest existing ancestor canonicalised and the rest normalised
//!   lexically, so two spellings of one future folder still compare equal.
//! - Environment variables are read when [`parse`] runs; a reload re-reads them.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(test)]
mod fixture;
mod locations;
mod paths;
mod resolve;
mod servable;
mod units;
mod values;
mod walk;

pub use locations::{default_config_path, default_socket_path};
pub use units::{format_duration, format_size, parse_duration, parse_size};

/// Default quiet time after the last file event before committing.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(2);
/// Default longest wait after the first pending change.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(120);
/// Default largest file that is committed (50 MiB).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 50 * 1024 * 1024;
/// Default commit subject template.
pub const DEFAULT_MESSAGE: &str = "gitlockd: {summary}";
/// Default wait for a lock request that names no timeout.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// Default longest hold of a lock by a socket client.
pub const DEFAULT_MAX_HOLD: Duration = Duration::from_secs(3600);
/// Default remote for sync.
pub const DEFAULT_REMOTE: &str = "origin";
/// Default batching delay before a push.
pub const DEFAULT_PUSH_DELAY: Duration = Duration::from_secs(5);
/// Default interval between fetch + integrate runs.
pub const DEFAULT_PULL_INTERVAL: Duration = Duration::from_secs(300);
/// The placeholders a `message` template may use (written `{summary}` etc.).
pub const MESSAGE_PLACEHOLDERS: &[&str] = &["summary", "count", "notebook", "date"];

/// The whole resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The config file it was read from (made absolute), `None` for text parsed directly.
    pub file: Option<PathBuf>,
    /// The control socket: expanded, absolute; [`default_socket_path`] when not configured.
    pub socket: PathBuf,
    /// The `[lock]` table.
    pub lock: LockSettings,
    /// The notebooks, in file order.
    pub notebooks: Vec<NotebookConfig>,
}

/// The `[lock]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct LockSettings {
    /// Wait for a lock request that names no timeout; `0s` means try once.
    pub timeout: Duration,
    /// A socket client holding a lock longer is disconnected; always > 0.
    pub max_hold: Duration,
}

impl Default for LockSettings {
    fn default() -> Self {
        LockSettings {
            timeout: DEFAULT_LOCK_TIMEOUT,
            max_hold: DEFAULT_MAX_HOLD,
        }
    }
}

/// One `[[notebook]]`, with `[defaults]` and built-in defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct NotebookConfig {
    /// Unique name, `[A-Za-z0-9._-]+` (but not `.` or `..`).
    pub name: String,
    /// Absolute; canonical (symlinks resolved) when it exists.
    pub path: PathBuf,
    /// Quiet time after the last event before committing; `0s` allowed.
    pub debounce: Duration,
    /// Commit at the latest this long after the first pending change; always > 0.
    pub max_delay: Duration,
    /// Files larger than this many bytes are not committed; always > 0.
    pub max_file_size: u64,
    /// Subject template; uses only [`MESSAGE_PLACEHOLDERS`].
    pub message: String,
    /// Commit author name; `None` = the repo's git config, else "gitlockd".
    pub author_name: Option<String>,
    /// Commit author email; `None` = the repo's git config, else "gitlockd@<hostname>".
    pub author_email: Option<String>,
    /// Extra ignore globs, each known to compile with [`crate::filter::PathFilter`].
    pub ignore: Vec<String>,
    /// Create the folder and `git init` it when missing.
    pub init: bool,
    /// Run the repository's commit hooks (pre-commit, prepare-commit-msg,
    /// commit-msg, post-commit) on gitlockd's commits, as `git commit` does.
    pub hooks: bool,
    /// Sync through a git remote; `None` = off.
    pub sync: Option<SyncConfig>,
}

impl NotebookConfig {
    /// True when a reload may keep this notebook running unchanged: every
    /// setting (name and path included) is equal.
    pub fn same_runtime_settings(&self, other: &Self) -> bool {
        self == other
    }
}

/// A notebook's sync settings (`[notebook.sync]` merged over `[defaults.sync]`).
#[derive(Debug, Clone, PartialEq)]
pub struct SyncConfig {
    /// A configured remote of the repository.
    pub remote: String,
    /// Remote branch; `None` = the checked-out branch's name.
    pub branch: Option<String>,
    /// Push after auto-commits.
    pub push: bool,
    /// Batching delay before a push; `0s` = push at once.
    pub push_delay: Duration,
    /// Fetch + integrate this often; `0s` = only on demand.
    pub pull_interval: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            remote: DEFAULT_REMOTE.to_string(),
            branch: None,
            push: true,
            push_delay: DEFAULT_PUSH_DELAY,
            pull_interval: DEFAULT_PULL_INTERVAL,
        }
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The dotted key it concerns (`notebook[2].path`); empty for file-level
    /// problems (unreadable file, TOML syntax).
    pub key: String,
    /// 1-based line in the config file, when known.
    pub line: Option<usize>,
    /// What is wrong, lowercase, for a person.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.key.is_empty(), self.line) {
            (false, Some(line)) => write!(f, "{} (line {line}): {}", self.key, self.message),
            (false, None) => write!(f, "{}: {}", self.key, self.message),
            (true, Some(line)) => write!(f, "line {line}: {}", self.message),
            (true, None) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a config file (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl Config {
    /// The notebook called `name`.
    pub fn notebook(&self, name: &str) -> Option<&NotebookConfig> {
        self.notebooks.iter().find(|n| n.name == name)
    }

    /// What `gitlockd check-config` prints: stable, human-readable, one
    /// `key: value` per line, notebooks in file order.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let file = match &self.file {
            Some(f) => f.display().to_string(),
            None => "(none)".to_string(),
        };
        out.push_str(&format!("config:  {file}\n"));
        out.push_str(&format!("socket:  {}\n", self.socket.display()));
        out.push_str(&format!(
            "lock:    timeout {}, max_hold {}\n",
            format_duration(self.lock.timeout),
            format_duration(self.lock.max_hold)
        ));
        if self.notebooks.is_empty() {
            out.push_str("\nno notebooks configured\n");
        }
        for nb in &self.notebooks {
            out.push_str(&format!("\nnotebook {:?}\n", nb.name));
            let mut row = |k: &str, v: String| out.push_str(&format!("  {k:<14} {v}\n"));
            row("path:", nb.path.display().to_string());
            row("debounce:", format_duration(nb.debounce));
            row("max_delay:", format_duration(nb.max_delay));
            row("max_file_size:", format_size(nb.max_file_size));
            row("init:", nb.init.to_string());
            row("hooks:", nb.hooks.to_string());
            row(
                "ignore:",
                if nb.ignore.is_empty() {
                    "(none)".to_string()
                } else {
                    nb.ignore
                        .iter()
                        .map(|g| format!("{g:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            );
            row("message:", format!("{:?}", nb.message));
            let name = nb
                .author_name
                .clone()
                .unwrap_or_else(|| "(git config user.name, else gitlockd)".to_string());
            let email = nb
                .author_email
                .clone()
                .unwrap_or_else(|| "(git config user.email, else gitlockd@<hostname>)".to_string());
            row("author:", format!("{name} <{email}>"));
            row(
                "sync:",
                match &nb.sync {
                    None => "off".to_string(),
                    Some(s) => describe_sync(s),
                },
            );
        }
        out
    }
}

fn describe_sync(s: &SyncConfig) -> String {
    let branch = match &s.branch {
        Some(b) => format!("branch {b:?}"),
        None => "branch (the checked-out one)".to_string(),
    };
    let push = if s.push {
        format!("push after {}", format_duration(s.push_delay))
    } else {
        "no push".to_string()
    };
    let pull = if s.pull_interval.is_zero() {
        "pull on demand only".to_string()
    } else {
        format!("pull every {}", format_duration(s.pull_interval))
    };
    format!("remote {:?}, {branch}, {push}, {pull}", s.remote)
}

/// Reads and parses `file`. A missing or unreadable file is one error naming the path.
pub fn load(file: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        let message = if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "config file {} does not exist: create it or pass --config FILE",
                file.display()
            )
        } else {
            format!("cannot read config file {}: {e}", file.display())
        };
        ConfigError {
            key: String::new(),
            line: None,
            message,
        }
    })?;
    let config = parse(&text, Some(file))?;
    // Only for a file: the daemon and check-config serve files; `parse`
    // stays about the text.
    let errors = servable::check(&config);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Parses config text. Relative paths resolve against `file`'s folder (or the
/// current directory when `file` is `None`); `file` itself is not read.
pub fn parse(text: &str, file: Option<&Path>) -> Result<Config, ConfigErrors> {
    let var = |name: &str| std::env::var_os(name);
    let env = Env {
        var: &var,
        cwd: std::env::current_dir().ok(),
    };
    resolve::parse_with(text, file, &env)
}

/// Where [`parse`] looks things up, so tests need not touch the process environment.
struct Env<'a> {
    /// Reads an environment variable.
    var: &'a dyn Fn(&str) -> Option<OsString>,
    /// The current directory, when it could be read.
    cwd: Option<PathBuf>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::fixture::Fixture;
    use super::*;

    #[test]
    fn load_names_the_missing_file() {
        let fx = Fixture::new();
        let missing = fx.root.join("nope.toml");
        let e = load(&missing).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert!(e.to_string().contains(missing.to_str().unwrap()), "{e}");
        assert!(e.to_string().contains("does not exist"), "{e}");

        git2::Repository::init(fx.mkdir("a")).unwrap();
        std::fs::write(
            fx.file(),
            "socket = \"/s\"\n[[notebook]]\nname = \"a\"\npath = \"a\"\n",
        )
        .unwrap();
        let cfg = load(&fx.file()).unwrap();
        assert_eq!(cfg.file, Some(fx.file()));
        assert_eq!(cfg.notebooks[0].path, fx.root.join("a"));
        // A folder is not a config file.
        assert!(load(&fx.root).is_err());
    }

    #[test]
    fn error_display() {
        let e = |key: &str, line| ConfigError {
            key: key.into(),
            line,
            message: "bad duration \"2x\": ...".into(),
        };
        assert_eq!(
            e("notebook[1].debounce", Some(12)).to_string(),
            "notebook[1].debounce (line 12): bad duration \"2x\": ..."
        );
        assert_eq!(
            e("lock.timeout", None).to_string(),
            "lock.timeout: bad duration \"2x\": ..."
        );
        assert_eq!(
            e("", Some(3)).to_string(),
            "line 3: bad duration \"2x\": ..."
        );
        assert_eq!(
            ConfigErrors(vec![e("a", None), e("b", Some(1))]).to_string(),
            "a: bad duration \"2x\": ...\nb (line 1): bad duration \"2x\": ..."
        );
    }

    #[test]
    fn describe_is_stable() {
        let cfg = Config {
            file: Some("/etc/g.toml".into()),
            socket: "/run/g.sock".into(),
            lock: LockSettings::default(),
            notebooks: vec![NotebookConfig {
                name: "notes".into(),
                path: "/home/u/notes".into(),
                debounce: Duration::from_millis(500),
                max_delay: DEFAULT_MAX_DELAY,
                max_file_size: DEFAULT_MAX_FILE_SIZE,
                message: DEFAULT_MESSAGE.into(),
                author_name: Some("Ann".into()),
                author_email: None,
                ignore: vec!["*.log".into()],
                init: true,
                hooks: true,
                sync: Some(SyncConfig {
                    branch: Some("main".into()),
                    ..SyncConfig::default()
                }),
            }],
        };
        let want = r#"config:  /etc/g.toml
socket:  /run/g.sock
lock:    timeout 30s, max_hold 1h

notebook "notes"
  path:          /home/u/notes
  debounce:      500ms
  max_delay:     2m
  max_file_size: 50MiB
  init:          true
  hooks:         true
  ignore:        "*.log"
  message:       "gitlockd: {summary}"
  author:        Ann <(git config user.email, else gitlockd@<hostname>)>
  sync:          remote "origin", branch "main", push after 5s, pull every 5m
"#;
        assert_eq!(cfg.describe(), want);
        let empty = Config {
            notebooks: vec![],
            ..cfg
        };
        assert!(empty.describe().ends_with("\nno notebooks configured\n"));
    }
}
