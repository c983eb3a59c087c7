//! Sync writes as git would: filters (clean/smudge, git-lfs), sparse
//! checkout, merge drivers, signing and identity, checked with the git CLI
//! as the oracle, against a bare "remote" and clones in temp dirs.
//!
//! Environment: as tests/sync.rs (isolated HOME and config for libgit2 and
//! for the engine's git subprocesses).

mod git_util;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use git_util::sync_world::{cli, commit_all, read, rev, sync_ok, World};
use git_util::{assert_status_clean, git, git_try, home, tempdir, write};
use gitlockd::config::SyncConfig;
use gitlockd::sync::{sync_once_as, sync_once_with, Author, GitCli, Integration};

/// The stored (cleaned) content of `rel` at `rev`.
fn blob(dir: &Path, rev: &str, rel: &str) -> String {
    git(dir, &["cat-file", "-p", &format!("{rev}:{rel}")])
}

/// A commits `rel` and pushes; B commits another file: both moved.
fn diverge(w: &World, rel_a: &str, rel_b: &str) -> (String, String) {
    write(&w.a, rel_a, "from A\n");
    let ca = commit_all(&w.a, "A");
    assert!(sync_ok(&w.a).pushed);
    write(&w.b, rel_b, "from B\n");
    let cb = commit_all(&w.b, "B");
    (ca, cb)
}

fn make_executable(path: &Path) {
    let mut perms = std::fs::metadata(path).expect("metadata").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(path, perms).expect("chmod");
}

const ROT13: &str = "tr A-Za-z N-ZA-Mn-za-m";

#[test]
fn clean_and_smudge_filters_apply_to_fast_forwards_and_merges() {
    let w = World::new(
        &[(".gitattributes", "*.txt filter=rot13\n")],
        &[
            ("filter.rot13.clean", ROT13),
            ("filter.rot13.smudge", ROT13),
        ],
    );
    write(&w.a, "secret.txt", "Hello World\n");
    commit_all(&w.a, "A: secret");
    assert!(sync_ok(&w.a).pushed);
    // Only cleaned content travels.
    assert_eq!(blob(&w.remote, "main", "secret.txt"), "Uryyb Jbeyq\n");

    let o = sync_ok(&w.b);
    assert_eq!(o.integrated, Integration::FastForward);
    assert_eq!(
        read(&w.b, "secret.txt"),
        "Hello World\n",
        "smudged on checkout"
    );
    assert_status_clean(&w.b);

    // A merge checkout smudges too.
    write(&w.a, "second.txt", "Second\n");
    commit_all(&w.a, "A: second");
    assert!(sync_ok(&w.a).pushed);
    write(&w.b, "local.md", "local\n");
    commit_all(&w.b, "B: local");
    let o = sync_ok(&w.b);
    assert_eq!(o.integrated, Integration::Merged);
    assert!(o.pushed);
    assert_eq!(read(&w.b, "second.txt"), "Second\n");
    assert_eq!(read(&w.b, "secret.txt"), "Hello World\n");
    assert_status_clean(&w.b);
    assert_eq!(blob(&w.remote, "main", "second.txt"), "Frpbaq\n");
    w.check();
}

#[test]
fn git_lfs_files_arrive_with_their_content_not_a_pointer() {
    let probe = git_try(home(), &["lfs", "version"]);
    if !probe.status.success() {
        git_util::skip("git-lfs is not installed: the LFS sync test did not run");
        return;
    }
    let w = World::new(&[], &[]);
    for d in [&w.a, &w.b] {
        git(d, &["lfs", "install", "--local"]);
    }
    git(&w.a, &["lfs", "track", "*.bin"]);
    write(&w.a, "big.bin", "real binary content\n");
    commit_all(&w.a, "A: lfs file");
    assert!(sync_ok(&w.a).pushed, "the pre-push hook uploads the object");
    assert!(
        blob(&w.remote, "main", "big.bin").starts_with("version https://git-lfs"),
        "the remote stores a pointer"
    );

    let o = sync_ok(&w.b);
    assert_eq!(o.integrated, Integration::FastForward);
    assert_eq!(read(&w.b, "big.bin"), "real binary content\n");
    assert_status_clean(&w.b);
    w.check();
}

