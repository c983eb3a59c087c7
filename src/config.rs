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

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

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

/// Longest socket path the kernel accepts (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

const ROOT_KEYS: &[&str] = &["socket", "defaults", "lock", "notebook"];
const LOCK_KEYS: &[&str] = &["timeout", "max_hold"];
const SETTING_KEYS: &[&str] = &[
    "debounce",
    "max_delay",
    "max_file_size",
    "message",
    "author_name",
    "author_email",
    "ignore",
    "init",
    "sync",
];
const NOTEBOOK_ONLY_KEYS: &[&str] = &["name", "path"];
const SYNC_KEYS: &[&str] = &["remote", "branch", "push", "push_delay", "pull_interval"];

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
    parse(&text, Some(file))
}

/// Parses config text. Relative paths resolve against `file`'s folder (or the
/// current directory when `file` is `None`); `file` itself is not read.
pub fn parse(text: &str, file: Option<&Path>) -> Result<Config, ConfigErrors> {
    let var = |name: &str| std::env::var_os(name);
    let env = Env {
        var: &var,
        cwd: std::env::current_dir().ok(),
    };
    parse_with(text, file, &env)
}

/// Where [`parse`] looks things up, so tests need not touch the process environment.
struct Env<'a> {
    /// Reads an environment variable.
    var: &'a dyn Fn(&str) -> Option<OsString>,
    /// The current directory, when it could be read.
    cwd: Option<PathBuf>,
}

/// `$XDG_CONFIG_HOME/gitlockd/config.toml`, else `$HOME/.config/gitlockd/config.toml`
/// (relative `XDG_*` values are ignored, as the XDG spec says; without `$HOME`
/// the passwd entry's home is used).
pub fn default_config_path() -> PathBuf {
    let var = |name: &str| std::env::var_os(name);
    config_path_from(&var).unwrap_or_else(|| {
        passwd_home()
            .unwrap_or_else(|| PathBuf::from("/"))
            .join(".config/gitlockd/config.toml")
    })
}

fn config_path_from(var: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    if let Some(dir) = abs_var(var, "XDG_CONFIG_HOME") {
        return Some(dir.join("gitlockd/config.toml"));
    }
    abs_var(var, "HOME").map(|home| home.join(".config/gitlockd/config.toml"))
}

/// `$XDG_RUNTIME_DIR/gitlockd.sock` when set to an absolute path; else
/// `$TMPDIR/gitlockd-<uid>/gitlockd.sock` (`/tmp` when `TMPDIR` is unset or
/// relative). Whoever binds the fallback must create `gitlockd-<uid>` with
/// mode 0700 and check that it owns it.
pub fn default_socket_path() -> PathBuf {
    let var = |name: &str| std::env::var_os(name);
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    socket_path_from(&var, uid)
}

fn socket_path_from(var: &dyn Fn(&str) -> Option<OsString>, uid: u32) -> PathBuf {
    if let Some(dir) = abs_var(var, "XDG_RUNTIME_DIR") {
        return dir.join("gitlockd.sock");
    }
    let tmp = abs_var(var, "TMPDIR").unwrap_or_else(|| PathBuf::from("/tmp"));
    tmp.join(format!("gitlockd-{uid}")).join("gitlockd.sock")
}

/// An environment variable holding an absolute path, else `None`.
fn abs_var(var: &dyn Fn(&str) -> Option<OsString>, name: &str) -> Option<PathBuf> {
    var(name).map(PathBuf::from).filter(|p| p.is_absolute())
}

/// The home directory from the passwd database, for when `$HOME` is unset.
fn passwd_home() -> Option<PathBuf> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: a zeroed passwd is a valid out-parameter for getpwuid_r.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf's length is passed.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_dir.is_null() {
        return None;
    }
    // SAFETY: on success pw_dir points to a NUL-terminated string inside buf.
    let dir = unsafe { CStr::from_ptr(pwd.pw_dir) };
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes()));
    path.is_absolute().then_some(path)
}

// ---------------------------------------------------------------------------
// Durations and sizes

/// Parses a duration: a number and a unit, `ms`, `s`, `m` or `h` (`"250ms"`,
/// `"2s"`, `"1h"`). Also accepted: decimals (`"1.5s"`) and several parts
/// (`"1h30m"`, `"1m 30s"`). The unit is required; `"0s"` is allowed; the result
/// must be a whole number of milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const UNITS: &str = "use ms, s, m or h, e.g. \"500ms\", \"2s\", \"5m\", \"1h\"";
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("empty duration: {UNITS}"));
    }
    if t.starts_with('-') {
        return Err(format!("bad duration {s:?}: a duration cannot be negative"));
    }
    let mut rest = t;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() {
            return Err(format!("bad duration {s:?}: expected a number at {rest:?}"));
        }
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_ns: u128 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("bad duration {s:?}: missing unit: {UNITS}")),
            other => {
                return Err(format!(
                    "bad duration {s:?}: unknown unit {other:?}: {UNITS}"
                ))
            }
        };
        let (value, exact) =
            scaled(num, unit_ns).map_err(|e| format!("bad duration {s:?}: {e}"))?;
        if !exact {
            return Err(format!(
                "bad duration {s:?}: durations are precise to the millisecond"
            ));
        }
        total = total
            .checked_add(value)
            .ok_or_else(|| format!("bad duration {s:?}: too large"))?;
        rest = after.trim_start();
    }
    if !total.is_multiple_of(1_000_000) {
        return Err(format!(
            "bad duration {s:?}: durations are precise to the millisecond"
        ));
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| format!("bad duration {s:?}: too large"))?;
    let nanos = u32::try_from(total % 1_000_000_000)
        .map_err(|_| format!("bad duration {s:?}: too large"))?;
    Ok(Duration::new(secs, nanos))
}

/// Parses a size: a number and a unit, `B`, `KiB`, `MiB`, `GiB`, `TiB` (powers
/// of 1024) or `KB`/`kB`, `MB`, `GB`, `TB` (powers of 1000, as their SI names
/// say); a bare whole number is bytes. Decimals are allowed with a unit above
/// `B` (`"1.5GiB"`), rounded down to a whole byte.
pub fn parse_size(s: &str) -> Result<u64, String> {
    const UNITS: &str = "use B, KiB, MiB or GiB, e.g. \"50MiB\" (KB, MB, GB mean powers of 1000)";
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("empty size: {UNITS}"));
    }
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_len);
    if num.is_empty() {
        return Err(format!(
            "bad size {s:?}: expected a number, then a unit: {UNITS}"
        ));
    }
    let mult: u128 = match unit.trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => return Err(format!("bad size {s:?}: unknown unit {other:?}: {UNITS}")),
    };
    if mult == 1 && num.contains('.') {
        return Err(format!(
            "bad size {s:?}: a byte count must be a whole number"
        ));
    }
    let (value, _) = scaled(num, mult).map_err(|e| format!("bad size {s:?}: {e}"))?;
    u64::try_from(value).map_err(|_| format!("bad size {s:?}: too large"))
}

