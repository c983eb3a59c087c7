//! The real `gitlockd` daemon of a sandbox: signals, waits on its socket,
//! its exit and its log; killed when dropped, its log printed if a test
//! fails.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use super::*;

/// A running daemon; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Waits until the daemon answers `ping` on the sandbox's socket.
    pub fn wait_ready(&self, sb: &Sandbox) {
        poll_daemon(&self.log, Duration::from_secs(20), || {
            sandbox::answers_ping(&sb.socket, Duration::from_secs(2))
                .then_some(())
                .ok_or_else(|| "daemon never became ready".to_string())
        })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits for exit and returns the exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = &mut self.child;
        poll_daemon(&self.log, timeout, || match child.try_wait().unwrap() {
            Some(status) => Ok(status.code()),
            None => Err("daemon did not exit".to_string()),
        })
    }

    /// Stops the daemon as systemd would (SIGTERM: it commits what is
    /// pending) and checks it exited 0. Quiesces the repositories before a
    /// `git fsck`, which misreads objects written while it runs.
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let code = self.wait_exit(Duration::from_secs(30));
        assert_eq!(
            code,
            Some(0),
            "daemon exit after SIGTERM\n{}",
            self.log_text()
        );
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until the log contains `needle`; returns the whole log.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        poll_daemon(&self.log, timeout, || {
            let text = self.log_text();
            if text.contains(needle) {
                Ok(text)
            } else {
                Err(format!(
                    "timed out after {timeout:?} waiting for {needle:?} in the daemon log"
                ))
            }
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `status` lists every one of `names`.
    pub fn wait_serving(&self, sb: &Sandbox, names: &[&str]) {
        poll_daemon(&self.log, Duration::from_secs(20), || {
            let listed = sb.client().status_names();
            if names.iter().all(|n| listed.iter().any(|l| l == n)) {
                Ok(())
            } else {
                Err(format!(
                    "status never listed {names:?} (it lists {listed:?})"
                ))
            }
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- daemon log ({}) ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// Polls `ready` every 20ms until it is Ok; after `timeout`, panics with
/// its last Err (what is still missing) and the daemon's `log`.
fn poll_daemon<T>(
    log: &Path,
    timeout: Duration,
    mut ready: impl FnMut() -> Result<T, String>,
) -> T {
    let end = Instant::now() + timeout;
    loop {
        match ready() {
            Ok(v) => return v,
            Err(missing) => assert!(
                Instant::now() < end,
                "{missing}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
