//! A git repository as the tests see it: written to directly, probed
//! with the `git` CLI (the oracle), never through gitlockd.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::*;

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