#[test]
fn sparse_checkout_is_honoured() {
    let w = World::new(&[("keep/old.md", "old\n")], &[]);
    git(&w.b, &["sparse-checkout", "set", "keep"]);
    write(&w.a, "keep/new.md", "kept\n");
    write(&w.a, "elsewhere/skip.md", "outside the cone\n");
    let ca = commit_all(&w.a, "A: two dirs");
    assert!(sync_ok(&w.a).pushed);

    let o = sync_ok(&w.b);
    assert_eq!(o.integrated, Integration::FastForward);
    assert_eq!(rev(&w.b, "HEAD"), ca);
    assert_eq!(read(&w.b, "keep/new.md"), "kept\n");
    assert!(
        !w.b.join("elsewhere").exists(),
        "a path outside the sparse cone was written"
    );
    assert_status_clean(&w.b);
    w.check();
}

#[test]
fn merged_tree_is_what_git_merge_makes_custom_merge_drivers_included() {
    // Both sides edit line 2 of the journal: a text conflict, which the
    // repository's own merge driver resolves by keeping both versions.
    let w = World::new(
        &[
            (".gitattributes", "*.log merge=both\n"),
            ("journal.log", "base\nline 2\n"),
            ("old-name.md", "1\n2\n3\n4\n5\n6\n7\n8\n"),
        ],
        &[("merge.both.driver", "cat %B >> %A")],
    );
    write(&w.a, "journal.log", "base\nline 2 by A\n");
    // A renames, B edits the same file: git's rename detection applies.
    git(&w.a, &["mv", "old-name.md", "new-name.md"]);
    commit_all(&w.a, "A");
    assert!(sync_ok(&w.a).pushed);
    write(&w.b, "journal.log", "base\nline 2 by B\n");
    write(&w.b, "old-name.md", "1\n2\n3\n4\n5\n6\n7\n8 by B\n");
    commit_all(&w.b, "B");

    // The oracle: git merge in a copy of B.
    let oracle = w.root.join("oracle");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&w.b)
        .arg(&oracle)
        .status()
        .expect("cp");
    assert!(cp.success());
    git(&oracle, &["fetch", "--quiet", "origin"]);
    git(&oracle, &["merge", "--quiet", "--no-edit", "origin/main"]);

    let o = sync_ok(&w.b);
    assert_eq!(o.integrated, Integration::Merged);
    assert_eq!(rev(&w.b, "HEAD^{tree}"), rev(&oracle, "HEAD^{tree}"));
    for rel in ["journal.log", "new-name.md"] {
        assert_eq!(read(&w.b, rel), read(&oracle, rel), "{rel}");
    }
    assert!(!w.b.join("old-name.md").exists());
    assert_status_clean(&w.b);
    w.check();
}

#[test]
fn merge_commits_are_signed_when_commit_gpgsign_is_set() {
    let keydir = tempdir();
    let key = keydir.path().join("key");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(&key)
        .status();
    if !made.is_ok_and(|s| s.success()) {
        git_util::skip("ssh-keygen is not available: the signing test did not run");
        return;
    }
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("pub key");
    let allowed = keydir.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("test@example.com namespaces=\"git\" {public}"),
    )
    .expect("allowed signers");
    let w = World::new(&[], &[]);
    let key_s = key.display().to_string();
    let allowed_s = allowed.display().to_string();
    for (k, v) in [
        ("gpg.format", "ssh"),
        ("user.signingkey", key_s.as_str()),
        ("commit.gpgsign", "true"),
        ("gpg.ssh.allowedSignersFile", allowed_s.as_str()),
    ] {
        git(&w.b, &["config", k, v]);
    }
    let (ca, cb) = diverge(&w, "a.md", "b.md");
    let o = sync_ok(&w.b);
    assert_eq!(o.integrated, Integration::Merged);
    let merge = rev(&w.b, "HEAD");
    assert_eq!(
        git(&w.b, &["rev-list", "--parents", "-n", "1", &merge]).trim(),
        format!("{merge} {cb} {ca}")
    );
    let verify = git_try(&w.b, &["verify-commit", &merge]);
    assert!(
        verify.status.success(),
        "git verify-commit rejected the merge: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert_eq!(
        git(&w.b, &["log", "-1", "--format=%G?", &merge]).trim(),
        "G"
    );
    // What was pushed is the signed commit itself.
    assert_eq!(rev(&w.remote, "main"), merge);
    w.check();
}

