//! Shared harness for integration tests: a sandbox per test (HOME, XDG dirs,
//! global git config, short socket path), real git repositories checked with
//! the `git` CLI, the real `gitlockd` binary, and a JSON-lines socket client.
//! Waits are bounded, labelled polls; a failure prints the daemon's log and
//! each repository's `git status` and `git log`. The world itself (folders,
//! git config, the git oracle, skip notes) is `tests/sandbox`, shared with
//! `tests/git_util` and `benches/common`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../sandbox/mod.rs"]
pub mod sandbox;

#[allow(unused_imports)]
pub use sandbox::{answers_ping, on_path, skip, Rng};

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gitlockd"))
}

/// Polls `cond` until it returns Some, or panics naming `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if Instant::now() >= end {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A throw-away world for one test.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        // Short path: sun_path is 108 bytes.
        let (dir, root) = sandbox::temp_root("gl-", Path::new("/tmp"));
        let env = sandbox::isolate(&root, &sandbox::TEST_USER);
        Sandbox {
            socket: root.join("run/gl.sock"),
            config: root.join("cfg/config.toml"),
            dir,
            root,
            env,
        }
    }

    /// A git repository at books/<name> (empty, branch main).
    pub fn repo(&self, name: &str) -> Repo {
        let path = self.root.join("books").join(name);
        std::fs::create_dir_all(&path).unwrap();
        let repo = Repo {
            path,
            env: self.env.clone(),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// The text of a config with these `[[notebook]]` entries (name, path,
    /// extra TOML lines): a 100ms debounce and a 5s lock timeout, then
    /// `defaults` and `lock` lines in those tables.
    pub fn config_text(
        &self,
        defaults: &str,
        lock: &str,
        notebooks: &[(&str, &Path, &str)],
    ) -> String {
        sandbox::config_text(
            &self.socket,
            &format!("debounce = \"100ms\"\n{defaults}"),
            &format!("timeout = \"5s\"\n{lock}"),
            notebooks,
        )
    }

    /// Writes a config with these `[[notebook]]` entries (name, path, extra TOML lines).
    pub fn write_config(&self, defaults: &str, notebooks: &[(&str, &Path, &str)]) {
        self.write_config_lock(defaults, "", notebooks);
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(args).env_clear();
        if let Ok(path) = std::env::var("PATH") {
            cmd.env("PATH", path);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs a client subcommand against this sandbox's socket.
    pub fn gl(&self, args: &[&str]) -> Output {
        let mut full = vec!["--socket", self.socket.to_str().unwrap()];
        full.extend_from_slice(args);
        self.command(&full).stdin(Stdio::null()).output().unwrap()
    }

    /// Starts the daemon on the written config and waits until it answers ping.
    pub fn start(&self) -> Daemon {
        let d = self.spawn(&[]);
        d.wait_ready(self);
        d
    }

    pub fn spawn(&self, extra_env: &[(&str, &str)]) -> Daemon {
        self.spawn_in(None, extra_env)
    }

    /// Like [`Sandbox::spawn`], with the daemon's working directory set to
    /// `cwd` (None: inherit the test's).
    pub fn spawn_in(&self, cwd: Option<&Path>, extra_env: &[(&str, &str)]) -> Daemon {
        let mut cmd = self.daemon_command();
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        self.spawn_command(cmd)
    }

    /// Like [`Sandbox::spawn`] without waiting, with these variables removed
    /// from the daemon's environment (e.g. `XDG_RUNTIME_DIR`).
    pub fn spawn_without(&self, remove: &[&str]) -> Daemon {
        let mut cmd = self.daemon_command();
        for var in remove {
            cmd.env_remove(var);
        }
        self.spawn_command(cmd)
    }

    /// The daemon on this sandbox's config, logging at debug level for the
    /// log a failing test prints.
    pub fn daemon_command(&self) -> Command {
        let mut cmd = self.command(&["--config", self.config.to_str().unwrap()]);
        cmd.env("RUST_LOG", "info,gitlockd=debug");
        cmd
    }

    /// Starts `cmd` (a [`Sandbox::daemon_command`]) with its output in a log
    /// file of its own.
    pub fn spawn_command(&self, mut cmd: Command) -> Daemon {
        let log = self.root.join(format!(
            "daemon-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let child = sandbox::spawn_logged(&mut cmd, &log);
        Daemon { child, log }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket)
    }
}

/// A failing test prints every notebook's `git status` and `git log`, after
/// the daemon's log (a test declares its daemon after its sandbox, so the
/// daemon is dropped first).
impl Drop for Sandbox {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(self.root.join("books")) else {
            return;
        };
        let mut repos: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join(".git").exists())
            .collect();
        repos.sort();
        for repo in repos {
            sandbox::report_if_failing(&repo, &self.env);
        }
    }
}

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

/// A git repository probed with the git CLI.
pub struct Repo {
    pub path: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Repo {
    pub fn git_output(&self, args: &[&str]) -> Output {
        sandbox::git_command(&self.path, &self.env)
            .args(args)
            .output()
            .unwrap()
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = self.git_output(args);
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn head(&self) -> Option<String> {
        let out = self.git_output(&["rev-parse", "--verify", "-q", "HEAD"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn count(&self) -> usize {
        match self.head() {
            None => 0,
            Some(_) => self.git(&["rev-list", "--count", "HEAD"]).parse().unwrap(),
        }
    }

    /// The blob at HEAD:rel, if any.
    pub fn blob(&self, rel: &str) -> Option<String> {
        let out = self.git_output(&["cat-file", "blob", &format!("HEAD:{rel}")]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    }

    pub fn wait_committed(&self, rel: &str, content: &str) {
        wait_for(Duration::from_secs(10), &format!("{rel} committed"), || {
            (self.blob(rel).as_deref() == Some(content)).then_some(())
        });
    }

    /// The work-tree file `rel`, if it exists.
    pub fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.path.join(rel)).ok()
    }

    pub fn status_porcelain(&self) -> String {
        self.git(&["status", "--porcelain"])
    }

    pub fn assert_fsck_clean(&self) {
        let out = self.git_output(&["fsck", "--full", "--no-dangling", "--no-progress"]);
        assert!(
            out.status.success(),
            "git fsck failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A JSON-lines connection to the control socket.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    seq: u64,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
            seq: 0,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// The next line, or `None` once the daemon closed the connection.
    pub fn recv_or_eof(&mut self) -> Option<Value> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        (n > 0).then(|| serde_json::from_str(&line).unwrap())
    }

    pub fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        assert!(n > 0, "connection closed");
        serde_json::from_str(&line).unwrap()
    }

    /// Sends a request and returns its answer, which must echo its id.
    pub fn request(&mut self, cmd: &str, args: Value) -> Value {
        let id = self.send(cmd, args);
        let resp = self.recv();
        assert_eq!(resp["id"], json!(id), "id echo: {resp}");
        resp
    }

    pub fn ok(&mut self, cmd: &str, args: Value) -> Value {
        let resp = self.request(cmd, args.clone());
        assert_eq!(resp["ok"], json!(true), "{cmd} {args} failed: {resp}");
        resp
    }

    pub fn err(&mut self, cmd: &str, args: Value, code: &str) -> Value {
        let resp = self.request(cmd, args.clone());
        assert_eq!(resp["ok"], json!(false), "{cmd} {args} should fail: {resp}");
        assert_eq!(resp["error"]["code"], json!(code), "{cmd} {args}: {resp}");
        resp
    }

    pub fn status_of(&mut self, name: &str) -> Value {
        let resp = self.ok("status", json!({}));
        resp["notebooks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == json!(name))
            .cloned()
            .unwrap_or_else(|| panic!("status lacks {name}: {resp}"))
    }
}

// ---------------------------------------------------------------------------
// Additions for the socket / CLI / stress tests (issue 4).

impl Sandbox {
    /// Like [`Sandbox::write_config`], with extra lines in the `[lock]` table
    /// (e.g. `max_hold = "1s"`).
    pub fn write_config_lock(&self, defaults: &str, lock: &str, notebooks: &[(&str, &Path, &str)]) {
        self.write_config_text(&self.config_text(defaults, lock, notebooks));
    }

    /// Runs a client subcommand with this working directory.
    pub fn gl_in(&self, cwd: &Path, args: &[&str]) -> Output {
        let mut full = vec!["--socket", self.socket.to_str().unwrap()];
        full.extend_from_slice(args);
        self.command(&full)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Spawns a client subcommand (stdio null unless the caller changes it).
    pub fn gl_spawn(&self, args: &[&str]) -> Child {
        let mut full = vec!["--socket", self.socket.to_str().unwrap()];
        full.extend_from_slice(args);
        self.command(&full)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

impl Repo {
    /// Asserts HEAD does not move during `window` (a bounded "nothing happens" check).
    pub fn assert_head_stays(&self, window: Duration, what: &str) {
        let before = self.head();
        let end = Instant::now() + window;
        while Instant::now() < end {
            assert_eq!(self.head(), before, "HEAD moved {what}");
            std::thread::sleep(Duration::from_millis(25));
        }
        assert_eq!(self.head(), before, "HEAD moved {what}");
    }
}

impl Client {
    /// Sends a request without waiting for its answer; returns its id.
    pub fn send(&mut self, cmd: &str, args: Value) -> u64 {
        self.seq += 1;
        let mut obj = json!({"id": self.seq, "cmd": cmd});
        if let Value::Object(extra) = args {
            obj.as_object_mut().unwrap().extend(extra);
        }
        let mut line = serde_json::to_vec(&obj).unwrap();
        line.push(b'\n');
        self.send_raw(&line);
        self.seq
    }

    /// The next line if one arrives within `window`; None on silence.
    /// Panics if the connection closed.
    pub fn recv_within(&mut self, window: Duration) -> Option<Value> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(window))
            .unwrap();
        let mut line = String::new();
        let got = self.reader.read_line(&mut line);
        self.reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        match got {
            Ok(0) => panic!("connection closed"),
            Ok(_) => Some(serde_json::from_str(&line).unwrap()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                assert!(line.is_empty(), "half a line arrived: {line:?}");
                None
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// Reads until EOF (answers before it are returned); panics if the
    /// connection stays open longer than `timeout`.
    pub fn wait_closed(&mut self, timeout: Duration) -> Vec<Value> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .unwrap();
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return lines,
                Ok(_) => lines.push(serde_json::from_str(&line).unwrap()),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return lines,
                Err(e) => panic!("connection not closed within {timeout:?}: {e}; got {lines:?}"),
            }
        }
    }

    /// The underlying stream (for shutdown, raw writes).
    pub fn stream(&self) -> &UnixStream {
        &self.writer
    }
}

// ---------------------------------------------------------------------------
// Helpers added for the daemon behaviour tests (issue 3).

/// Polls `cond` for the whole of `duration`; panics naming `what` as soon as
/// it is false. For bounded "nothing happens" observations.
pub fn holds_for(duration: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + duration;
    loop {
        assert!(
            cond(),
            "expected {what} for {duration:?}, but it stopped holding"
        );
        if Instant::now() >= end {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Sandbox {
    /// A git repository at `path` (anywhere, e.g. outside /tmp for editor
    /// tests), initialised with this sandbox's git environment.
    pub fn repo_at(&self, path: &Path) -> Repo {
        std::fs::create_dir_all(path).unwrap();
        let repo = Repo {
            path: path.canonicalize().unwrap(),
            env: self.env.clone(),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// A `Repo` handle on an existing work tree (no `git init`).
    pub fn open_repo(&self, path: &Path) -> Repo {
        Repo {
            path: path.canonicalize().unwrap(),
            env: self.env.clone(),
        }
    }

    /// Writes the config file verbatim (atomically).
    pub fn write_config_text(&self, text: &str) {
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, &self.config).unwrap();
    }
}

impl Daemon {
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
}

impl Repo {
    /// Stages everything and commits with the git CLI.
    pub fn commit_all(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.head().unwrap()
    }

    /// Paths a commit changed (both sides of renames; `--root` for the first).
    pub fn commit_paths(&self, rev: &str) -> Vec<String> {
        let out = self.git(&[
            "diff-tree",
            "--no-commit-id",
            "--name-only",
            "-r",
            "--root",
            "--no-renames",
            rev,
        ]);
        out.lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Every path any commit reachable from any ref ever contained.
    pub fn ever_committed(&self) -> std::collections::BTreeSet<String> {
        if self.head().is_none() {
            return Default::default();
        }
        let out = self.git(&["log", "--all", "--format=", "--name-only", "--no-renames"]);
        out.lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Paths in HEAD's tree with their modes: (mode, path).
    pub fn head_tree(&self) -> Vec<(String, String, String)> {
        if self.head().is_none() {
            return Vec::new();
        }
        let out = self.git_output(&["ls-tree", "-r", "-z", "HEAD"]);
        assert!(out.status.success());
        out.stdout
            .split(|b| *b == 0)
            .filter(|e| !e.is_empty())
            .map(|e| {
                let e = String::from_utf8_lossy(e);
                let (meta, path) = e.split_once('\t').unwrap();
                let mut it = meta.split(' ');
                let mode = it.next().unwrap().to_string();
                let _kind = it.next();
                let oid = it.next().unwrap().to_string();
                (mode, oid, path.to_string())
            })
            .collect()
    }

    /// Mode of `rel` in HEAD, if present.
    pub fn head_mode(&self, rel: &str) -> Option<String> {
        self.head_tree()
            .into_iter()
            .find(|(_, _, p)| p == rel)
            .map(|(m, _, _)| m)
    }

    /// Files (and symlinks) on disk, relative, skipping `.git` and what `skip` rejects.
    pub fn disk_files(&self, skip: &dyn Fn(&str) -> bool) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>, skip: &dyn Fn(&str) -> bool) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in rd.flatten() {
                let path = entry.path();
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                if rel == ".git" || skip(&rel) {
                    continue;
                }
                let Ok(ft) = entry.file_type() else { continue };
                if ft.is_dir() {
                    walk(root, &path, out, skip);
                } else {
                    out.push(rel);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.path, &self.path, &mut out, skip);
        out.sort();
        out
    }

    /// Differences between the work tree and HEAD, without trusting the
    /// index: blob ids of HEAD compared with `git hash-object` of the files.
    /// Empty when everything on disk is committed exactly.
    pub fn uncommitted(&self, skip: &dyn Fn(&str) -> bool) -> Vec<String> {
        let head: std::collections::BTreeMap<String, String> = self
            .head_tree()
            .into_iter()
            .filter(|(m, _, _)| m != "120000")
            .map(|(_, oid, p)| (p, oid))
            .collect();
        let disk: Vec<String> = self
            .disk_files(skip)
            .into_iter()
            .filter(|p| !self.path.join(p).is_symlink())
            .collect();
        let mut diffs = Vec::new();
        if !disk.is_empty() {
            let mut cmd = Command::new("git");
            cmd.arg("-C")
                .arg(&self.path)
                .args(["hash-object", "--no-filters", "--stdin-paths"]);
            for (k, v) in &self.env {
                cmd.env(k, v);
            }
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let input = disk.join("\n") + "\n";
            let mut stdin = child.stdin.take().unwrap();
            let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
            let out = child.wait_with_output().unwrap();
            let _ = writer.join();
            if !out.status.success() {
                // A file vanished between the walk and the hash: report, let the caller poll again.
                return vec!["(work tree changed while hashing)".into()];
            }
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            for (p, id) in disk.iter().zip(ids) {
                if head.get(p) != Some(&id) {
                    diffs.push(format!("{p} (not on HEAD or different)"));
                }
            }
        }
        for p in head.keys() {
            if !disk.contains(p) && !skip(p) {
                diffs.push(format!("{p} (on HEAD but not on disk)"));
            }
        }
        diffs
    }

    /// Waits until every file on disk equals HEAD.
    pub fn wait_all_committed(&self, timeout: Duration, skip: &dyn Fn(&str) -> bool) {
        let end = Instant::now() + timeout;
        loop {
            let diffs = self.uncommitted(skip);
            if diffs.is_empty() {
                return;
            }
            assert!(
                Instant::now() < end,
                "timed out after {timeout:?} waiting for every file to be committed; still different:\n  {}",
                diffs.join("\n  ")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every commit on HEAD changes its tree compared with its first parent.
    pub fn assert_no_empty_commits(&self) {
        if self.head().is_none() {
            return;
        }
        let out = self.git(&["log", "--format=%H %T %P"]);
        let mut tree_of = std::collections::HashMap::new();
        let rows: Vec<Vec<String>> = out
            .lines()
            .map(|l| l.split(' ').map(str::to_string).collect())
            .collect();
        for r in &rows {
            tree_of.insert(r[0].clone(), r[1].clone());
        }
        for r in &rows {
            if let Some(parent) = r.get(2) {
                if let Some(pt) = tree_of.get(parent) {
                    assert_ne!(
                        pt, &r[1],
                        "commit {} is empty (same tree as its parent)",
                        r[0]
                    );
                }
            } else {
                let files = self.git(&["ls-tree", "-r", "--name-only", &r[0]]);
                assert!(!files.is_empty(), "root commit {} is empty", r[0]);
            }
        }
    }

    /// Waits until HEAD differs from `from`; returns the new HEAD.
    pub fn wait_head_moves(&self, from: Option<&str>, timeout: Duration) -> String {
        wait_for(timeout, "HEAD to move", || {
            let h = self.head();
            (h.as_deref() != from).then_some(h).flatten()
        })
    }
}

impl Sandbox {
    /// Starts the daemon and waits until `status` lists every one of
    /// `names`: the socket answers `ping` while notebooks are still opening
    /// (and catching up), so `start` alone does not mean they are served.
    pub fn start_serving(&self, names: &[&str]) -> Daemon {
        let d = self.start();
        d.wait_serving(self, names);
        d
    }
}

impl Daemon {
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

impl Client {
    /// Names of the notebooks `status` lists.
    pub fn status_names(&mut self) -> Vec<String> {
        let resp = self.ok("status", json!({}));
        resp["notebooks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["name"].as_str().map(str::to_string))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// The vocabulary of the daemon tests (one notebook served, a change reaching
// HEAD, nothing happening), shared so each test file does not redefine it.

/// A change must be on HEAD within this (the machine is shared and loaded).
pub const COMMIT: Duration = Duration::from_secs(15);
/// A "nothing happens" observation window (many times the test debounce).
pub const QUIET: Duration = Duration::from_millis(600);

/// Waits until HEAD holds `rel` with exactly `content`.
pub fn committed(repo: &Repo, rel: &str, content: &str) {
    wait_for(COMMIT, &format!("{rel} committed with {content:?}"), || {
        (repo.blob(rel).as_deref() == Some(content)).then_some(())
    });
}

/// A `skip` for [`Repo::wait_all_committed`] that skips nothing.
pub fn no_skip(_: &str) -> bool {
    false
}

/// The `status` entry of notebook `name`, on a new connection.
pub fn status(sb: &Sandbox, name: &str) -> Value {
    sb.client().status_of(name)
}

/// How many changes notebook `name` has pending.
pub fn pending(sb: &Sandbox, name: &str) -> u64 {
    let s = status(sb, name);
    s["pending"]
        .as_u64()
        .unwrap_or_else(|| panic!("pending is not a count: {s}"))
}

impl Sandbox {
    /// A git repository at books/<name> with one commit "base" of `base.md`
    /// (HEAD exists, so a test can count the daemon's commits from 1).
    pub fn repo_with_base(&self, name: &str) -> Repo {
        let repo = self.repo(name);
        repo.write("base.md", "base\n");
        repo.commit_all("base");
        repo
    }

    /// Configures the one notebook `name` at `repo` with `extra` TOML lines
    /// (other settings as [`Sandbox::write_config`] writes them), starts the
    /// daemon and waits until it serves the notebook.
    pub fn serve_one(&self, name: &str, repo: &Repo, extra: &str) -> Daemon {
        self.write_config("", &[(name, &repo.path, extra)]);
        self.start_serving(&[name])
    }
}

/// A sandbox with one empty notebook "nb" at books/nb, configured with
/// `extra` TOML lines and served. Bind all three (`let (sb, nb, _d)`): the
/// daemon is then dropped first, so a failure prints its log before the
/// repository's state.
pub fn one(extra: &str) -> (Sandbox, Repo, Daemon) {
    let sb = Sandbox::new();
    let nb = sb.repo("nb");
    let d = sb.serve_one("nb", &nb, extra);
    (sb, nb, d)
}

/// Like [`one`], with one commit "base" of `base.md` made before the
/// daemon starts.
pub fn one_with_base(extra: &str) -> (Sandbox, Repo, Daemon) {
    let sb = Sandbox::new();
    let nb = sb.repo_with_base("nb");
    let d = sb.serve_one("nb", &nb, extra);
    (sb, nb, d)
}

// ---------------------------------------------------------------------------
// The start-up of the socket and CLI tests: several notebooks, each with a
// first commit, served by one daemon.

/// How long a socket or CLI test waits for the daemon to reach a state.
pub const LONG: Duration = Duration::from_secs(20);

/// A sandbox with a notebook at books/<name> for each of `names`, each with
/// one commit "base" of `base.txt`, and a daemon serving them all.
pub fn setup(names: &[&str]) -> (Sandbox, Vec<Repo>, Daemon) {
    setup_with(names, "")
}

/// Like [`setup`], with `lock_extra` lines in the `[lock]` table.
pub fn setup_with(names: &[&str], lock_extra: &str) -> (Sandbox, Vec<Repo>, Daemon) {
    let sb = Sandbox::new();
    let repos: Vec<Repo> = names
        .iter()
        .map(|n| {
            let r = sb.repo(n);
            r.write("base.txt", "base\n");
            r.git(&["add", "base.txt"]);
            r.git(&["commit", "-q", "-m", "base"]);
            r
        })
        .collect();
    let entries: Vec<(&str, &Path, &str)> = names
        .iter()
        .zip(&repos)
        .map(|(n, r)| (*n, r.path.as_path(), ""))
        .collect();
    sb.write_config_lock("", lock_extra, &entries);
    let d = sb.start_serving(names);
    (sb, repos, d)
}

impl Sandbox {
    /// Starts the daemon on a config or a socket path it must refuse:
    /// checks that it exits with `code` within [`LONG`]; its log.
    pub fn start_refused(&self, code: i32) -> String {
        self.start_refused_without(code, &[])
    }

    /// [`Sandbox::start_refused`] with these variables removed from the
    /// daemon's environment.
    pub fn start_refused_without(&self, code: i32, remove: &[&str]) -> String {
        let mut d = self.spawn_without(remove);
        assert_eq!(d.wait_exit(LONG), Some(code), "exit code\n{}", d.log_text());
        d.log_text()
    }

    /// `gitlockd check-config` on this sandbox's config.
    pub fn check_config(&self) -> CheckConfig {
        let out = self
            .command(&["check-config", "--config", self.config.to_str().unwrap()])
            .output()
            .unwrap();
        CheckConfig {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// What `gitlockd check-config` did.
pub struct CheckConfig {
    /// Its exit code.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CheckConfig {
    /// Its stdout, then its stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl Client {
    /// Waits until notebook `name`'s `last_error` names every one of
    /// `needles`; its status entry then.
    pub fn wait_last_error(&mut self, name: &str, needles: &[&str]) -> Value {
        wait_for(
            COMMIT,
            &format!("{name}'s last_error to name {needles:?}"),
            || {
                let st = self.status_of(name);
                st["last_error"]
                    .as_str()
                    .is_some_and(|e| needles.iter().all(|n| e.contains(n)))
                    .then_some(st)
            },
        )
    }

    /// Waits until notebook `name` has no `last_error`.
    pub fn wait_error_cleared(&mut self, name: &str) {
        wait_for(COMMIT, &format!("{name}'s last_error cleared"), || {
            self.status_of(name)["last_error"].is_null().then_some(())
        });
    }
}

/// Waits until no client holds the lock of notebook `nb`.
pub fn wait_unheld(c: &mut Client, nb: &str) {
    wait_for(LONG, &format!("{nb} to be free"), || {
        (c.status_of(nb)["lock"]["held"] == json!(false)).then_some(())
    });
}

/// CLOCK_MONOTONIC in microseconds: the clock of sd_notify's
/// `MONOTONIC_USEC`.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}
