//! A temp folder to parse configs in, shared by the config tests.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;

use super::resolve::parse_with;
use super::{Config, ConfigError, ConfigErrors, Env};

/// A temp folder (canonical) holding `config.toml`'s future location.
pub(super) struct Fixture {
    _dir: tempfile::TempDir,
    pub(super) root: PathBuf,
}

impl Fixture {
    pub(super) fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        Fixture { _dir: dir, root }
    }

    pub(super) fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.root.join(rel);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub(super) fn file(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// Parses with HOME = root/home and the given extra variables.
    pub(super) fn parse(&self, text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
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

    pub(super) fn ok(&self, text: &str) -> Config {
        match self.parse(text, &[]) {
            Ok(c) => c,
            Err(e) => panic!("expected a valid config, got:\n{e}"),
        }
    }

    pub(super) fn errs(&self, text: &str) -> Vec<ConfigError> {
        match self.parse(text, &[]) {
            Ok(c) => panic!("expected errors, got {c:#?}"),
            Err(e) => e.0,
        }
    }
}
