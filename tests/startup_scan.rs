//! The start-up scan (`pending_changes`) against `git status` as the oracle
//! (issue 11): a notebook copied with `cp -a` (every entry's stat data
//! stale) or left as it is, then every kind of change a scan must find.

mod git_util;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use git_util::*;
use gitlockd::git::{AutoCommitOptions, GitManager};

fn opts() -> AutoCommitOptions {
    AutoCommitOptions {
        notebook: "nb".into(),
        ..AutoCommitOptions::default()
    }
}

fn chmod(root: &Path, rel: &str, mode: u32) {
    std::fs::set_permissions(root.join(rel), std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn symlink(target: &str, root: &Path, rel: &str) {
    std::os::unix::fs::symlink(target, root.join(rel)).expect("symlink");
}

fn remove(root: &Path, rel: &str) {
    let p = root.join(rel);
    if p.symlink_metadata().expect("exists").is_dir() {
        std::fs::remove_dir_all(p).expect("rm -r");
    } else {
        std::fs::remove_file(p).expect("rm");
    }
}

/// Give `rel` an old mtime (not the base's) without touching its content.
fn touch_old(root: &Path, rel: &str) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_500);
    std::fs::File::options()
        .write(true)
        .open(root.join(rel))
        .expect("open")
        .set_modified(t)
        .expect("set mtime");
}

/// What `git status` lists, as the scan reports it: one path per change,
/// both sides of nothing (no renames), submodules and other repositories
/// (`dir/`) left out.
fn oracle(root: &Path) -> BTreeSet<PathBuf> {
    let out = git_cmd(root)
        .args([
            "--no-optional-locks",
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=all",
            "--no-renames",
            "--ignore-submodules=all",
        ])
        .output()
        .expect("git status");
    assert!(out.status.success(), "git status failed");
    out.stdout
        .split(|b| *b == 0)
        .filter(|r| r.len() > 3 && !r.ends_with(b"/"))
        .map(|r| PathBuf::from(String::from_utf8_lossy(&r[3..]).into_owned()))
        .collect()
}

/// A committed notebook with every kind of entry: folders, an executable, a
/// symlink, ignore rules with tracked-but-ignored files, a submodule.
fn original() -> tempfile::TempDir {
    let (dir, _gm) = notebook();
    let root = dir.path();
    for i in 0..60 {
        write(
            root,
            &format!("d{}/e{}/f{i}.md", i % 3, i % 2),
            &format!("note {i}\n"),
        );
    }
    for rel in [
        "top.md",
        "same.md",
        "grow.md",
        "gone.md",
        "to-link.md",
        "to-dir.md",
    ] {
        write(root, rel, &format!("{rel}\n"));
    }
    for rel in ["goner/a.md", "goner/b/c.md", "linked/a.md", "ign/keep.txt"] {
        write(root, rel, &format!("{rel}\n"));
    }
    write(root, "run.sh", "echo hi\n");
    write(root, "group-x.sh", "echo group\n");
    write(root, "keep.log", "tracked but ignored\n");
    write(root, ".gitignore", "*.log\nign/\nbuild/\n");
    write(root, "d1/.gitignore", "*.tmp\n");
    chmod(root, "run.sh", 0o755);
    symlink("top.md", root, "link");
    symlink("top.md", root, "link-to-file");
    // A submodule: another repository recorded as a gitlink.
    let sub = root.join("sub");
    std::fs::create_dir(&sub).expect("mkdir sub");
    git(&sub, &["init", "-q"]);
    write(&sub, "s.md", "sub\n");
    git(&sub, &["add", "-A"]);
    git(&sub, &["commit", "-qm", "sub"]);
    // Old times: files written in the last second are never refreshed.
    let out = std::process::Command::new("find")
        .arg(root)
        .args([
            "-path", "*/.git", "-prune", "-o", "-exec", "touch", "-h", "-d",
        ])
        .args(["@1600000000", "{}", "+"])
        .output()
        .expect("find");
    assert!(out.status.success(), "touch failed");
    git(root, &["add", "-A"]);
    git(root, &["add", "-f", "keep.log", "ign/keep.txt"]);
    git(root, &["commit", "-qm", "base"]);
    assert_status_clean(root);
    dir
}

