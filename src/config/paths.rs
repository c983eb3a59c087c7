//! Path values: `~` and `$VAR` expansion, then an absolute, canonical path.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use super::Env;

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
pub(super) fn normalize(path: &Path) -> PathBuf {
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
pub(super) fn resolve_path(
    raw: &str,
    base: Option<&Path>,
    env: &Env<'_>,
) -> Result<PathBuf, String> {
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

/// [`resolve_path`] for the socket: its folder is resolved, but a symlink at
/// the socket path itself is kept as such, so binding sees (and refuses) it
/// instead of acting on whatever it points to.
pub(super) fn resolve_socket_path(
    raw: &str,
    base: Option<&Path>,
    env: &Env<'_>,
) -> Result<PathBuf, String> {
    let resolved = resolve_path(raw, base, env)?;
    let expanded = expand(raw, env.var)?;
    let abs = match base {
        Some(base) if !expanded.is_absolute() => base.join(&expanded),
        _ => expanded,
    };
    let norm = normalize(&abs);
    let is_link = std::fs::symlink_metadata(&norm).is_ok_and(|m| m.file_type().is_symlink());
    match (is_link, norm.parent(), norm.file_name()) {
        (true, Some(dir), Some(name)) => Ok(real_path(dir).join(name)),
        _ => Ok(resolved),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::fixture::Fixture;
    use crate::config::resolve::parse_with;

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
    fn a_symlink_at_the_socket_path_is_kept_not_followed() {
        let fx = Fixture::new();
        fx.mkdir("sub/nb");
        let run = fx.mkdir("run");
        let target = fx.root.join("victim.txt");
        std::fs::write(&target, "x").unwrap();
        std::os::unix::fs::symlink(&target, run.join("s.sock")).unwrap();
        let cfg = fx.ok("socket = \"run/s.sock\"\n[[notebook]]\nname = \"a\"\npath = \"sub/nb\"\n");
        assert_eq!(cfg.socket, run.join("s.sock"));
        // A symlinked folder is still resolved.
        std::os::unix::fs::symlink(&run, fx.root.join("alias")).unwrap();
        let cfg =
            fx.ok("socket = \"alias/t.sock\"\n[[notebook]]\nname = \"a\"\npath = \"sub/nb\"\n");
        assert_eq!(cfg.socket, run.join("t.sock"));
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
}
