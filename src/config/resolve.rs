//! Stage two: applies `[defaults]` and built-in defaults, resolves paths and
//! checks notebooks against each other, giving the runtime [`Config`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::locations::default_socket_path_with;
use super::paths::{normalize, resolve_path, resolve_socket_path};
use super::walk::{Partial, SyncSetting, Walker, ROOT_KEYS};
use super::{
    Config, ConfigError, ConfigErrors, Env, LockSettings, NotebookConfig, DEFAULT_DEBOUNCE,
    DEFAULT_MAX_DELAY, DEFAULT_MAX_FILE_SIZE, DEFAULT_MESSAGE,
};

/// Longest socket path the kernel accepts (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// [`super::parse`] with the environment and current directory given.
pub(super) fn parse_with(
    text: &str,
    file: Option<&Path>,
    env: &Env<'_>,
) -> Result<Config, ConfigErrors> {
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
        Some((raw, line)) => match resolve_socket_path(&raw, base.as_deref(), env) {
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
                hooks: s.hooks.or(d.hooks).unwrap_or(true),
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
    use std::time::Duration;

    use super::*;
    use crate::config::fixture::Fixture;
    use crate::config::{SyncConfig, DEFAULT_PULL_INTERVAL};

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
hooks = false

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
hooks = true

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
            hooks: false,
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
            hooks: true,
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
                hooks: true,
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
}