/// Every kind of change a start-up scan must find (or must not report).
fn change_everything(root: &Path) {
    // Modified: same size with an old mtime (only the content tells), and
    // grown.
    std::fs::write(root.join("same.md"), "SAME.md\n").expect("write");
    touch_old(root, "same.md");
    std::fs::write(root.join("grow.md"), "grow.md and more\n").expect("write");
    write(root, "d2/e0/f2.md", "changed deep\n");
    // Deleted: a file, a whole folder.
    remove(root, "gone.md");
    remove(root, "goner");
    // New: in a known folder, in new folders, a new symlink.
    write(root, "d0/new.md", "new\n");
    write(root, "fresh/deep/er/x.md", "x\n");
    symlink("fresh", root, "new-link");
    // Type changes: file -> symlink, symlink -> file, file -> folder,
    // folder -> symlink to a folder.
    remove(root, "to-link.md");
    symlink("top.md", root, "to-link.md");
    remove(root, "link-to-file");
    write(root, "link-to-file", "now a file\n");
    remove(root, "to-dir.md");
    write(root, "to-dir.md/inside.md", "inside\n");
    remove(root, "linked");
    symlink("d0", root, "linked");
    // Executable bit: the owner's bit counts (git's rule), others' do not.
    chmod(root, "d0/e0/f0.md", 0o744);
    chmod(root, "run.sh", 0o644);
    chmod(root, "group-x.sh", 0o654);
    // Ignore rules: tracked-but-ignored files still count; new ignored files
    // (also under an ignored folder with tracked files) do not.
    write(root, "keep.log", "tracked but ignored, changed\n");
    write(root, "ign/keep.txt", "changed under an ignored folder\n");
    write(root, "ign/new.txt", "ignored\n");
    write(root, "build/out.o", "ignored folder\n");
    write(root, "noise.log", "ignored\n");
    write(
        root,
        "d1/e1/scratch.tmp",
        "ignored by a nested .gitignore\n",
    );
    write(root, "d0/e1/scratch.tmp", "not ignored there\n");
    // Staged but not committed, and staged then changed again.
    write(root, "staged.md", "staged\n");
    git(root, &["add", "staged.md"]);
    write(root, "d1/e1/f1.md", "staged change\n");
    git(root, &["add", "d1/e1/f1.md"]);
    write(root, "d1/e1/f1.md", "note 1\n");
    // The submodule moves on: left alone. Another repository appears.
    write(&root.join("sub"), "s.md", "sub moved on\n");
    git(&root.join("sub"), &["commit", "-qam", "moved"]);
    let other = root.join("other");
    std::fs::create_dir(&other).expect("mkdir other");
    git(&other, &["init", "-q"]);
    write(&other, "o.md", "other repo\n");
    // Not a file to git.
    let fifo = std::ffi::CString::new(root.join("d0/pipe").into_os_string().into_encoded_bytes())
        .expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// `cp -a` of the notebook: same content and times, new inodes and ctimes,
/// so no entry's stat data matches.
fn copy_of(src: &Path) -> tempfile::TempDir {
    let dst = tempdir();
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(dst.path())
        .output()
        .expect("cp");
    assert!(out.status.success(), "cp -a failed");
    dst
}

/// The scan finds exactly what `git status` lists, changes nothing in the
/// index but stat data, and a second start finds the same.
fn assert_scan_matches_git(root: &Path) {
    let entries_before = git(root, &["ls-files", "-s"]);
    let expected = oracle(root);
    let gm = GitManager::new(root).expect("manager");
    let found: BTreeSet<PathBuf> = gm
        .pending_changes(&opts())
        .expect("pending")
        .into_iter()
        .collect();
    assert_eq!(found, expected, "scan vs git status\n{}", report(root));
    assert_eq!(git(root, &["ls-files", "-s"]), entries_before);
    // A restarted daemon finds the same, from the refreshed index.
    let again = GitManager::new(root).expect("manager");
    let found: BTreeSet<PathBuf> = again
        .pending_changes(&opts())
        .expect("pending")
        .into_iter()
        .collect();
    assert_eq!(found, expected, "second scan vs git status");
    assert_eq!(oracle(root), expected, "git status after the scans");
    assert_fsck_clean(root);
}

#[test]
fn a_copied_notebook_scan_finds_exactly_what_git_status_does() {
    let src = original();
    let copy = copy_of(src.path());
    let root = copy.path();
    change_everything(root);
    // Stat data stale: git itself must hash (diff-files compares stat only).
    assert!(lines(&git(root, &["diff-files", "--name-only"])).len() > 60);
    assert_scan_matches_git(root);
    // Unchanged files were refreshed: only real changes are stat-dirty now.
    let dirty = lines(&git(root, &["diff-files", "--name-only"]));
    assert!(dirty.len() < 30, "stat data not refreshed: {dirty:?}");
}

#[test]
fn a_scan_in_place_finds_exactly_what_git_status_does() {
    let dir = original();
    change_everything(dir.path());
    assert_scan_matches_git(dir.path());
}

#[test]
fn with_file_mode_off_the_executable_bit_is_no_change() {
    let src = original();
    let copy = copy_of(src.path());
    let root = copy.path();
    git(root, &["config", "core.fileMode", "false"]);
    chmod(root, "d0/e0/f0.md", 0o755);
    chmod(root, "run.sh", 0o644);
    write(root, "top.md", "changed\n");
    assert_scan_matches_git(root);
    assert_eq!(oracle(root), BTreeSet::from([PathBuf::from("top.md")]));
}

#[test]
fn an_unborn_branch_lists_everything_staged_and_new() {
    let (dir, _gm) = notebook();
    let root = dir.path();
    write(root, "a.md", "a\n");
    write(root, "b/c.md", "c\n");
    git(root, &["add", "a.md"]);
    write(root, "a.md", "a changed\n");
    assert_scan_matches_git(root);
    assert_eq!(oracle(root).len(), 2);
}

#[test]
fn a_soft_reset_lists_what_the_index_holds_beyond_head() {
    // The index's own tree id stays valid (and is not HEAD's): compared
    // entry by entry.
    let dir = original();
    let root = dir.path();
    write(root, "later.md", "later\n");
    write(root, "d0/e0/f0.md", "changed later\n");
    git(root, &["add", "-A"]);
    git(root, &["commit", "-qm", "later"]);
    git(root, &["reset", "-q", "--soft", "HEAD~1"]);
    assert_scan_matches_git(root);
    assert_eq!(oracle(root).len(), 2);
}

#[test]
fn an_index_in_version_4_is_read_alike() {
    let src = original();
    let copy = copy_of(src.path());
    let root = copy.path();
    git(root, &["update-index", "--index-version", "4"]);
    change_everything(root);
    assert_scan_matches_git(root);
}