/// `num` (digits with at most one `.`) times `unit`, rounded down, and whether
/// that was exact.
fn scaled(num: &str, unit: u128) -> Result<(u128, bool), String> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() || frac.contains('.') || (num.contains('.') && frac.is_empty()) {
        return Err(format!("bad number {num:?}"));
    }
    if frac.len() > 12 {
        return Err(format!("too many decimals in {num:?}"));
    }
    let int: u128 = int.parse().map_err(|_| "too large".to_string())?;
    let mut value = int.checked_mul(unit).ok_or("too large")?;
    let mut exact = true;
    if !frac.is_empty() {
        let frac_value: u128 = frac.parse().map_err(|_| format!("bad number {num:?}"))?;
        let denom = 10u128.pow(frac.len() as u32);
        let scaled_frac = frac_value.checked_mul(unit).ok_or("too large")?;
        exact = scaled_frac.is_multiple_of(denom);
        value = value.checked_add(scaled_frac / denom).ok_or("too large")?;
    }
    Ok((value, exact))
}

/// Writes a duration the way [`parse_duration`] reads it: `"0s"`, `"250ms"`,
/// `"2s"`, `"1h30m"`, `"1s500ms"`.
pub fn format_duration(d: Duration) -> String {
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{d:?}");
    }
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let parts = [
        (ms / 3_600_000, "h"),
        (ms / 60_000 % 60, "m"),
        (ms / 1000 % 60, "s"),
        (ms % 1000, "ms"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect()
}

/// Writes a size in the largest binary unit that divides it: `"50MiB"`, `"1000B"`.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

// ---------------------------------------------------------------------------
// Paths

/// Expands a leading `~` / `~/` (from `$HOME`) and `$VAR` / `${VAR}`.
fn expand(raw: &str, var: &dyn Fn(&str) -> Option<OsString>) -> Result<PathBuf, String> {
    let mut out = OsString::new();
    let mut rest = raw;
    if rest == "~" || rest.starts_with("~/") {
        match var("HOME").filter(|h| !h.is_empty()) {
            Some(home) => out.push(home),
            None => return Err("cannot expand ~: $HOME is not set".to_string()),
        }
        rest = &rest[1..];
    } else if rest.starts_with('~') {
        return Err(format!(
            "cannot expand {raw:?}: only ~ and ~/ are supported, write the full path"
        ));
    }
    let mut missing: Vec<String> = Vec::new();
    while let Some(pos) = rest.find('$') {
        out.push(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, next) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => return Err(format!("unclosed ${{ in {raw:?}")),
            }
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if len == 0 || after.starts_with(|c: char| c.is_ascii_digit()) {
                // Not a variable reference: keep the `$` as written.
                out.push("$");
                rest = after;
                continue;
            }
            (&after[..len], &after[len..])
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad variable name {name:?} in {raw:?}"));
        }
        match var(name) {
            Some(value) => out.push(value),
            None => {
                if !missing.iter().any(|m| m == name) {
                    missing.push(name.to_string());
                }
            }
        }
        rest = next;
    }
    out.push(rest);
    if !missing.is_empty() {
        let list = missing
            .iter()
            .map(|m| format!("${m}"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!("undefined environment variable {list} in {raw:?}"));
    }
    Ok(PathBuf::from(out))
}

/// Removes `.` and resolves `..` without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Canonicalises `abs` when it exists; else canonicalises its deepest existing
/// ancestor and appends the rest, normalised lexically.
fn real_path(abs: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(abs) {
        return real;
    }
    let norm = normalize(abs);
    let mut head = norm.clone();
    let mut tail: Vec<OsString> = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&head) {
            let mut out = real;
            out.extend(tail.iter().rev());
            return out;
        }
        match head.file_name() {
            Some(name) => tail.push(name.to_os_string()),
            None => return norm,
        }
        if !head.pop() {
            return norm;
        }
    }
}

/// Expands `raw` and makes it absolute against `base`, symlinks resolved.
fn resolve_path(raw: &str, base: Option<&Path>, env: &Env<'_>) -> Result<PathBuf, String> {
    if raw.trim().is_empty() {
        return Err("empty path".to_string());
    }
    let expanded = expand(raw, env.var)?;
    let abs = if expanded.is_absolute() {
        expanded
    } else {
        match base {
            Some(base) => base.join(expanded),
            None => {
                return Err(format!(
                    "cannot resolve relative path {raw:?}: the current directory is unreadable"
                ))
            }
        }
    };
    Ok(real_path(&abs))
}

// ---------------------------------------------------------------------------
// The walk over the TOML document

type Item<'i> = Spanned<DeValue<'i>>;

/// `[defaults]` or one notebook's settings, as written (nothing = inherit).
#[derive(Debug, Default, Clone)]
struct Partial {
    debounce: Option<Duration>,
    max_delay: Option<Duration>,
    max_file_size: Option<u64>,
    message: Option<String>,
    author_name: Option<String>,
    author_email: Option<String>,
    ignore: Option<Vec<String>>,
    init: Option<bool>,
    sync: Option<SyncSetting>,
}

/// A `sync` key as written.
#[derive(Debug, Clone)]
enum SyncSetting {
    /// `sync = false`: no sync, even when `[defaults.sync]` exists.
    Off,
    /// A sync table (or `sync = true`, an empty one).
    On(PartialSync),
}

#[derive(Debug, Default, Clone)]
struct PartialSync {
    remote: Option<String>,
    branch: Option<String>,
    push: Option<bool>,
    push_delay: Option<Duration>,
    pull_interval: Option<Duration>,
}

impl PartialSync {
    fn over(&self, base: &PartialSync) -> PartialSync {
        PartialSync {
            remote: self.remote.clone().or_else(|| base.remote.clone()),
            branch: self.branch.clone().or_else(|| base.branch.clone()),
            push: self.push.or(base.push),
            push_delay: self.push_delay.or(base.push_delay),
            pull_interval: self.pull_interval.or(base.pull_interval),
        }
    }

    fn resolve(self) -> SyncConfig {
        let d = SyncConfig::default();
        SyncConfig {
            remote: self.remote.unwrap_or(d.remote),
            branch: self.branch,
            push: self.push.unwrap_or(d.push),
            push_delay: self.push_delay.unwrap_or(d.push_delay),
            pull_interval: self.pull_interval.unwrap_or(d.pull_interval),
        }
    }
}

/// Whether a duration may be zero.
#[derive(Clone, Copy, PartialEq)]
enum Min {
    Zero,
    Positive,
}

/// One notebook as read, before defaults and paths are applied.
struct RawNotebook {
    prefix: String,
    line: Option<usize>,
    name: Option<(String, Option<usize>)>,
    path: Option<(String, Option<usize>)>,
    settings: Partial,
}

struct Walker<'t> {
    text: &'t str,
    errors: Vec<ConfigError>,
}

