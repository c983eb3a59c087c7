//! Shared harness for integration tests: a sandbox per test (HOME, XDG dirs,
//! global git config, short socket path), real git repositories checked with
//! the `git` CLI, the real `gitlockd` binary, and a JSON-lines socket client.
//! Waits are bounded, labelled polls; a failure prints the daemon's log.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

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
        let dir = tempfile::Builder::new()
            .prefix("gl-")
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path().canonicalize().unwrap();
        for d in ["home", "run", "cfg", "books", "tmp"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let gitconfig = root.join("home/.gitconfig");
        std::fs::write(
            &gitconfig,
            "[user]\n\tname = Test User\n\temail = test@example.invalid\n[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n[gc]\n\tauto = 0\n",
        )
        .unwrap();
        let env = vec![
            ("HOME".into(), root.join("home").display().to_string()),
            ("XDG_CONFIG_HOME".into(), root.join("cfg").display().to_string()),
            ("XDG_RUNTIME_DIR".into(), root.join("run").display().to_string()),
            ("TMPDIR".into(), root.join("tmp").display().to_string()),
            ("GIT_CONFIG_GLOBAL".into(), gitconfig.display().to_string()),
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
            ("LANG".into(), "C.UTF-8".into()),
        ];
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

    /// Writes a config with these `[[notebook]]` entries (name, path, extra TOML lines).
    pub fn write_config(&self, defaults: &str, notebooks: &[(&str, &Path, &str)]) {
        let mut text = format!(
            "socket = {:?}\n\n[defaults]\ndebounce = \"100ms\"\n{defaults}\n\n[lock]\ntimeout = \"5s\"\n",
            self.socket.display().to_string()
        );
        for (name, path, extra) in notebooks {
            text.push_str(&format!(
                "\n[[notebook]]\nname = {name:?}\npath = {:?}\n{extra}\n",
                path.display().to_string()
            ));
        }
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, &self.config).unwrap();
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
        let log = self.root.join(format!(
            "daemon-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = self.command(&["--config", self.config.to_str().unwrap()]);
        cmd.env("RUST_LOG", "info,gitlockd=debug");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket)
    }
}

/// A running daemon; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn wait_ready(&self, sb: &Sandbox) {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = UnixStream::connect(&sb.socket) {
                c.set_read_timeout(Some(Duration::from_secs(2))).ok();
                if c.write_all(b"{\"cmd\":\"ping\"}\n").is_ok() {
                    let mut line = String::new();
                    if BufReader::new(&c).read_line(&mut line).is_ok() && line.contains("\"ok\":true") {
                        return;
                    }
                }
            }
            assert!(Instant::now() < end, "daemon never became ready\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
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
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < end, "daemon did not exit\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
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
            eprintln!("--- daemon log ({}) ---\n{}", self.log.display(), self.log_text());
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
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(&self.path).args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env("GIT_OPTIONAL_LOCKS", "0");
        cmd.output().unwrap()
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

    pub fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        assert!(n > 0, "connection closed");
        serde_json::from_str(&line).unwrap()
    }

    pub fn request(&mut self, cmd: &str, args: Value) -> Value {
        self.seq += 1;
        let mut obj = json!({"id": self.seq, "cmd": cmd});
        if let Value::Object(extra) = args {
            obj.as_object_mut().unwrap().extend(extra);
        }
        let mut line = serde_json::to_vec(&obj).unwrap();
        line.push(b'\n');
        self.send_raw(&line);
        let resp = self.recv();
        assert_eq!(resp["id"], json!(self.seq), "id echo: {resp}");
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