#[test]
fn merge_commits_carry_the_notebook_identity_else_the_repositorys() {
    let w = World::new(&[], &[]);
    diverge(&w, "a1.md", "b1.md");
    let bot = Author {
        name: Some("Notebook Bot".into()),
        email: Some("bot@example.org".into()),
    };
    let o = sync_once_as(&w.b, &SyncConfig::default(), true, &cli(), &bot).expect("sync");
    assert_eq!(o.integrated, Integration::Merged);
    assert_eq!(
        git(&w.b, &["log", "-1", "--format=%an <%ae>|%cn <%ce>"]).trim(),
        "Notebook Bot <bot@example.org>|Notebook Bot <bot@example.org>"
    );

    // Only a name configured: the e-mail comes from the repository.
    assert_eq!(sync_ok(&w.a).integrated, Integration::FastForward);
    diverge(&w, "a2.md", "b2.md");
    let name_only = Author {
        name: Some("Notebook Bot".into()),
        email: None,
    };
    let o = sync_once_as(&w.b, &SyncConfig::default(), true, &cli(), &name_only).expect("sync");
    assert_eq!(o.integrated, Integration::Merged);
    assert_eq!(
        git(&w.b, &["log", "-1", "--format=%an <%ae>|%cn <%ce>"]).trim(),
        "Notebook Bot <test@example.com>|Notebook Bot <test@example.com>"
    );

    // Nothing configured: the repository's user.name / user.email.
    assert_eq!(sync_ok(&w.a).integrated, Integration::FastForward);
    diverge(&w, "a3.md", "b3.md");
    assert_eq!(sync_ok(&w.b).integrated, Integration::Merged);
    assert_eq!(
        git(&w.b, &["log", "-1", "--format=%an <%ae>|%cn <%ce>"]).trim(),
        "Test User <test@example.com>|Test User <test@example.com>"
    );
    w.check();
}

#[test]
fn a_git_without_merge_tree_write_tree_still_merges_with_libgit2() {
    let w = World::new(&[], &[]);
    // git < 2.38: `merge-tree --write-tree` is a usage error (exit 129).
    let old_git = w.root.join("old-git");
    std::fs::write(
        &old_git,
        "#!/bin/sh\nif [ \"$1\" = merge-tree ]; then echo 'usage: git merge-tree <base-tree> <branch1> <branch2>' >&2; exit 129; fi\nexec git \"$@\"\n",
    )
    .expect("script");
    make_executable(&old_git);
    let old_cli = GitCli {
        program: old_git.into_os_string(),
        ..cli()
    };
    let sync_old = |dir: &Path| {
        sync_once_with(dir, &SyncConfig::default(), true, &old_cli).expect("sync with an old git")
    };

    let (ca, cb) = diverge(&w, "a.md", "b.md");
    let o = sync_old(&w.b);
    assert_eq!(o.integrated, Integration::Merged);
    let oracle = git(&w.b, &["merge-tree", "--write-tree", &cb, &ca]);
    assert_eq!(rev(&w.b, "HEAD^{tree}"), oracle.trim());
    assert_status_clean(&w.b);

    // A conflict still diverges, touching nothing.
    assert_eq!(sync_old(&w.a).integrated, Integration::FastForward);
    write(&w.a, "readme.md", "line 1 by A\n");
    commit_all(&w.a, "A edits line 1");
    assert!(sync_old(&w.a).pushed);
    write(&w.b, "readme.md", "line 1 by B\n");
    let cb = commit_all(&w.b, "B edits line 1");
    assert_eq!(sync_old(&w.b).integrated, Integration::Diverged);
    assert_eq!(rev(&w.b, "HEAD"), cb);
    assert_eq!(read(&w.b, "readme.md"), "line 1 by B\n");
    w.check();
}

