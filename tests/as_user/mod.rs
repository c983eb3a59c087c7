//! Running the daemon (and asking it) as another user than root: root
//! reads every file whatever its mode, and inotify instances are counted per
//! user, so some failures only exist for an unprivileged daemon.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use super::support::{skip, wait_for, Daemon, Repo, Sandbox};

/// An unprivileged user for the daemon: root reads files whatever their
/// mode, so an unreadable file needs a daemon that is not root.
pub const NOBODY: u32 = 65534;

/// Whether this process runs as root, the only user that can act as
/// [`NOBODY`].
pub fn is_root() -> bool {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// Whether the test can act as a second user; if not, its skip is recorded.
pub fn can_act_as_nobody() -> bool {
    if !is_root() {
        skip(&format!(
            "needs root to act as a second user (uid {NOBODY})"
        ));
    }
    is_root()
}

/// Hands the whole sandbox to [`NOBODY`] and lets root's git CLI (the
/// oracle) read a repository it does not own.
pub fn give_to_nobody(sb: &Sandbox, repo: &mut Repo) {
    give_to(sb, repo, NOBODY);
}

/// [`give_to_nobody`] for any uid.
pub fn give_to(sb: &Sandbox, repo: &mut Repo, uid: u32) {
    let status = std::process::Command::new("chown")
        .args(["-R", &format!("{uid}:{uid}")])
        .arg(&sb.root)
        .status()
        .unwrap();
    assert!(status.success());
    repo.env.extend([
        ("GIT_CONFIG_COUNT".to_string(), "1".to_string()),
        ("GIT_CONFIG_KEY_0".to_string(), "safe.directory".to_string()),
        ("GIT_CONFIG_VALUE_0".to_string(), "*".to_string()),
    ]);
}

/// Starts the daemon as [`NOBODY`] and waits until it answers.
pub fn start_as_nobody(sb: &Sandbox) -> Daemon {
    start_as(sb, NOBODY)
}

/// [`start_as_nobody`] for any uid.
pub fn start_as(sb: &Sandbox, uid: u32) -> Daemon {
    let mut cmd = sb.daemon_command();
    cmd.uid(uid).gid(uid);
    let d = sb.spawn_command(cmd);
    wait_for(Duration::from_secs(20), "the daemon answers nobody", || {
        let out = sb
            .command(&["--socket", sb.socket.to_str().unwrap(), "status", "--json"])
            .uid(uid)
            .gid(uid)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        out.status.success().then_some(())
    });
    d
}

/// One notebook's `status` entry, asked as [`NOBODY`] (the daemon refuses other users).
pub fn status_as_nobody(sb: &Sandbox, name: &str) -> Value {
    status_as(sb, NOBODY, name)
}

/// [`status_as_nobody`] for any uid.
pub fn status_as(sb: &Sandbox, uid: u32, name: &str) -> Value {
    let mut cmd = sb.command(&["--socket", sb.socket.to_str().unwrap(), "status", "--json"]);
    let out = cmd.uid(uid).gid(uid).stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    all["notebooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == json!(name))
        .cloned()
        .unwrap_or_else(|| panic!("status lacks {name}: {all}"))
}