impl Walker<'_> {
    fn line(&self, span: Range<usize>) -> Option<usize> {
        // The root table and some implicit tables carry an empty span at 0.
        if span.is_empty() && span.start == 0 {
            return None;
        }
        let before = self.text.as_bytes().get(..span.start)?;
        Some(before.iter().filter(|b| **b == b'\n').count() + 1)
    }

    fn err(&mut self, key: impl Into<String>, line: Option<usize>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.into(),
            line,
            message: message.into(),
        });
    }

    fn unknown(&mut self, key: &str, name: &Spanned<std::borrow::Cow<'_, str>>, known: &[&str]) {
        let line = self.line(name.span());
        let mut message = "unknown key".to_string();
        if let Some(best) = closest(name.get_ref(), known) {
            message.push_str(&format!("; did you mean {best:?}?"));
        } else {
            message.push_str(&format!("; expected one of: {}", known.join(", ")));
        }
        self.err(key, line, message);
    }

    fn type_error(&mut self, key: &str, v: &Item<'_>, expected: &str) {
        let line = self.line(v.span());
        let found = v.get_ref().type_str();
        self.err(key, line, format!("expected {expected}, found {found}"));
    }

    fn string(&mut self, key: &str, v: &Item<'_>) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.type_error(key, v, "a string");
                None
            }
        }
    }

    fn nonempty(&mut self, key: &str, v: &Item<'_>) -> Option<String> {
        let s = self.string(key, v)?;
        if s.trim().is_empty() {
            let line = self.line(v.span());
            self.err(key, line, "must not be empty");
            return None;
        }
        Some(s)
    }

    fn boolean(&mut self, key: &str, v: &Item<'_>) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_error(key, v, "true or false");
                None
            }
        }
    }

    fn duration(&mut self, key: &str, v: &Item<'_>, min: Min) -> Option<Duration> {
        let DeValue::String(s) = v.get_ref() else {
            self.type_error(key, v, "a duration string such as \"2s\"");
            return None;
        };
        let line = self.line(v.span());
        match parse_duration(s) {
            Ok(d) if d.is_zero() && min == Min::Positive => {
                self.err(key, line, "must be greater than 0");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.err(key, line, e);
                None
            }
        }
    }

    fn size(&mut self, key: &str, v: &Item<'_>) -> Option<u64> {
        let line = self.line(v.span());
        let parsed = match v.get_ref() {
            DeValue::String(s) => parse_size(s),
            DeValue::Integer(i) => u64::from_str_radix(i.as_str(), i.radix()).map_err(|_| {
                format!(
                    "bad size {}: must be a whole number of bytes >= 0",
                    i.as_str()
                )
            }),
            _ => {
                self.type_error(key, v, "a size such as \"50MiB\"");
                return None;
            }
        };
        match parsed {
            Ok(0) => {
                self.err(key, line, "must be greater than 0");
                None
            }
            Ok(n) => Some(n),
            Err(e) => {
                self.err(key, line, e);
                None
            }
        }
    }

    fn message(&mut self, key: &str, v: &Item<'_>) -> Option<String> {
        let s = self.nonempty(key, v)?;
        let mut unknown = Vec::new();
        let mut rest = s.as_str();
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else { break };
            let name = &after[..close];
            if !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !MESSAGE_PLACEHOLDERS.contains(&name)
            {
                unknown.push(format!("{{{name}}}"));
            }
            rest = &after[close + 1..];
        }
        if !unknown.is_empty() {
            let known = MESSAGE_PLACEHOLDERS
                .iter()
                .map(|p| format!("{{{p}}}"))
                .collect::<Vec<_>>()
                .join(", ");
            let line = self.line(v.span());
            self.err(
                key,
                line,
                format!("unknown placeholder {}: use {known}", unknown.join(", ")),
            );
            return None;
        }
        Some(s)
    }

    fn author(&mut self, key: &str, v: &Item<'_>) -> Option<String> {
        let s = self.nonempty(key, v)?;
        if s.contains(['<', '>', '\n', '\r']) {
            let line = self.line(v.span());
            self.err(
                key,
                line,
                "must not contain '<', '>' or a line break (git refuses them)",
            );
            return None;
        }
        Some(s)
    }

    fn ignore(&mut self, key: &str, v: &Item<'_>) -> Option<Vec<String>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.type_error(key, v, "an array of glob strings");
            return None;
        };
        let mut globs = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let ikey = format!("{key}[{}]", i + 1);
            let Some(glob) = self.nonempty(&ikey, item) else {
                ok = false;
                continue;
            };
            if let Err(e) = crate::filter::PathFilter::new(std::slice::from_ref(&glob)) {
                let line = self.line(item.span());
                self.err(ikey, line, format!("bad glob {glob:?}: {}", e.source));
                ok = false;
                continue;
            }
            globs.push(glob);
        }
        ok.then_some(globs)
    }

    /// A git remote or branch name: no spaces, no leading `-`.
    fn ref_name(&mut self, key: &str, v: &Item<'_>) -> Option<String> {
        let s = self.nonempty(key, v)?;
        if s.starts_with('-') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            let line = self.line(v.span());
            self.err(
                key,
                line,
                format!("invalid name {s:?}: no spaces, no leading '-'"),
            );
            return None;
        }
        Some(s)
    }

    fn sync(&mut self, key: &str, v: &Item<'_>) -> Option<SyncSetting> {
        let table = match v.get_ref() {
            DeValue::Boolean(false) => return Some(SyncSetting::Off),
            DeValue::Boolean(true) => return Some(SyncSetting::On(PartialSync::default())),
            DeValue::Table(t) => t,
            _ => {
                self.type_error(key, v, "a table (or false to turn sync off)");
                return None;
            }
        };
        let mut s = PartialSync::default();
        for (k, val) in table.iter() {
            let full = format!("{key}.{}", k.get_ref());
            match k.get_ref().as_ref() {
                "remote" => s.remote = self.ref_name(&full, val),
                "branch" => s.branch = self.ref_name(&full, val),
                "push" => s.push = self.boolean(&full, val),
                "push_delay" => s.push_delay = self.duration(&full, val, Min::Zero),
                "pull_interval" => s.pull_interval = self.duration(&full, val, Min::Zero),
                _ => self.unknown(&full, k, SYNC_KEYS),
            }
        }
        Some(SyncSetting::On(s))
    }

    /// Reads `key` into `p` when it is a `[defaults]` key; false otherwise.
    fn setting(&mut self, prefix: &str, key: &str, v: &Item<'_>, p: &mut Partial) -> bool {
        let full = format!("{prefix}.{key}");
        match key {
            "debounce" => p.debounce = self.duration(&full, v, Min::Zero),
            "max_delay" => p.max_delay = self.duration(&full, v, Min::Positive),
            "max_file_size" => p.max_file_size = self.size(&full, v),
            "message" => p.message = self.message(&full, v),
            "author_name" => p.author_name = self.author(&full, v),
            "author_email" => p.author_email = self.author(&full, v),
            "ignore" => p.ignore = self.ignore(&full, v),
            "init" => p.init = self.boolean(&full, v),
            "sync" => p.sync = self.sync(&full, v),
            _ => return false,
        }
        true
    }

    fn table<'a, 'i>(&mut self, key: &str, v: &'a Item<'i>) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.type_error(key, v, "a table");
                None
            }
        }
    }

    fn defaults(&mut self, v: &Item<'_>) -> Partial {
        let mut p = Partial::default();
        if let Some(table) = self.table("defaults", v) {
            for (k, val) in table.iter() {
                if !self.setting("defaults", k.get_ref(), val, &mut p) {
                    self.unknown(&format!("defaults.{}", k.get_ref()), k, SETTING_KEYS);
                }
            }
        }
        p
    }

    fn lock(&mut self, v: &Item<'_>) -> LockSettings {
        let mut lock = LockSettings::default();
        if let Some(table) = self.table("lock", v) {
            for (k, val) in table.iter() {
                let full = format!("lock.{}", k.get_ref());
                match k.get_ref().as_ref() {
                    "timeout" => {
                        if let Some(d) = self.duration(&full, val, Min::Zero) {
                            lock.timeout = d;
                        }
                    }
                    "max_hold" => {
                        if let Some(d) = self.duration(&full, val, Min::Positive) {
                            lock.max_hold = d;
                        }
                    }
                    _ => self.unknown(&full, k, LOCK_KEYS),
                }
            }
        }
        lock
    }

    fn notebooks(&mut self, v: &Item<'_>) -> Vec<RawNotebook> {
        let DeValue::Array(items) = v.get_ref() else {
            let line = self.line(v.span());
            let found = v.get_ref().type_str();
            self.err(
                "notebook",
                line,
                format!("expected an array of tables (write [[notebook]]), found {found}"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let index_key = format!("notebook[{}]", i + 1);
            let Some(table) = self.table(&index_key, item) else {
                continue;
            };
            let line = self.line(item.span());
            let mut raw = RawNotebook {
                prefix: index_key.clone(),
                line,
                name: None,
                path: None,
                settings: Partial::default(),
            };
            // Name first: a valid name makes every other key easier to find.
            match table.get("name") {
                None => self.err(
                    format!("{index_key}.name"),
                    line,
                    "missing (every notebook needs a name)",
                ),
                Some(nv) => {
                    let key = format!("{index_key}.name");
                    if let Some(name) = self.string(&key, nv) {
                        let nline = self.line(nv.span());
                        match check_name(&name) {
                            Ok(()) => {
                                raw.prefix = format!("notebook {name:?}");
                                raw.name = Some((name, nline));
                            }
                            Err(e) => self.err(key, nline, e),
                        }
                    }
                }
            }
            if !table.contains_key("path") {
                let key = format!("{}.path", raw.prefix);
                self.err(key, line, "missing (every notebook needs a path)");
            }
            let prefix = raw.prefix.clone();
            for (k, val) in table.iter() {
                match k.get_ref().as_ref() {
                    "name" => {}
                    "path" => {
                        let key = format!("{prefix}.path");
                        if let Some(p) = self.string(&key, val) {
                            raw.path = Some((p, self.line(val.span())));
                        }
                    }
                    other => {
                        if !self.setting(&prefix, other, val, &mut raw.settings) {
                            let known: Vec<&str> = NOTEBOOK_ONLY_KEYS
                                .iter()
                                .chain(SETTING_KEYS)
                                .copied()
                                .collect();
                            self.unknown(&format!("{prefix}.{other}"), k, &known);
                        }
                    }
                }
            }
            out.push(raw);
        }
        out
    }
}

/// Checks a notebook name: `[A-Za-z0-9._-]+`, and not `.` or `..` (which mean
/// paths on the command line).
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if name == "." || name == ".." {
        return Err(format!(
            "invalid name {name:?}: \".\" and \"..\" mean paths on the command line"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!(
            "invalid name {name:?}: use only letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// The known key closest to `word` (a likely typo), if any is close.
fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn parse_with(text: &str, file: Option<&Path>, env: &Env<'_>) -> Result<Config, ConfigErrors> {
    let root = DeTable::parse(text).map_err(|e| syntax_error(text, &e))?;
    let mut w = Walker {
        text,
        errors: Vec::new(),
    };

    let file_abs = file.map(|f| match (&env.cwd, f.is_absolute()) {
        (Some(cwd), false) => normalize(&cwd.join(f)),
        _ => f.to_path_buf(),
    });
    // Relative paths in the file are relative to its folder.
    let base: Option<PathBuf> = match &file_abs {
        Some(f) if f.is_absolute() => f.parent().map(Path::to_path_buf),
        _ => env.cwd.clone(),
    };

    let mut socket_raw = None;
    let mut defaults = Partial::default();
    let mut lock = LockSettings::default();
    let mut raw_notebooks = Vec::new();
    for (k, v) in root.get_ref().iter() {
        match k.get_ref().as_ref() {
            "socket" => socket_raw = w.nonempty("socket", v).map(|s| (s, w.line(v.span()))),
            "defaults" => defaults = w.defaults(v),
            "lock" => lock = w.lock(v),
            "notebook" => raw_notebooks = w.notebooks(v),
            other => w.unknown(other, k, ROOT_KEYS),
        }
    }

    let socket = match socket_raw {
        None => default_socket_path_with(env),
        Some((raw, line)) => match resolve_path(&raw, base.as_deref(), env) {
            Ok(p) if p.as_os_str().len() > MAX_SOCKET_PATH => {
                w.err(
                    "socket",
                    line,
                    format!(
                        "{} is {} bytes long; unix socket paths are limited to {MAX_SOCKET_PATH}: choose a shorter path",
                        p.display(),
                        p.as_os_str().len()
                    ),
                );
                p
            }
            Ok(p) if p.is_dir() => {
                w.err("socket", line, format!("{} is a directory", p.display()));
                p
            }
            Ok(p) => p,
            Err(e) => {
                w.err("socket", line, e);
                PathBuf::new()
            }
        },
    };

    let mut notebooks = Vec::new();
    // name -> line of its first use; real path -> (prefix, line) of its first use.
    let mut names: HashMap<String, Option<usize>> = HashMap::new();
    let mut paths: HashMap<PathBuf, (String, Option<usize>)> = HashMap::new();
    for raw in raw_notebooks {
        let s = &raw.settings;
        let d = &defaults;
        let init = s.init.or(d.init).unwrap_or(false);
        let sync = match (&s.sync, &d.sync) {
            (Some(SyncSetting::Off), _) | (None, None | Some(SyncSetting::Off)) => None,
            (Some(SyncSetting::On(mine)), Some(SyncSetting::On(base))) => {
                Some(mine.over(base).resolve())
            }
            (Some(SyncSetting::On(only)), _) | (None, Some(SyncSetting::On(only))) => {
                Some(only.clone().resolve())
            }
        };

        if let Some((name, line)) = &raw.name {
            match names.get(name) {
                Some(first) => {
                    let at = first.map(|l| format!(" at line {l}")).unwrap_or_default();
                    w.err(
                        format!("{}.name", raw.prefix),
                        *line,
                        format!("duplicate name {name:?} (first used{at})"),
                    );
                }
                None => {
                    names.insert(name.clone(), *line);
                }
            }
        }

        let mut path = None;
        if let Some((raw_path, line)) = &raw.path {
            let key = format!("{}.path", raw.prefix);
            match resolve_path(raw_path, base.as_deref(), env) {
                Err(e) => w.err(key, *line, e),
                Ok(p) => {
                    match std::fs::metadata(&p) {
                        Ok(m) if !m.is_dir() => w.err(
                            key.clone(),
                            *line,
                            format!("{} is not a directory", p.display()),
                        ),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            if !init {
                                w.err(
                                    key.clone(),
                                    *line,
                                    format!(
                                        "folder {} does not exist: create it, or set init = true",
                                        p.display()
                                    ),
                                );
                            }
                        }
                        Err(e) => w.err(
                            key.clone(),
                            *line,
                            format!("cannot access {}: {e}", p.display()),
                        ),
                    }
                    match paths.get(&p) {
                        Some((other, other_line)) => {
                            let at = other_line
                                .map(|l| format!(" at line {l}"))
                                .unwrap_or_default();
                            w.err(
                                key,
                                *line,
                                format!("same folder as {other}{at}: both are {}", p.display()),
                            );
                        }
                        None => {
                            paths.insert(p.clone(), (raw.prefix.clone(), raw.line));
                        }
                    }
                    path = Some(p);
                }
            }
        }

        if let (Some((name, _)), Some(path)) = (raw.name, path) {
            notebooks.push(NotebookConfig {
                name,
                path,
                debounce: s.debounce.or(d.debounce).unwrap_or(DEFAULT_DEBOUNCE),
                max_delay: s.max_delay.or(d.max_delay).unwrap_or(DEFAULT_MAX_DELAY),
                max_file_size: s
                    .max_file_size
                    .or(d.max_file_size)
                    .unwrap_or(DEFAULT_MAX_FILE_SIZE),
                message: s
                    .message
                    .clone()
                    .or_else(|| d.message.clone())
                    .unwrap_or_else(|| DEFAULT_MESSAGE.to_string()),
                author_name: s.author_name.clone().or_else(|| d.author_name.clone()),
                author_email: s.author_email.clone().or_else(|| d.author_email.clone()),
                ignore: s
                    .ignore
                    .clone()
                    .or_else(|| d.ignore.clone())
                    .unwrap_or_default(),
                init,
                sync,
            });
        }
    }

    if !w.errors.is_empty() {
        let mut errors = w.errors;
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        return Err(ConfigErrors(errors));
    }
    Ok(Config {
        file: file_abs,
        socket,
        lock,
        notebooks,
    })
}

fn default_socket_path_with(env: &Env<'_>) -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    socket_path_from(env.var, uid)
}

fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigErrors {
    let (line, column) = match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let before = text.get(..start).unwrap_or("");
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
            let column = before.get(line_start..).unwrap_or("").chars().count() + 1;
            (Some(line), Some(column))
        }
        None => (None, None),
    };
    let detail = e.message().trim().replace('\n', "; ");
    let message = match column {
        Some(c) => format!("invalid toml at column {c}: {detail}"),
        None => format!("invalid toml: {detail}"),
    };
    ConfigError {
        key: String::new(),
        line,
        message,
    }
    .into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A temp folder (canonical) holding `config.toml`'s future location.
    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().canonicalize().unwrap();
            Fixture { _dir: dir, root }
        }

        fn mkdir(&self, rel: &str) -> PathBuf {
            let p = self.root.join(rel);
            std::fs::create_dir_all(&p).unwrap();
            p
        }

        fn file(&self) -> PathBuf {
            self.root.join("config.toml")
        }

        /// Parses with HOME = root/home and the given extra variables.
        fn parse(&self, text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
            let mut map: HashMap<String, OsString> = HashMap::new();
            map.insert("HOME".into(), self.root.join("home").into());
            map.insert("XDG_RUNTIME_DIR".into(), "/run/user/1000".into());
            for (k, v) in vars {
                map.insert(k.to_string(), v.into());
            }
            let var = |k: &str| map.get(k).cloned();
            let env = Env {
                var: &var,
                cwd: Some(self.root.join("cwd")),
            };
            parse_with(text, Some(&self.file()), &env)
        }

        fn ok(&self, text: &str) -> Config {
            match self.parse(text, &[]) {
                Ok(c) => c,
                Err(e) => panic!("expected a valid config, got:\n{e}"),
            }
        }

        fn errs(&self, text: &str) -> Vec<ConfigError> {
            match self.parse(text, &[]) {
                Ok(c) => panic!("expected errors, got {c:#?}"),
                Err(e) => e.0,
            }
        }
    }

    #[test]
    fn full_config_with_defaults_overrides_and_sync_merge() {
        let fx = Fixture::new();
        let a = fx.mkdir("a");
        let b = fx.mkdir("b");
        let text = r#"
socket = "/run/x/gitlockd.sock"

[defaults]
debounce = "1s"
max_delay = "3m"
max_file_size = "10MiB"
message = "auto {notebook}: {summary} ({count}, {date})"
author_name = "Ann"
author_email = "ann@example.com"
ignore = ["*.log", "build/"]
init = false

[defaults.sync]
remote = "backup"
push_delay = "10s"

[lock]
timeout = "0s"
max_hold = "2h"

[[notebook]]
name = "a"
path = "a"

[[notebook]]
name = "b.two_3-x"
path = "b"
debounce = "0ms"
max_file_size = 1024
ignore = []
author_name = "Bob"
init = true

[notebook.sync]
branch = "main"
push = false
pull_interval = "0s"
"#;
        let cfg = fx.ok(text);
        let a_expected = NotebookConfig {
            name: "a".into(),
            path: a,
            debounce: Duration::from_secs(1),
            max_delay: Duration::from_secs(180),
            max_file_size: 10 << 20,
            message: "auto {notebook}: {summary} ({count}, {date})".into(),
            author_name: Some("Ann".into()),
            author_email: Some("ann@example.com".into()),
            ignore: vec!["*.log".into(), "build/".into()],
            init: false,
            sync: Some(SyncConfig {
                remote: "backup".into(),
                branch: None,
                push: true,
                push_delay: Duration::from_secs(10),
                pull_interval: DEFAULT_PULL_INTERVAL,
            }),
        };
        let b_expected = NotebookConfig {
            name: "b.two_3-x".into(),
            path: b,
            debounce: Duration::ZERO,
            max_file_size: 1024,
            ignore: vec![],
            author_name: Some("Bob".into()),
            init: true,
            sync: Some(SyncConfig {
                remote: "backup".into(),
                branch: Some("main".into()),
                push: false,
                push_delay: Duration::from_secs(10),
                pull_interval: Duration::ZERO,
            }),
            ..a_expected.clone()
        };
        assert_eq!(
            cfg,
            Config {
                file: Some(fx.file()),
                socket: PathBuf::from("/run/x/gitlockd.sock"),
                lock: LockSettings {
                    timeout: Duration::ZERO,
                    max_hold: Duration::from_secs(7200),
                },
                notebooks: vec![a_expected.clone(), b_expected],
            }
        );
        assert!(cfg.notebooks[0].same_runtime_settings(&a_expected));
        assert!(!cfg.notebooks[0].same_runtime_settings(&cfg.notebooks[1]));
        assert_eq!(cfg.notebook("a"), Some(&a_expected));
    }

    #[test]
    fn built_in_defaults() {
        let fx = Fixture::new();
        let a = fx.mkdir("a");
        let cfg = fx.ok("[[notebook]]\nname = \"a\"\npath = \"a\"\n");
        assert_eq!(cfg.socket, PathBuf::from("/run/user/1000/gitlockd.sock"));
        assert_eq!(cfg.lock, LockSettings::default());
        assert_eq!(cfg.lock.timeout, Duration::from_secs(30));
        assert_eq!(cfg.lock.max_hold, Duration::from_secs(3600));
        assert_eq!(
            cfg.notebooks,
            vec![NotebookConfig {
                name: "a".into(),
                path: a,
                debounce: Duration::from_secs(2),
                max_delay: Duration::from_secs(120),
                max_file_size: 50 * 1024 * 1024,
                message: "gitlockd: {summary}".into(),
                author_name: None,
                author_email: None,
                ignore: vec![],
                init: false,
                sync: None,
            }]
        );
        // An empty file is valid: no notebooks.
        assert!(fx.ok("").notebooks.is_empty());
    }

    #[test]
    fn sync_table_combinations() {
        let fx = Fixture::new();
        fx.mkdir("a");
        let nb = |extra: &str| format!("[[notebook]]\nname = \"a\"\npath = \"a\"\n{extra}\n");
        // Only the notebook has sync: defaults fill the rest.
        let cfg = fx.ok(&nb("[notebook.sync]\nremote = \"r\""));
        assert_eq!(
            cfg.notebooks[0].sync,
            Some(SyncConfig {
                remote: "r".into(),
                ..SyncConfig::default()
            })
        );
        // `sync = true` enables with defaults; `sync = false` disables an inherited one.
        let cfg = fx.ok(&nb("sync = true"));
        assert_eq!(cfg.notebooks[0].sync, Some(SyncConfig::default()));
        let cfg = fx.ok(&format!(
            "[defaults.sync]\npush = false\n{}",
            nb("sync = false")
        ));
        assert_eq!(cfg.notebooks[0].sync, None);
        // Only defaults have sync: inherited.
        let cfg = fx.ok(&format!("[defaults.sync]\npush = false\n{}", nb("")));
        assert_eq!(
            cfg.notebooks[0].sync,
            Some(SyncConfig {
                push: false,
                ..SyncConfig::default()
            })
        );
    }

    /// Each error kind, alone: (config text, key, part of the message, line).
    #[test]
    fn each_error_kind() {
        let fx = Fixture::new();
        fx.mkdir("a");
        fx.mkdir("b");
        std::fs::write(fx.root.join("plain"), "x").unwrap();
        let nb = "[[notebook]]\nname = \"a\"\npath = \"a\"\n";
        let cases: Vec<(String, &str, &str, Option<usize>)> = vec![
            ("bogus = 1".into(), "bogus", "unknown key", Some(1)),
            (
                "[defaults]\ndebounse = \"1s\"".into(),
                "defaults.debounse",
                "did you mean \"debounce\"",
                Some(2),
            ),
            (
                "[lock]\nwait = \"1s\"".into(),
                "lock.wait",
                "unknown key",
                Some(2),
            ),
            (
                format!("{nb}colour = 1"),
                "notebook \"a\".colour",
                "unknown key",
                Some(4),
            ),
            (
                format!("{nb}[notebook.sync]\nremote = \"o\"\nfoo = 1"),
                "notebook \"a\".sync.foo",
                "unknown key",
                Some(6),
            ),
            (
                "[defaults.sync]\npsh = true".into(),
                "defaults.sync.psh",
                "did you mean \"push\"",
                Some(2),
            ),
            (
                "socket = 5".into(),
                "socket",
                "expected a string, found integer",
                Some(1),
            ),
            (
                "defaults = 5".into(),
                "defaults",
                "expected a table",
                Some(1),
            ),
            (
                "[notebook]\nname = \"a\"".into(),
                "notebook",
                "[[notebook]]",
                Some(1),
            ),
            (
                "[lock]\ntimeout = 30".into(),
                "lock.timeout",
                "expected a duration string",
                Some(2),
            ),
            (
                "[lock]\nmax_hold = \"0s\"".into(),
                "lock.max_hold",
                "greater than 0",
                Some(2),
            ),
            (
                "[defaults]\ndebounce = \"2x\"".into(),
                "defaults.debounce",
                "bad duration \"2x\"",
                Some(2),
            ),
            (
                "[defaults]\nmax_delay = \"0s\"".into(),
                "defaults.max_delay",
                "greater than 0",
                Some(2),
            ),
            (
                "[defaults]\nmax_file_size = \"5XB\"".into(),
                "defaults.max_file_size",
                "unknown unit",
                Some(2),
            ),
            (
                "[defaults]\nmax_file_size = -1".into(),
                "defaults.max_file_size",
                "bad size",
                Some(2),
            ),
            (
                "[defaults]\nmax_file_size = \"0B\"".into(),
                "defaults.max_file_size",
                "greater than 0",
                Some(2),
            ),
            (
                "[defaults]\ninit = \"yes\"".into(),
                "defaults.init",
                "expected true or false, found string",
                Some(2),
            ),
            (
                "[defaults]\nignore = \"*.log\"".into(),
                "defaults.ignore",
                "expected an array",
                Some(2),
            ),
            (
                "[defaults]\nignore = [\"ok\", 3]".into(),
                "defaults.ignore[2]",
                "expected a string",
                Some(2),
            ),
            (
                "[defaults]\nignore = [\"a[\"]".into(),
                "defaults.ignore[1]",
                "bad glob",
                Some(2),
            ),
            (
                "[defaults]\nmessage = \"x {sumary}\"".into(),
                "defaults.message",
                "unknown placeholder {sumary}",
                Some(2),
            ),
            (
                "[defaults]\nmessage = \"  \"".into(),
                "defaults.message",
                "must not be empty",
                Some(2),
            ),
            (
                "[defaults]\nauthor_name = \"A <a>\"".into(),
                "defaults.author_name",
                "must not contain",
                Some(2),
            ),
            (
                "[defaults]\nsync = 3".into(),
                "defaults.sync",
                "expected a table",
                Some(2),
            ),
            (
                "[defaults.sync]\nbranch = \"-x\"".into(),
                "defaults.sync.branch",
                "invalid name",
                Some(2),
            ),
            (
                "[[notebook]]\npath = \"a\"".into(),
                "notebook[1].name",
                "missing",
                Some(1),
            ),
            (
                "[[notebook]]\nname = \"a\"".into(),
                "notebook \"a\".path",
                "missing",
                Some(1),
            ),
            (
                "[[notebook]]\nname = \"a b\"\npath = \"a\"".into(),
                "notebook[1].name",
                "invalid name \"a b\"",
                Some(2),
            ),
            (
                "[[notebook]]\nname = \"..\"\npath = \"a\"".into(),
                "notebook[1].name",
                "invalid name",
                Some(2),
            ),
            (
                "[[notebook]]\nname = 7\npath = \"a\"".into(),
                "notebook[1].name",
                "expected a string",
                Some(2),
            ),
            (
                format!("{nb}[[notebook]]\nname = \"a\"\npath = \"b\""),
                "notebook \"a\".name",
                "duplicate name \"a\" (first used at line 2)",
                Some(5),
            ),
            (
                format!("{nb}[[notebook]]\nname = \"b\"\npath = \"./a/../a/\""),
                "notebook \"b\".path",
                "same folder as notebook \"a\" at line 1",
                Some(6),
            ),
            (
                "[[notebook]]\nname = \"m\"\npath = \"missing\"".into(),
                "notebook \"m\".path",
                "does not exist: create it, or set init = true",
                Some(3),
            ),
            (
                "[[notebook]]\nname = \"m\"\npath = \"plain\"".into(),
                "notebook \"m\".path",
                "is not a directory",
                Some(3),
            ),
            (
                "[[notebook]]\nname = \"m\"\npath = \"$NOPE/x\"".into(),
                "notebook \"m\".path",
                "undefined environment variable $NOPE",
                Some(3),
            ),
            (
                "[[notebook]]\nname = \"m\"\npath = \"~bob/x\"".into(),
                "notebook \"m\".path",
                "only ~ and ~/",
                Some(3),
            ),
            (
                "socket = \"${NOPE}/s\"".into(),
                "socket",
                "undefined environment variable $NOPE",
                Some(1),
            ),
            (
                format!("socket = \"/{}\"", "x".repeat(120)),
                "socket",
                "limited to 107",
                Some(1),
            ),
            (
                "notebook = [1]".into(),
                "notebook[1]",
                "expected a table",
                Some(1),
            ),
        ];
        for (text, key, msg, line) in cases {
            let errors = fx.errs(&text);
            assert_eq!(errors.len(), 1, "for {text:?}: {errors:#?}");
            let e = &errors[0];
            assert_eq!(e.key, key, "for {text:?}: {e}");
            assert!(e.message.contains(msg), "for {text:?}: {e}");
            assert_eq!(e.line, line, "for {text:?}: {e}");
            assert!(
                e.message.starts_with(|c: char| !c.is_uppercase()),
                "lowercase: {e}"
            );
        }
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let fx = Fixture::new();
        fx.mkdir("a");
        let text = r#"
typo = 1
[defaults]
debounce = "fast"
[lock]
timeout = 3
[[notebook]]
name = "a"
path = "a"
max_delay = "0s"
[[notebook]]
path = "nowhere"
[[notebook]]
name = "a"
path = "a"
"#;
        let errors = fx.errs(text);
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "typo",
                "defaults.debounce",
                "lock.timeout",
                "notebook \"a\".max_delay",
                "notebook[2].name",
                "notebook[2].path",
                "notebook \"a\".name",
                "notebook \"a\".path",
            ],
            "{}",
            ConfigErrors(errors.clone())
        );
        // Sorted by line.
        let lines: Vec<usize> = errors.iter().map(|e| e.line.unwrap()).collect();
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted);
        let shown = ConfigErrors(errors).to_string();
        assert_eq!(shown.lines().count(), 8);
        assert!(
            shown.contains("defaults.debounce (line 4): bad duration \"fast\""),
            "{shown}"
        );
    }

    #[test]
    fn syntax_error_is_one_error_with_line_and_column() {
        let fx = Fixture::new();
        let errors = fx.errs("[defaults]\ndebounce = \"2s\"\nmax_delay = = 3\n");
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].key, "");
        assert_eq!(errors[0].line, Some(3));
        assert!(
            errors[0].message.starts_with("invalid toml at column "),
            "{}",
            errors[0]
        );
        assert!(errors[0].to_string().starts_with("line 3: invalid toml"));
        // A duplicate key is a syntax error too.
        let errors = fx.errs("socket = \"/a\"\nsocket = \"/b\"\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, Some(2));
    }

    #[test]
    fn tilde_and_variable_expansion() {
        let fx = Fixture::new();
        let home = fx.mkdir("home");
        let notes = fx.mkdir("home/notes");
        let data = fx.mkdir("data/x");
        let vars = [("DATA", fx.root.join("data").to_str().unwrap().to_string())];
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let text = r#"
socket = "~/s.sock"
[[notebook]]
name = "n"
path = "~/notes"
[[notebook]]
name = "h"
path = "~"
[[notebook]]
name = "d"
path = "$DATA/x"
[[notebook]]
name = "e"
path = "${DATA}/x/../y$"
init = true
"#;
        let cfg = fx.parse(text, &vars).unwrap();
        assert_eq!(cfg.socket, home.join("s.sock"));
        assert_eq!(cfg.notebooks[0].path, notes);
        assert_eq!(cfg.notebooks[1].path, home);
        assert_eq!(cfg.notebooks[2].path, data);
        assert_eq!(cfg.notebooks[3].path, fx.root.join("data/y$"));
    }

    #[test]
    fn expand_table() {
        let map: HashMap<&str, &str> = [("A", "/a"), ("HOME", "/h"), ("E", "")].into();
        let var = |k: &str| map.get(k).map(OsString::from);
        let cases = [
            ("~", Ok("/h")),
            ("~/x", Ok("/h/x")),
            ("x/~", Ok("x/~")),
            ("$A/b", Ok("/a/b")),
            ("${A}b", Ok("/ab")),
            ("$Ab", Err("$Ab")),
            ("a$E/b", Ok("a/b")),
            ("cost$5", Ok("cost$5")),
            ("a$/b$", Ok("a$/b$")),
            ("$X $Y $X", Err("undefined environment variable $X, $Y")),
            ("${A", Err("unclosed")),
            ("${A-B}", Err("bad variable name")),
            ("~u/x", Err("only ~ and ~/")),
        ];
        for (raw, want) in cases {
            match (expand(raw, &var), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, PathBuf::from(w), "{raw}"),
                (Err(got), Err(w)) => assert!(got.contains(w), "{raw}: {got}"),
                (got, w) => panic!("{raw}: got {got:?}, want {w:?}"),
            }
        }
        let nohome = |_: &str| None;
        assert!(expand("~/x", &nohome)
            .unwrap_err()
            .contains("$HOME is not set"));
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let fx = Fixture::new();
        let sub = fx.mkdir("sub/nb");
        let cfg =
            fx.ok("socket = \"run/s.sock\"\n[[notebook]]\nname = \"a\"\npath = \"sub/./nb/\"\n");
        assert_eq!(cfg.notebooks[0].path, sub);
        assert_eq!(cfg.socket, fx.root.join("run/s.sock"));

        // Without a file: against the current directory.
        let cwd = fx.mkdir("cwd");
        let inner = fx.mkdir("cwd/inner");
        let var = |_: &str| None;
        let env = Env {
            var: &var,
            cwd: Some(cwd.clone()),
        };
        let cfg = parse_with("[[notebook]]\nname = \"a\"\npath = \"inner\"\n", None, &env).unwrap();
        assert_eq!(cfg.notebooks[0].path, inner);
        assert_eq!(cfg.file, None);

        // A relative config file name is made absolute against the cwd.
        let cfg = parse_with("", Some(Path::new("conf/c.toml")), &env).unwrap();
        assert_eq!(cfg.file, Some(cwd.join("conf/c.toml")));
    }

    #[test]
    fn symlinks_are_resolved_and_two_spellings_of_one_folder_clash() {
        let fx = Fixture::new();
        let real = fx.mkdir("real");
        std::os::unix::fs::symlink(&real, fx.root.join("link")).unwrap();
        let cfg = fx.ok("[[notebook]]\nname = \"a\"\npath = \"link\"\n");
        assert_eq!(cfg.notebooks[0].path, real);

        let errors = fx.errs(
            "[[notebook]]\nname = \"a\"\npath = \"real\"\n[[notebook]]\nname = \"b\"\npath = \"link\"\n",
        );
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].key, "notebook \"b\".path");
        assert!(
            errors[0].message.contains(real.to_str().unwrap()),
            "{}",
            errors[0]
        );

        // Missing folders below a symlink clash too (init = true).
        let errors = fx.errs(
            "[defaults]\ninit = true\n[[notebook]]\nname = \"a\"\npath = \"real/new\"\n[[notebook]]\nname = \"b\"\npath = \"link/new\"\n",
        );
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].key, "notebook \"b\".path");
    }

    #[test]
    fn missing_folder_depends_on_init() {
        let fx = Fixture::new();
        let errors = fx.errs("[[notebook]]\nname = \"a\"\npath = \"new/deep\"\n");
        assert_eq!(errors.len(), 1);
        assert!(errors[0]
            .message
            .contains(fx.root.join("new/deep").to_str().unwrap()));

        // init from the notebook or inherited from [defaults]
        for text in [
            "[[notebook]]\nname = \"a\"\npath = \"new/deep\"\ninit = true\n",
            "[defaults]\ninit = true\n[[notebook]]\nname = \"a\"\npath = \"new/deep\"\n",
        ] {
            let cfg = fx.ok(text);
            assert_eq!(cfg.notebooks[0].path, fx.root.join("new/deep"));
            assert!(cfg.notebooks[0].path.is_absolute());
            assert!(cfg.notebooks[0].init);
        }
        // A notebook can turn init back off.
        let errors = fx.errs(
            "[defaults]\ninit = true\n[[notebook]]\nname = \"a\"\npath = \"new\"\ninit = false\n",
        );
        assert_eq!(errors[0].key, "notebook \"a\".path");
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        let ok = [
            ("250ms", ms(250)),
            ("2s", ms(2000)),
            ("5m", ms(300_000)),
            ("1h", ms(3_600_000)),
            ("0s", ms(0)),
            ("0ms", ms(0)),
            (" 2s ", ms(2000)),
            ("1.5s", ms(1500)),
            ("0.25m", ms(15_000)),
            ("1h30m", ms(5_400_000)),
            ("1m 30s", ms(90_000)),
            ("2 s", ms(2000)),
            ("1s500ms", ms(1500)),
        ];
        for (s, want) in ok {
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
        let bad = [
            ("", "empty"),
            ("5", "missing unit"),
            ("2x", "unknown unit \"x\""),
            ("2S", "unknown unit"),
            ("-1s", "negative"),
            ("s", "expected a number"),
            ("1.s", "bad number"),
            ("1.2.3s", "bad number"),
            (".5s", "bad number"),
            ("1.0001s", "precise to the millisecond"),
            ("1d", "unknown unit"),
            ("99999999999999999999999999999999999999999h", "too large"),
            ("1s2", "missing unit"),
        ];
        for (s, want) in bad {
            let e = parse_duration(s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }

    #[test]
    fn sizes() {
        let ok = [
            ("0", 0),
            ("1024", 1024),
            ("100B", 100),
            ("1KiB", 1024),
            ("50MiB", 50 << 20),
            ("50 MiB", 50 << 20),
            ("2GiB", 2 << 30),
            ("1TiB", 1 << 40),
            ("1.5KiB", 1536),
            ("1KB", 1000),
            ("1kB", 1000),
            ("3MB", 3_000_000),
            ("1GB", 1_000_000_000),
        ];
        for (s, want) in ok {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
        let bad = [
            ("", "empty"),
            ("MiB", "expected a number"),
            ("-1", "expected a number"),
            ("5mb", "unknown unit"),
            ("1.5", "whole number"),
            ("1.5B", "whole number"),
            ("99999999999TiB", "too large"),
        ];
        for (s, want) in bad {
            let e = parse_size(s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for (d, s) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(2), "2s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::from_secs(90_000), "25h"),
        ] {
            assert_eq!(format_duration(d), s);
            assert_eq!(parse_duration(s), Ok(d));
        }
        for (n, s) in [
            (0, "0B"),
            (1000, "1000B"),
            (1024, "1KiB"),
            (50 << 20, "50MiB"),
            (1 << 30, "1GiB"),
        ] {
            assert_eq!(format_size(n), s);
            assert_eq!(parse_size(s), Ok(n));
        }
    }

    #[test]
    fn default_paths() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let cases: [(&[(&str, &str)], &str); 5] = [
            (
                &[("XDG_RUNTIME_DIR", "/run/user/7")],
                "/run/user/7/gitlockd.sock",
            ),
            (
                &[("XDG_RUNTIME_DIR", ""), ("TMPDIR", "/var/tmp")],
                "/var/tmp/gitlockd-7/gitlockd.sock",
            ),
            (
                &[("XDG_RUNTIME_DIR", "rel")],
                "/tmp/gitlockd-7/gitlockd.sock",
            ),
            (&[("TMPDIR", "")], "/tmp/gitlockd-7/gitlockd.sock"),
            (&[], "/tmp/gitlockd-7/gitlockd.sock"),
        ];
        for (pairs, want) in cases {
            assert_eq!(
                socket_path_from(&vars(pairs), 7),
                PathBuf::from(want),
                "{pairs:?}"
            );
        }
        type Vars = &'static [(&'static str, &'static str)];
        let cases: [(Vars, Option<&str>); 4] = [
            (
                &[("XDG_CONFIG_HOME", "/c"), ("HOME", "/h")],
                Some("/c/gitlockd/config.toml"),
            ),
            (
                &[("XDG_CONFIG_HOME", ""), ("HOME", "/h")],
                Some("/h/.config/gitlockd/config.toml"),
            ),
            (&[("HOME", "/h")], Some("/h/.config/gitlockd/config.toml")),
            (&[], None),
        ];
        for (pairs, want) in cases {
            assert_eq!(
                config_path_from(&vars(pairs)),
                want.map(PathBuf::from),
                "{pairs:?}"
            );
        }
        // The real ones are absolute whatever the environment.
        assert!(default_socket_path().is_absolute());
        assert!(default_config_path().is_absolute());
    }

    #[test]
    fn load_names_the_missing_file() {
        let fx = Fixture::new();
        let missing = fx.root.join("nope.toml");
        let e = load(&missing).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert!(e.to_string().contains(missing.to_str().unwrap()), "{e}");
        assert!(e.to_string().contains("does not exist"), "{e}");

        fx.mkdir("a");
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