#[test]
fn a_hung_filter_times_out_and_git_removes_its_index_lock() {
    let w = World::new(
        &[(".gitattributes", "*.hang filter=hang\n")],
        &[
            ("filter.hang.smudge", "sleep 600; cat"),
            ("filter.hang.clean", "cat"),
        ],
    );
    write(&w.a, "stuck.hang", "content\n");
    let ca = commit_all(&w.a, "A: a file whose smudge hangs");
    assert!(sync_ok(&w.a).pushed);
    let b_head = rev(&w.b, "HEAD");

    let quick = GitCli {
        timeout: Duration::from_secs(2),
        ..cli()
    };
    match sync_once_with(&w.b, &SyncConfig::default(), true, &quick) {
        Err(gitlockd::sync::SyncError::Timeout { command, .. }) => {
            assert_eq!(command, "read-tree")
        }
        other => panic!("expected a read-tree timeout, got {other:?}"),
    }
    // SIGTERM first: git removed its lock, the branch did not move.
    assert!(
        !w.b.join(".git/index.lock").exists(),
        "index.lock left behind"
    );
    assert_eq!(rev(&w.b, "HEAD"), b_head);

    // Once the filter works, the next sync completes.
    git(&w.b, &["config", "filter.hang.smudge", "cat"]);
    let o = sync_ok(&w.b);
    assert_eq!(o.integrated, Integration::FastForward);
    assert_eq!(rev(&w.b, "HEAD"), ca);
    assert_eq!(read(&w.b, "stuck.hang"), "content\n");
    assert_status_clean(&w.b);
    w.check();
}

#[test]
fn a_failing_smudge_filter_leaves_no_file_deleted() {
    let w = World::new(
        &[
            (".gitattributes", "*.f filter=strict\n"),
            ("a.f", "old a\n"),
            ("b.f", "old b\n"),
        ],
        &[
            ("filter.strict.clean", "cat"),
            ("filter.strict.smudge", "cat"),
            ("filter.strict.required", "true"),
        ],
    );
    write(&w.a, "a.f", "new a\n");
    write(&w.a, "b.f", "new b\n");
    let ca = commit_all(&w.a, "A: both files");
    assert!(sync_ok(&w.a).pushed);
    let b_head = rev(&w.b, "HEAD");

    // The smudge fails for the new versions only (an LFS server down, say,
    // with the old objects at hand): git has already unlinked the old a.f
    // when its filter fails.
    let strict = w.root.join("strict.sh");
    std::fs::write(
        &strict,
        concat!(
            "#!/bin/sh\n",
            "c=$(cat)\n",
            "case \"$c\" in *new*) echo 'object unavailable' >&2; exit 1;; esac\n",
            "printf '%s\\n' \"$c\"\n",
        ),
    )
    .expect("script");
    make_executable(&strict);
    git(
        &w.b,
        &[
            "config",
            "filter.strict.smudge",
            &strict.display().to_string(),
        ],
    );
    match sync_once_with(&w.b, &SyncConfig::default(), true, &cli()) {
        Err(gitlockd::sync::SyncError::Command { command, stderr }) => {
            assert_eq!(command, "read-tree");
            assert!(stderr.contains("smudge"), "{stderr}");
        }
        other => panic!("expected the checkout to fail, got {other:?}"),
    }
    assert_eq!(rev(&w.b, "HEAD"), b_head, "the branch did not move");
    assert_eq!(read(&w.b, "a.f"), "old a\n", "the unlinked file is back");
    assert_eq!(read(&w.b, "b.f"), "old b\n");
    assert_status_clean(&w.b);

    git(&w.b, &["config", "filter.strict.smudge", "cat"]);
    let o = sync_ok(&w.b);
    assert_eq!(o.integrated, Integration::FastForward);
    assert_eq!(rev(&w.b, "HEAD"), ca);
    assert_eq!(read(&w.b, "a.f"), "new a\n");
    assert_eq!(read(&w.b, "b.f"), "new b\n");
    assert_status_clean(&w.b);
    w.check();
}
