//! A JSON-lines connection to the control socket, with the waits on what
//! `status` reports.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;

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
