//! Stage one: the hand-written walk over the TOML document that checks every
//! key and collects every error instead of stopping at the first.

use std::ops::Range;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::values::Min;
use super::{ConfigError, LockSettings, SyncConfig};

pub(super) const ROOT_KEYS: &[&str] = &["socket", "defaults", "lock", "notebook"];
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
    "hooks",
    "sync",
];
const NOTEBOOK_ONLY_KEYS: &[&str] = &["name", "path"];
const SYNC_KEYS: &[&str] = &["remote", "branch", "push", "push_delay", "pull_interval"];

pub(super) type Item<'i> = Spanned<DeValue<'i>>;

/// `[defaults]` or one notebook's settings, as written (nothing = inherit).
#[derive(Debug, Default, Clone)]
pub(super) struct Partial {
    pub(super) debounce: Option<Duration>,
    pub(super) max_delay: Option<Duration>,
    pub(super) max_file_size: Option<u64>,
    pub(super) message: Option<String>,
    pub(super) author_name: Option<String>,
    pub(super) author_email: Option<String>,
    pub(super) ignore: Option<Vec<String>>,
    pub(super) init: Option<bool>,
    pub(super) hooks: Option<bool>,
    pub(super) sync: Option<SyncSetting>,
}

/// A `sync` key as written.
#[derive(Debug, Clone)]
pub(super) enum SyncSetting {
    /// `sync = false`: no sync, even when `[defaults.sync]` exists.
    Off,
    /// A sync table (or `sync = true`, an empty one).
    On(PartialSync),
}

#[derive(Debug, Default, Clone)]
pub(super) struct PartialSync {
    remote: Option<String>,
    branch: Option<String>,
    push: Option<bool>,
    push_delay: Option<Duration>,
    pull_interval: Option<Duration>,
}

impl PartialSync {
    pub(super) fn over(&self, base: &PartialSync) -> PartialSync {
        PartialSync {
            remote: self.remote.clone().or_else(|| base.remote.clone()),
            branch: self.branch.clone().or_else(|| base.branch.clone()),
            push: self.push.or(base.push),
            push_delay: self.push_delay.or(base.push_delay),
            pull_interval: self.pull_interval.or(base.pull_interval),
        }
    }

    pub(super) fn resolve(self) -> SyncConfig {
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

/// One notebook as read, before defaults and paths are applied.
pub(super) struct RawNotebook {
    pub(super) prefix: String,
    pub(super) line: Option<usize>,
    pub(super) name: Option<(String, Option<usize>)>,
    pub(super) path: Option<(String, Option<usize>)>,
    pub(super) settings: Partial,
}

/// The walk's state: the text (for line numbers) and every error found so far.
pub(super) struct Walker<'t> {
    pub(super) text: &'t str,
    pub(super) errors: Vec<ConfigError>,
}

impl Walker<'_> {
    pub(super) fn line(&self, span: Range<usize>) -> Option<usize> {
        // The root table and some implicit tables carry an empty span at 0.
        if span.is_empty() && span.start == 0 {
            return None;
        }
        let before = self.text.as_bytes().get(..span.start)?;
        Some(before.iter().filter(|b| **b == b'\n').count() + 1)
    }

    pub(super) fn err(
        &mut self,
        key: impl Into<String>,
        line: Option<usize>,
        message: impl Into<String>,
    ) {
        self.errors.push(ConfigError {
            key: key.into(),
            line,
            message: message.into(),
        });
    }

    pub(super) fn unknown(
        &mut self,
        key: &str,
        name: &Spanned<std::borrow::Cow<'_, str>>,
        known: &[&str],
    ) {
        let line = self.line(name.span());
        let mut message = "unknown key".to_string();
        if let Some(best) = closest(name.get_ref(), known) {
            message.push_str(&format!("; did you mean {best:?}?"));
        } else {
            message.push_str(&format!("; expected one of: {}", known.join(", ")));
        }
        self.err(key, line, message);
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
            "hooks" => p.hooks = self.boolean(&full, v),
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

    pub(super) fn defaults(&mut self, v: &Item<'_>) -> Partial {
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

    pub(super) fn lock(&mut self, v: &Item<'_>) -> LockSettings {
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

    pub(super) fn notebooks(&mut self, v: &Item<'_>) -> Vec<RawNotebook> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::fixture::Fixture;

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
}
