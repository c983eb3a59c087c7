//! Where gitlockd looks for its config file and socket when none is named.

use std::ffi::OsString;
use std::path::PathBuf;

use super::Env;

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

/// [`default_socket_path`] with the variables of `env`.
pub(super) fn default_socket_path_with(env: &Env<'_>) -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    socket_path_from(env.var, uid)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
}
