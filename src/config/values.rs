//! The value checks of the walk: what a valid string, duration, size,
//! message, author, glob list and ref name look like, each error naming its key.

use std::time::Duration;

use toml::de::DeValue;

use super::units::{parse_duration, parse_size};
use super::walk::{Item, Walker};
use super::MESSAGE_PLACEHOLDERS;

/// Whether a duration may be zero.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Min {
    Zero,
    Positive,
}

impl Walker<'_> {
    pub(super) fn type_error(&mut self, key: &str, v: &Item<'_>, expected: &str) {
        let line = self.line(v.span());
        let found = v.get_ref().type_str();
        self.err(key, line, format!("expected {expected}, found {found}"));
    }

    pub(super) fn string(&mut self, key: &str, v: &Item<'_>) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.type_error(key, v, "a string");
                None
            }
        }
    }

    pub(super) fn nonempty(&mut self, key: &str, v: &Item<'_>) -> Option<String> {
        let s = self.string(key, v)?;
        if s.trim().is_empty() {
            let line = self.line(v.span());
            self.err(key, line, "must not be empty");
            return None;
        }
        Some(s)
    }

    pub(super) fn boolean(&mut self, key: &str, v: &Item<'_>) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_error(key, v, "true or false");
                None
            }
        }
    }

    pub(super) fn duration(&mut self, key: &str, v: &Item<'_>, min: Min) -> Option<Duration> {
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

    pub(super) fn size(&mut self, key: &str, v: &Item<'_>) -> Option<u64> {
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

    pub(super) fn message(&mut self, key: &str, v: &Item<'_>) -> Option<String> {
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

    pub(super) fn author(&mut self, key: &str, v: &Item<'_>) -> Option<String> {
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

    pub(super) fn ignore(&mut self, key: &str, v: &Item<'_>) -> Option<Vec<String>> {
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
    pub(super) fn ref_name(&mut self, key: &str, v: &Item<'_>) -> Option<String> {
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
}
