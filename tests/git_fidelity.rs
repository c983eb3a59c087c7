//! Auto-commits equal what git itself would commit (issue 9), with the `git`
//! CLI as the oracle: before each auto-commit the repository is copied, and
//! `git add -A <batch> && git write-tree` in the copy must give HEAD's tree
//! after the auto-commit; `git status` must be clean afterwards.

mod git_util;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use git_util::*;
use gitlockd::git::{AutoCommitOptions, AutoCommitOutcome, GitError, GitManager, GitProgram};

/// A repository made by `git init` with one commit of `files`.
fn repo_with(files: &[(&str, &str)]) -> (tempfile::TempDir, GitManager) {
    let dir = tempdir();
    git(dir.path(), &["init", "-q"]);
    for (rel, content) in files {
        write(dir.path(), rel, content);
    }
    if !files.is_empty() {
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-q", "-m", "start"]);
    }
    let gm = GitManager::new(dir.path())
        .expect("manager")
        .with_git_program(program());
    (dir, gm)
}

/// The tree git would commit for `paths` (all changes when empty), computed
/// on a copy of the repository.
fn oracle_tree(dir: &Path, paths: &[&str]) -> String {
    let copy = tempdir();
    let target = copy.path().join("r");
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(dir)
        .arg(&target)
        .output()
        .expect("cp");
    assert!(out.status.success(), "cp -a: {out:?}");
    // A path that is neither on disk nor known to git (created and deleted
    // between two commits) is no pathspec git accepts: it changes nothing.
    let tracked = git(&target, &["ls-files", "-z"]);
    let tracked: Vec<&str> = tracked.split('\0').filter(|p| !p.is_empty()).collect();
    let known = |p: &&str| {
        std::fs::symlink_metadata(target.join(p)).is_ok()
            || tracked
                .iter()
                .any(|t| *t == *p || t.starts_with(&format!("{p}/")))
    };
    let mut args = vec!["add", "-A", "--"];
    args.extend(paths.iter().copied().filter(|p| known(p)));
    if paths.is_empty() {
        args.push(".");
    } else if args.len() == 3 {
        return git(&target, &["write-tree"]).trim().to_string();
    }
    let out = git_cmd(&target)
        .env("GIT_LITERAL_PATHSPECS", "1")
        .args(&args)
        .output()
        .expect("git add");
    // git adds the rest and exits 1 when a path named is ignored or outside
    // the sparse cone; that is the behaviour being compared with.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let refused_some = out.status.code() == Some(1)
        && (stderr.contains("ignored by one of your .gitignore files")
            || stderr.contains("outside of your sparse-checkout definition"));
    assert!(
        out.status.success() || refused_some,
        "oracle git add: {out:?}"
    );
    git(&target, &["write-tree"]).trim().to_string()
}

fn head_tree(dir: &Path) -> String {
    git(dir, &["rev-parse", "HEAD^{tree}"]).trim().to_string()
}

/// Auto-commit `paths` and check the result against the oracle.
fn auto_checked(dir: &Path, gm: &GitManager, paths: &[&str]) -> AutoCommitOutcome {
    let want = oracle_tree(dir, paths);
    let outcome = try_auto(gm, paths).expect("auto-commit");
    assert_eq!(
        head_tree(dir),
        want,
        "HEAD's tree differs from git's ({paths:?})"
    );
    assert_status_clean(dir);
    assert_fsck_clean(dir);
    outcome
}

fn chmod_x(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn blob_at(dir: &Path, rel: &str) -> String {
    git(dir, &["cat-file", "-p", &format!("HEAD:{rel}")])
}

/// True when the object database holds a blob with exactly `content`.
fn odb_has_blob(dir: &Path, content: &str) -> bool {
    let file = dir.join(".git/probe-content");
    std::fs::write(&file, content).expect("write probe");
    let id = git(
        dir,
        &["hash-object", "--no-filters", file.to_str().expect("utf8")],
    );
    std::fs::remove_file(&file).expect("rm probe");
    git_try(dir, &["cat-file", "-e", id.trim()])
        .status
        .success()
}

#[test]
fn a_plain_repository_keeps_the_libgit2_path() {
    let (dir, gm) = repo_with(&[("a.md", "a\n")]);
    write(dir.path(), "a.md", "b\n");
    let outcome = auto_checked(dir.path(), &gm, &["a.md"]);
    assert!(outcome.commit.is_some());
    assert!(
        outcome.git_features.is_empty(),
        "{:?}",
        outcome.git_features
    );
}

#[test]
fn a_required_clean_filter_commits_the_cleaned_content_never_the_plaintext() {
    let (dir, gm) = repo_with(&[("a.md", "a\n")]);
    let d = dir.path();
    // A git-crypt-like pair: clean "encrypts" (rot13), smudge decrypts.
    git(d, &["config", "filter.rot.clean", "tr a-zA-Z n-za-mN-ZA-M"]);
    git(
        d,
        &["config", "filter.rot.smudge", "tr a-zA-Z n-za-mN-ZA-M"],
    );
    git(d, &["config", "filter.rot.required", "true"]);
    write(d, ".gitattributes", "*.sec filter=rot\n");
    write(d, "s/secret.sec", "hello secret\n");
    let outcome = auto_checked(d, &gm, &[".gitattributes", "s/secret.sec"]);
    assert_eq!(outcome.git_features, vec!["rot filter".to_string()]);
    assert_eq!(blob_at(d, "s/secret.sec"), "uryyb frperg\n");
    assert!(
        !odb_has_blob(d, "hello secret\n"),
        "plaintext entered the object database"
    );

    // Modified later: the batch is just the file.
    write(d, "s/secret.sec", "second secret\n");
    auto_checked(d, &gm, &["s/secret.sec"]);
    assert_eq!(blob_at(d, "s/secret.sec"), "frpbaq frperg\n");
    assert!(!odb_has_blob(d, "second secret\n"));
}

#[test]
fn a_clean_filter_gets_the_file_name_for_percent_f() {
    let (dir, gm) = repo_with(&[("a.md", "a\n")]);
    let d = dir.path();
    git(
        d,
        &[
            "config",
            "filter.named.clean",
            "sh -c 'echo \"$1\"; cat' clean %f",
        ],
    );
    write(d, ".gitattributes", "*.txt filter=named\n");
    git(d, &["add", ".gitattributes"]);
    git(d, &["commit", "-q", "-m", "attrs"]);
    write(d, "dir/x.txt", "body\n");
    auto_checked(d, &gm, &["dir/x.txt"]);
    assert_eq!(blob_at(d, "dir/x.txt"), "dir/x.txt\nbody\n");
}

#[test]
fn a_failing_required_filter_commits_nothing_shows_its_stderr_then_recovers() {
    let (dir, gm) = repo_with(&[("a.md", "a\n")]);
    let d = dir.path();
    let script = d.join(".git/clean.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nif [ -e \"$GIT_DIR_FOR_TEST/broken\" ]; then echo 'key not unlocked' >&2; exit 3; fi\ntr a-z A-Z\n",
    )
    .expect("write");
    chmod_x(&script);
    let git_dir = d.join(".git");
    git(
        d,
        &[
            "config",
            "filter.up.clean",
            &format!(
                "GIT_DIR_FOR_TEST={} {}",
                git_dir.display(),
                script.display()
            ),
        ],
    );
    git(d, &["config", "filter.up.required", "true"]);
    write(d, ".gitattributes", "*.up filter=up\n");
    git(d, &["add", ".gitattributes"]);
    git(d, &["commit", "-q", "-m", "attrs"]);
    let before = git(d, &["rev-parse", "HEAD"]);
    std::fs::write(git_dir.join("broken"), "").expect("write");
    write(d, "x.up", "plain text\n");
    let err = try_auto(&gm, &["x.up"]).expect_err("the filter fails");
    assert!(matches!(err, GitError::Command { .. }), "{err:?}");
    assert!(
        err.describe().contains("key not unlocked"),
        "{}",
        err.describe()
    );
    assert_eq!(git(d, &["rev-parse", "HEAD"]), before, "nothing committed");
    assert!(
        !odb_has_blob(d, "plain text\n"),
        "plaintext entered the object database"
    );
    // The rest of a batch is not held back: the other files are committed,
    // the filtered ones are reported (with the filter's stderr) and left out.
    write(d, "y.up", "more plain\n");
    write(d, "notes.md", "unfiltered\n");
    let partial = try_auto(&gm, &["x.up", "y.up", "notes.md"]).expect("partial commit");
    assert!(partial.commit.is_some());
    assert_eq!(blob_at(d, "notes.md"), "unfiltered\n");
    let failed: Vec<&PathBuf> = partial.failed.iter().map(|(p, _)| p).collect();
    assert_eq!(failed, [Path::new("x.up"), Path::new("y.up")]);
    assert!(
        partial.failed[0].1.contains("key not unlocked"),
        "{:?}",
        partial.failed
    );
    assert!(git_try(d, &["cat-file", "-e", "HEAD:x.up"]).status.code() != Some(0));
    assert!(!odb_has_blob(d, "plain text\n") && !odb_has_blob(d, "more plain\n"));
    // The filter works again: the same files commit.
    std::fs::remove_file(git_dir.join("broken")).expect("rm");
    auto_checked(d, &gm, &["x.up", "y.up"]);
    assert_eq!(blob_at(d, "x.up"), "PLAIN TEXT\n");
}

fn has_git_lfs() -> bool {
    std::process::Command::new("git")
        .args(["lfs", "version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn git_lfs_files_are_committed_as_pointers() {
    if !has_git_lfs() {
        git_util::skip("git-lfs is not installed (Debian package git-lfs)");
        return;
    }
    let (dir, gm) = repo_with(&[("a.md", "a\n")]);
    let d = dir.path();
    git(d, &["lfs", "install", "--local"]);
    git(d, &["lfs", "track", "*.bin"]);
    let big = "binary payload\n".repeat(100);
    write(d, "data/blob.bin", &big);
    let outcome = auto_checked(d, &gm, &[".gitattributes", "data/blob.bin"]);
    // `git lfs install` also installs hooks: they or the filter send it through git.
    assert!(!outcome.git_features.is_empty());
    let stored = blob_at(d, "data/blob.bin");
    assert!(
        stored.starts_with("version https://git-lfs.github.com/spec/v1"),
        "{stored}"
    );
    assert!(
        !odb_has_blob(d, &big),
        "the whole file is in the object database"
    );
    let listed = git(d, &["lfs", "ls-files", "-n"]);
    assert_eq!(listed.trim(), "data/blob.bin");
}

#[test]
fn sparse_checkout_never_records_files_outside_the_cone_as_deleted() {
    let (dir, gm) = repo_with(&[
        ("d1/a.md", "a\n"),
        ("d2/b.md", "b\n"),
        ("d2/deep/c.md", "c\n"),
        ("top.md", "t\n"),
    ]);
    let d = dir.path();
    git(d, &["sparse-checkout", "set", "d1"]);
    assert!(!d.join("d2/b.md").exists(), "outside the cone");
    write(d, "d1/a.md", "a2\n");
    write(d, "d1/new.md", "n\n");
    // A batch naming the missing paths too (as a rescan would).
    auto_checked(d, &gm, &["d1/a.md", "d1/new.md", "d2/b.md", "d2"]);
    let files = lines(&git(d, &["ls-tree", "-r", "--name-only", "HEAD"]));
    assert_eq!(
        files,
        ["d1/a.md", "d1/new.md", "d2/b.md", "d2/deep/c.md", "top.md"]
    );
    // The catch-up scan finds nothing to delete either.
    let pending = gm.pending_changes(&opts()).expect("pending");
    assert!(pending.is_empty(), "{pending:?}");
}

#[test]
fn skip_worktree_entries_without_sparse_checkout_are_left_alone() {
    let (dir, gm) = repo_with(&[("a.md", "a\n"), ("local.cfg", "shared\n")]);
    let d = dir.path();
    git(d, &["update-index", "--skip-worktree", "local.cfg"]);
    write(d, "local.cfg", "my machine only\n");
    write(d, "a.md", "a2\n");
    let outcome = try_auto(&gm, &["a.md", "local.cfg"]).expect("auto");
    assert!(outcome.commit.is_some());
    assert_eq!(blob_at(d, "local.cfg"), "shared\n");
    assert_eq!(blob_at(d, "a.md"), "a2\n");
    assert_eq!(
        outcome.git_features,
        vec!["skip-worktree entries".to_string()]
    );
}

#[test]
fn a_split_index_keeps_working() {
    let (dir, gm) = repo_with(&[("a.md", "a\n")]);
    let d = dir.path();
    git(d, &["config", "core.splitIndex", "true"]);
    git(d, &["update-index", "--split-index"]);
    for round in 0..3 {
        write(d, "a.md", &format!("round {round}\n"));
        write(d, &format!("n{round}.md"), "new\n");
        let name = format!("n{round}.md");
        let outcome = auto_checked(d, &gm, &["a.md", &name]);
        assert!(outcome.commit.is_some(), "round {round}");
    }
    assert!(gm.pending_changes(&opts()).expect("pending").is_empty());
    write(d, "late.md", "x\n");
    assert_eq!(
        gm.pending_changes(&opts()).expect("pending"),
        [PathBuf::from("late.md")]
    );
}

#[test]
fn index_v4_and_the_untracked_cache_keep_working() {
    let (dir, gm) = repo_with(&[("a.md", "a\n"), ("d/b.md", "b\n")]);
    let d = dir.path();
    git(d, &["config", "core.untrackedCache", "true"]);
    git(
        d,
        &["update-index", "--index-version", "4", "--untracked-cache"],
    );
    git(d, &["status", "--porcelain"]);
    write(d, "d/b.md", "b2\n");
    write(d, "d/c.md", "c\n");
    auto_checked(d, &gm, &["d/b.md", "d/c.md"]);
    std::fs::remove_file(d.join("a.md")).expect("rm");
    auto_checked(d, &gm, &["a.md"]);
    assert_eq!(git(d, &["ls-files"]).lines().count(), 2);
}

#[test]
fn tracked_but_ignored_files_are_committed_untracked_ignored_stay_out() {
    let (dir, gm) = repo_with(&[(".gitignore", "*.log\nbuild/\n"), ("a.md", "a\n")]);
    let d = dir.path();
    write(d, "keep.log", "v1\n");
    write(d, "build/out.txt", "o1\n");
    git(d, &["add", "-f", "keep.log", "build/out.txt"]);
    git(d, &["commit", "-q", "-m", "forced"]);
    write(d, "keep.log", "v2\n");
    write(d, "build/out.txt", "o2\n");
    write(d, "other.log", "never\n");
    write(d, "build/new.txt", "never\n");
    auto_checked(
        d,
        &gm,
        &["keep.log", "build/out.txt", "other.log", "build/new.txt"],
    );
    assert_eq!(blob_at(d, "keep.log"), "v2\n");
    assert_eq!(blob_at(d, "build/out.txt"), "o2\n");
    let files = lines(&git(d, &["ls-tree", "-r", "--name-only", "HEAD"]));
    assert_eq!(files, [".gitignore", "a.md", "build/out.txt", "keep.log"]);
    // Deleted: the deletion is committed.
    std::fs::remove_file(d.join("keep.log")).expect("rm");
    auto_checked(d, &gm, &["keep.log"]);
    assert!(!git_try(d, &["cat-file", "-e", "HEAD:keep.log"])
        .status
        .success());
}

fn ssh_keygen(dir: &Path) -> Option<PathBuf> {
    let key = dir.join("signing_key");
    let out = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "test@example.com",
            "-f",
        ])
        .arg(&key)
        .output()
        .ok()?;
    out.status.success().then_some(key)
}

#[test]
fn ssh_signing_is_honoured_for_auto_commits_and_commit_now() {
    let keys = tempdir();
    let Some(key) = ssh_keygen(keys.path()) else {
        git_util::skip("ssh-keygen is not installed");
        return;
    };
    let (dir, gm) = repo_with(&[("a.md", "a\n")]);
    let d = dir.path();
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("pub key");
    let allowed = keys.path().join("allowed");
    std::fs::write(&allowed, format!("test@example.com {public}")).expect("write");
    git(d, &["config", "gpg.format", "ssh"]);
    git(
        d,
        &["config", "user.signingkey", key.to_str().expect("utf8")],
    );
    git(
        d,
        &[
            "config",
            "gpg.ssh.allowedSignersFile",
            allowed.to_str().expect("utf8"),
        ],
    );
    git(d, &["config", "commit.gpgsign", "true"]);
    // gpg.ssh.program is honoured: a wrapper that leaves a trace.
    let trace = keys.path().join("trace");
    let wrapper = keys.path().join("sign-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho signed >> {}\nexec ssh-keygen \"$@\"\n",
            trace.display()
        ),
    )
    .expect("write wrapper");
    chmod_x(&wrapper);
    git(
        d,
        &["config", "gpg.ssh.program", wrapper.to_str().expect("utf8")],
    );
    write(d, "a.md", "signed\n");
    let outcome = auto_checked(d, &gm, &["a.md"]);
    assert_eq!(outcome.git_features, vec!["commit.gpgsign".to_string()]);
    let verified = git_try(d, &["verify-commit", "HEAD"]);
    assert!(verified.status.success(), "verify-commit: {verified:?}");
    assert!(trace.exists(), "gpg.ssh.program was not used");

    write(d, "b.md", "by hand\n");
    let now = gm
        .commit_now(Some("by hand"), Some(&[PathBuf::from("b.md")]), &opts())
        .expect("commit_now");
    assert!(now.commit.is_some());
    assert!(git_try(d, &["verify-commit", "HEAD"]).status.success());
    assert_eq!(git(d, &["log", "-1", "--format=%s"]).trim(), "by hand");

    // A key that cannot sign: nothing is committed, the reason is shown.
    git(d, &["config", "user.signingkey", "/nonexistent/key"]);
    let head = git(d, &["rev-parse", "HEAD"]);
    write(d, "a.md", "unsigned?\n");
    let err = try_auto(&gm, &["a.md"]).expect_err("signing fails");
    assert!(
        err.describe().contains("git commit failed"),
        "{}",
        err.describe()
    );
    assert_eq!(git(d, &["rev-parse", "HEAD"]), head);
}

#[test]
fn openpgp_signing_with_gpg() {
    if std::process::Command::new("gpg")
        .arg("--version")
        .output()
        .is_err()
    {
        git_util::skip("gpg is not installed");
        return;
    }
    let gnupg = tempdir();
    std::fs::set_permissions(gnupg.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let gen = std::process::Command::new("gpg")
        .env("GNUPGHOME", gnupg.path())
        .args([
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Test User <test@example.com>",
            "ed25519",
            "sign",
            "never",
        ])
        .output()
        .expect("gpg");
    assert!(gen.status.success(), "gpg --quick-gen-key: {gen:?}");
    let (dir, gm) = repo_with(&[("a.md", "a\n")]);
    let gm = gm.with_git_program({
        let mut p = program();
        p.env
            .push(("GNUPGHOME".into(), gnupg.path().as_os_str().to_owned()));
        p
    });
    let d = dir.path();
    git(d, &["config", "commit.gpgsign", "true"]);
    git(d, &["config", "user.signingkey", "test@example.com"]);
    write(d, "a.md", "gpg\n");
    let outcome = try_auto(&gm, &["a.md"]).expect("auto");
    assert!(outcome.commit.is_some());
    let verified = git_cmd(d)
        .env("GNUPGHOME", gnupg.path())
        .args(["verify-commit", "HEAD"])
        .output()
        .expect("verify");
    assert!(verified.status.success(), "verify-commit: {verified:?}");
    let _ = std::process::Command::new("gpgconf")
        .env("GNUPGHOME", gnupg.path())
        .args(["--kill", "gpg-agent"])
        .output();
}

fn hook(dir: &Path, name: &str, body: &str) {
    let path = dir.join(".git/hooks").join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write hook");
    chmod_x(&path);
}

#[test]
fn hooks_run_as_git_commit_runs_them() {
    let (dir, gm) = repo_with(&[("a.md", "a\n")]);
    let d = dir.path();
    let log = d.join(".git/hook-log");
    let l = log.display();
    hook(d, "pre-commit", &format!("echo pre-commit >> {l}"));
    hook(
        d,
        "prepare-commit-msg",
        &format!("echo prepare-commit-msg >> {l}"),
    );
    hook(
        d,
        "commit-msg",
        &format!("echo commit-msg >> {l}; echo 'Signed-off-by: hook' >> \"$1\""),
    );
    hook(d, "post-commit", &format!("echo post-commit >> {l}"));
    write(d, "a.md", "hooked\n");
    let outcome = auto_checked(d, &gm, &["a.md"]);
    assert_eq!(outcome.git_features.len(), 4, "{:?}", outcome.git_features);
    assert_eq!(
        std::fs::read_to_string(&log).expect("hook log"),
        "pre-commit\nprepare-commit-msg\ncommit-msg\npost-commit\n"
    );
    let message = git(d, &["log", "-1", "--format=%B"]);
    assert!(message.starts_with("gitlockd: update a.md"), "{message}");
    assert!(message.contains("Signed-off-by: hook"), "{message}");

    // hooks = false: none runs, and the fast path is back.
    std::fs::remove_file(&log).expect("rm");
    write(d, "a.md", "quiet\n");
    let quiet = gm
        .auto_commit_on_change(
            &[PathBuf::from("a.md")],
            &AutoCommitOptions {
                hooks: false,
                ..opts()
            },
        )
        .expect("auto");
    assert!(quiet.commit.is_some());
    assert!(quiet.git_features.is_empty(), "{:?}", quiet.git_features);
    assert!(!log.exists(), "a hook ran with hooks = false");
}

#[test]
fn a_rejecting_pre_commit_hook_commits_nothing_and_says_why() {
    let (dir, gm) = repo_with(&[("a.md", "a\n")]);
    let d = dir.path();
    hook(
        d,
        "pre-commit",
        "if git diff --cached | grep -q AKIA; then echo 'secret found in staged changes' >&2; exit 1; fi",
    );
    let head = git(d, &["rev-parse", "HEAD"]);
    write(d, "a.md", "key AKIA1234\n");
    let err = try_auto(&gm, &["a.md"]).expect_err("the hook rejects");
    assert!(
        err.describe().contains("secret found in staged changes"),
        "{}",
        err.describe()
    );
    assert_eq!(git(d, &["rev-parse", "HEAD"]), head, "nothing committed");
    // Fixed: the next batch commits.
    write(d, "a.md", "no key\n");
    let outcome = auto_checked(d, &gm, &["a.md"]);
    assert!(outcome.commit.is_some());
}

#[test]
fn core_hooks_path_is_honoured() {
    let (dir, gm) = repo_with(&[("a.md", "a\n")]);
    let d = dir.path();
    let hooks = d.join("githooks");
    std::fs::create_dir(&hooks).expect("mkdir");
    std::fs::write(
        hooks.join("commit-msg"),
        "#!/bin/sh\necho 'Hooked-by: path' >> \"$1\"\n",
    )
    .expect("write");
    chmod_x(&hooks.join("commit-msg"));
    git(d, &["config", "core.hooksPath", "githooks"]);
    git(d, &["add", "githooks"]);
    git(d, &["commit", "-q", "--no-verify", "-m", "hooks"]);
    write(d, "a.md", "b\n");
    auto_checked(d, &gm, &["a.md"]);
    assert!(git(d, &["log", "-1", "--format=%B"]).contains("Hooked-by: path"));
}

#[test]
fn git_path_commits_only_the_batch_and_keeps_other_staged_changes_staged() {
    let (dir, gm) = repo_with(&[("a.md", "a\n"), ("b.md", "b\n"), ("old.md", "o\n")]);
    let d = dir.path();
    hook(d, "post-commit", "true");
    write(d, "b.md", "staged by the user\n");
    git(d, &["add", "b.md"]);
    write(d, "a.md", "a2\n");
    std::fs::rename(d.join("old.md"), d.join("new.md")).expect("rename");
    let outcome = try_auto(&gm, &["a.md", "old.md", "new.md", "gone.md"]).expect("auto");
    assert!(outcome.commit.is_some());
    assert_eq!(
        lines(&git(
            d,
            &[
                "diff-tree",
                "--no-commit-id",
                "--name-status",
                "-r",
                "-M",
                "HEAD"
            ]
        )),
        ["M\ta.md", "R100\told.md\tnew.md"]
    );
    assert_eq!(git(d, &["diff", "--cached", "--name-only"]).trim(), "b.md");
    // Nothing changed: no commit, never an empty one.
    let again = try_auto(&gm, &["a.md"]).expect("auto");
    assert_eq!(again.commit, None);
}

#[test]
fn unborn_branch_first_commit_through_git() {
    let dir = tempdir();
    let d = dir.path();
    git(d, &["init", "-q"]);
    let gm = GitManager::new(d).expect("gm").with_git_program(program());
    hook(d, "pre-commit", "true");
    write(d, "first.md", "1\n");
    auto_checked(d, &gm, &["first.md"]);
    assert_eq!(git(d, &["rev-list", "--count", "HEAD"]).trim(), "1");
}

#[test]
fn a_missing_git_is_an_error_naming_the_settings_and_the_fix() {
    let (dir, gm) = repo_with(&[("a.md", "a\n")]);
    let d = dir.path();
    git(d, &["config", "commit.gpgsign", "true"]);
    let gm = gm.with_git_program(GitProgram {
        program: "/nonexistent/git-for-test".into(),
        ..program()
    });
    let err = gm.check_git_usable(true).expect_err("no git");
    let text = err.to_string();
    assert!(
        text.contains("commit.gpgsign")
            && text.contains("/nonexistent/git-for-test")
            && text.contains("install git"),
        "{text}"
    );
    write(d, "a.md", "x\n");
    assert!(matches!(
        try_auto(&gm, &["a.md"]),
        Err(GitError::GitMissing { .. })
    ));
    // Plain repositories do not need it.
    git(d, &["config", "commit.gpgsign", "false"]);
    assert!(gm.check_git_usable(true).is_ok());
}

const DIRS: &[&str] = &["", "d1", "d1/sub", "naïve dir", "日本", "build"];
const NAMES: &[&str] = &[
    "a.md",
    "b.txt",
    "café.md",
    "space name.md",
    "x.tmp",
    "keep.tmp",
    "run.log",
    "exe.sh",
    "ünï.txt",
];

/// Every file (not directory) under `root`, outside `.git`, but
/// `.gitattributes`: changing it changes how git compares the other files
/// (a renormalization, out of scope here).
fn work_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let p = e.path();
            if e.file_name() == ".git" || e.file_name() == ".gitattributes" {
                continue;
            }
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).expect("prefix").display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Which path a random session's commits take.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A plain repository: libgit2.
    Libgit2,
    /// A post-commit hook sends every commit through git.
    Hook,
    /// A clean filter on `*.txt` sends batches holding one through git.
    Filter,
}

/// Random edits, one batch at a time, each checked against the oracle.
fn random_session(seed: u64, mode: Mode) {
    let (dir, gm) = repo_with(&[
        (".gitignore", "*.log\nbuild/\n"),
        ("d1/.gitignore", "*.tmp\n!keep.tmp\n"),
        ("a.md", "start\n"),
        ("build/tracked.txt", "forced\n"),
    ]);
    let d = dir.path();
    write(d, "forced.log", "tracked though ignored\n");
    git(d, &["add", "-f", "forced.log", "build/tracked.txt"]);
    git(d, &["commit", "-q", "-m", "forced"]);
    match mode {
        Mode::Libgit2 => {}
        Mode::Hook => hook(d, "post-commit", "true"),
        Mode::Filter => {
            git(d, &["config", "filter.rot.clean", "tr a-zA-Z n-za-mN-ZA-M"]);
            git(
                d,
                &["config", "filter.rot.smudge", "tr a-zA-Z n-za-mN-ZA-M"],
            );
            git(d, &["config", "filter.rot.required", "true"]);
            write(d, ".gitattributes", "*.txt filter=rot\n");
            git(d, &["add", "--renormalize", "."]);
            git(d, &["add", ".gitattributes"]);
            git(d, &["commit", "-q", "-m", "attributes"]);
        }
    }
    let mut rng = Rng(seed);
    for step in 0..30 {
        let mut touched: Vec<String> = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let existing = work_files(d);
            let op = rng.below(7);
            match op {
                // Write (create or modify).
                0..=2 => {
                    let rel = format!("{}/{}", rng.pick(DIRS), rng.pick(NAMES));
                    let rel = rel.trim_start_matches('/').to_string();
                    let full = d.join(&rel);
                    if std::fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_symlink()) {
                        std::fs::remove_file(&full).expect("rm link");
                    }
                    write(
                        d,
                        &rel,
                        &format!("step {step} seed {seed} {}\n", rng.next()),
                    );
                    touched.push(rel);
                }
                // Delete.
                3 if !existing.is_empty() => {
                    let rel = existing[rng.below(existing.len())].clone();
                    std::fs::remove_file(d.join(&rel)).expect("rm");
                    touched.push(rel);
                }
                // Rename into another directory.
                4 if !existing.is_empty() => {
                    let from = existing[rng.below(existing.len())].clone();
                    let to = format!("{}/r{step}-{}", rng.pick(DIRS), rng.pick(NAMES));
                    let to = to.trim_start_matches('/').to_string();
                    std::fs::create_dir_all(d.join(&to).parent().expect("parent")).expect("mkdir");
                    std::fs::rename(d.join(&from), d.join(&to)).expect("rename");
                    touched.push(from);
                    touched.push(to);
                }
                // Toggle the executable bit.
                5 if !existing.is_empty() => {
                    let rel = existing[rng.below(existing.len())].clone();
                    let full = d.join(&rel);
                    let meta = std::fs::symlink_metadata(&full).expect("meta");
                    if meta.is_file() {
                        let mode = meta.permissions().mode() ^ 0o111;
                        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode))
                            .expect("chmod");
                        touched.push(rel);
                    }
                }
                // A symlink (relative, possibly dangling).
                _ => {
                    let rel = format!("{}/link{}", rng.pick(DIRS), rng.below(3));
                    let rel = rel.trim_start_matches('/').to_string();
                    let full = d.join(&rel);
                    std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
                    let _ = std::fs::remove_file(&full);
                    std::os::unix::fs::symlink(rng.pick(NAMES), &full).expect("symlink");
                    touched.push(rel);
                }
            }
        }
        if touched.iter().any(|t| t.ends_with(".gitignore")) {
            // What the daemon does when ignore rules change: a rescan.
            let pending = gm.pending_changes(&opts()).expect("pending changes");
            touched.extend(pending.iter().map(|p| p.display().to_string()));
        }
        let batch: Vec<&str> = touched.iter().map(String::as_str).collect();
        let want = oracle_tree(d, &batch);
        let outcome = try_auto(&gm, &batch)
            .unwrap_or_else(|e| panic!("seed {seed} step {step} {batch:?}: {}", e.describe()));
        assert_eq!(
            head_tree(d),
            want,
            "seed {seed} step {step}: HEAD's tree differs from git's for {batch:?}\n{}",
            git(d, &["status", "--porcelain", "--untracked-files=all"])
        );
        match mode {
            Mode::Libgit2 => assert!(
                outcome.git_features.is_empty(),
                "{:?}",
                outcome.git_features
            ),
            Mode::Hook if outcome.commit.is_some() => {
                assert_eq!(outcome.git_features, ["post-commit hook"]);
            }
            Mode::Filter if !outcome.git_features.is_empty() => {
                assert_eq!(outcome.git_features, ["rot filter"]);
            }
            _ => {}
        }
        let status = git(d, &["status", "--porcelain", "--untracked-files=all"]);
        assert_eq!(
            status, "",
            "seed {seed} step {step}: git status after {batch:?}"
        );
    }
    assert_fsck_clean(d);
}

#[test]
fn random_sessions_match_git_through_libgit2() {
    for seed in [0x9E37_79B9_7F4A_7C15, 0xD1B5_4A32_D192_ED03, 42] {
        random_session(seed, Mode::Libgit2);
    }
}

#[test]
fn random_sessions_match_git_through_git() {
    for seed in [0x9E37_79B9_7F4A_7C15, 0xD1B5_4A32_D192_ED03, 42] {
        random_session(seed, Mode::Hook);
    }
}

#[test]
fn random_sessions_match_git_with_a_clean_filter() {
    for seed in [7, 0xA076_1D64_78BD_642F] {
        random_session(seed, Mode::Filter);
    }
}

#[test]
fn a_sparse_index_keeps_working() {
    let (dir, gm) = repo_with(&[("d1/a.md", "a\n"), ("d2/b.md", "b\n")]);
    let d = dir.path();
    git(
        d,
        &["sparse-checkout", "set", "--cone", "--sparse-index", "d1"],
    );
    write(d, "d1/a.md", "a2\n");
    let want = oracle_tree(d, &["d1/a.md"]);
    // A path inside the collapsed directory too (git's own add refuses it).
    try_auto(&gm, &["d1/a.md", "d2/b.md", "d2"]).expect("auto");
    assert_eq!(head_tree(d), want);
    assert_status_clean(d);
    let files = lines(&git(d, &["ls-tree", "-r", "--name-only", "HEAD"]));
    assert_eq!(files, ["d1/a.md", "d2/b.md"]);
    assert!(gm.pending_changes(&opts()).expect("pending").is_empty());
}

#[test]
fn working_tree_encoding_is_converted_as_git_does() {
    let (dir, gm) = repo_with(&[("a.md", "a\n")]);
    let d = dir.path();
    write(
        d,
        ".gitattributes",
        "*.u16 working-tree-encoding=UTF-16LE\n",
    );
    let text: Vec<u8> = "héllo\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    std::fs::write(d.join("t.u16"), text).expect("write");
    let outcome = auto_checked(d, &gm, &[".gitattributes", "t.u16"]);
    assert_eq!(outcome.git_features, ["working-tree-encoding"]);
    // The repository holds UTF-8, as `git add` stores it.
    assert_eq!(blob_at(d, "t.u16"), "héllo\n");
}

#[test]
fn a_hook_that_never_finishes_is_killed_and_leaves_no_lock_behind() {
    let (dir, gm) = repo_with(&[("a.md", "a\n")]);
    let d = dir.path();
    let gm = gm.with_git_program(GitProgram {
        timeout: std::time::Duration::from_secs(2),
        ..program()
    });
    hook(d, "pre-commit", "sleep 60");
    let head = git(d, &["rev-parse", "HEAD"]);
    write(d, "a.md", "b\n");
    let started = std::time::Instant::now();
    let err = try_auto(&gm, &["a.md"]).expect_err("killed");
    assert!(matches!(err, GitError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(err.to_string().contains("hooks = false"), "{err}");
    assert_eq!(git(d, &["rev-parse", "HEAD"]), head);
    assert!(
        !d.join(".git/index.lock").exists(),
        "index.lock left behind"
    );
    let leftovers: Vec<_> = std::fs::read_dir(d.join(".git"))
        .expect("read .git")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".lock"))
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The hook fixed: commits again.
    hook(d, "pre-commit", "true");
    auto_checked(d, &gm, &["a.md"]);
}

#[test]
fn commit_now_without_paths_commits_everything_through_git() {
    let (dir, gm) = repo_with(&[("a.md", "a\n"), ("old.md", "o\n")]);
    let d = dir.path();
    hook(d, "post-commit", "true");
    write(d, "a.md", "a2\n");
    write(d, "new/n.md", "n\n");
    std::fs::remove_file(d.join("old.md")).expect("rm");
    let want = oracle_tree(d, &[]);
    let outcome = gm.commit_now(None, None, &opts()).expect("commit_now");
    assert!(outcome.commit.is_some());
    assert_eq!(outcome.git_features, ["post-commit hook"]);
    assert_eq!(head_tree(d), want);
    assert_status_clean(d);
}

#[test]
fn names_git_would_read_as_pathspec_magic_are_taken_literally() {
    let (dir, gm) = repo_with(&[("a.md", "a\n"), ("[x].md", "x\n"), ("xx.md", "other\n")]);
    let d = dir.path();
    hook(d, "post-commit", "true");
    let names = [
        "[x].md",
        ":(top)c.md",
        "*star.md",
        "-dash.md",
        "new\nline.md",
        "sp ace.md",
    ];
    for n in names {
        write(d, n, "changed\n");
    }
    // `[x].md` as a glob would also match `x.md`; as magic, `:(top)c.md` is `c.md`.
    write(d, "x.md", "must stay out\n");
    write(d, "c.md", "must stay out\n");
    let outcome = try_auto(&gm, &names).expect("auto");
    assert!(outcome.commit.is_some());
    let files = git(d, &["ls-tree", "-r", "-z", "--name-only", "HEAD"]);
    let mut files: Vec<&str> = files.split('\0').filter(|f| !f.is_empty()).collect();
    files.sort();
    let mut want = vec!["a.md", "xx.md"];
    want.extend(names);
    want.sort();
    assert_eq!(files, want);
    assert_eq!(blob_at(d, "xx.md"), "other\n");
}

#[test]
fn feature_many_files_settings_keep_working() {
    // feature.manyFiles: index v4, untracked cache, and (git 2.40+) an index
    // written without its trailing checksum.
    let (dir, gm) = repo_with(&[("a.md", "a\n")]);
    let d = dir.path();
    git(d, &["config", "feature.manyFiles", "true"]);
    git(d, &["config", "index.skipHash", "true"]);
    write(d, "a.md", "b\n");
    git(d, &["add", "a.md"]);
    git(d, &["commit", "-q", "-m", "rewritten index"]);
    for round in 0..2 {
        write(d, "a.md", &format!("round {round}\n"));
        let outcome = auto_checked(d, &gm, &["a.md"]);
        assert!(outcome.commit.is_some());
    }
}

#[test]
fn the_git_path_message_names_exactly_what_it_commits() {
    let (dir, gm) = repo_with(&[("a.md", "a\n")]);
    let d = dir.path();
    hook(d, "post-commit", "true");
    // Staged by hand, but never gitlockd's to commit (an editor temporary).
    write(d, ".a.md.swp", "swap\n");
    git(d, &["add", "-f", ".a.md.swp"]);
    write(d, "a.md", "b\n");
    let outcome = gm.commit_now(None, None, &opts()).expect("commit_now");
    assert_eq!(outcome.paths, [PathBuf::from("a.md")]);
    let message = git(d, &["log", "-1", "--format=%B"]);
    assert!(!message.contains("swp"), "{message}");
    assert!(
        git_try(d, &["cat-file", "-e", "HEAD:.a.md.swp"])
            .status
            .code()
            != Some(0)
    );
    // Still staged for the user's own commit.
    assert_eq!(
        git(d, &["diff", "--cached", "--name-only"]).trim(),
        ".a.md.swp"
    );
}

#[test]
fn commit_now_of_everything_finds_a_filtered_file_and_goes_through_git() {
    let (dir, gm) = repo_with(&[("a.md", "a\n")]);
    let d = dir.path();
    git(d, &["config", "filter.rot.clean", "tr a-zA-Z n-za-mN-ZA-M"]);
    write(d, ".gitattributes", "*.sec filter=rot\n");
    git(d, &["add", ".gitattributes"]);
    git(d, &["commit", "-q", "-m", "attributes"]);
    write(d, "a.md", "b\n");
    write(d, "deep/x.sec", "hello\n");
    let want = oracle_tree(d, &[]);
    let outcome = gm.commit_now(None, None, &opts()).expect("commit_now");
    assert_eq!(outcome.git_features, ["rot filter"]);
    assert_eq!(head_tree(d), want);
    assert_eq!(blob_at(d, "deep/x.sec"), "uryyb\n");
    assert!(!odb_has_blob(d, "hello\n"));
    assert_status_clean(d);
}

/// Who the last commit is by, as git shows author and committer.
fn who(dir: &Path) -> String {
    git(dir, &["log", "-1", "--format=%an <%ae>|%cn <%ce>"])
        .trim()
        .to_string()
}

#[test]
fn commits_through_git_and_libgit2_carry_the_same_identity() {
    let (dir, gm) = repo_with(&[("a.md", "a\n")]);
    let d = dir.path();
    hook(d, "pre-commit", "true");
    let through = |hooks: bool, text: &str, author: Option<(&str, &str)>| {
        write(d, "a.md", text);
        let outcome = gm
            .auto_commit_on_change(
                &[PathBuf::from("a.md")],
                &AutoCommitOptions {
                    hooks,
                    author_name: author.map(|a| a.0.to_string()),
                    author_email: author.map(|a| a.1.to_string()),
                    ..opts()
                },
            )
            .expect("auto");
        // With the hook, git commits; without, libgit2 does.
        assert_eq!(outcome.git_features.is_empty(), !hooks, "{outcome:?}");
        who(d)
    };
    let bot = Some(("Notebook Bot", "bot@example.org"));
    let want = "Notebook Bot <bot@example.org>|Notebook Bot <bot@example.org>";
    assert_eq!(through(true, "1\n", bot), want, "via git");
    assert_eq!(through(false, "2\n", bot), want, "via libgit2");

    // Unconfigured: the repository's own identity, the same both ways.
    git(d, &["config", "user.name", "Repo Person"]);
    git(d, &["config", "user.email", "repo@example.org"]);
    let want = "Repo Person <repo@example.org>|Repo Person <repo@example.org>";
    assert_eq!(through(true, "3\n", None), want, "via git");
    assert_eq!(through(false, "4\n", None), want, "via libgit2");

    // Blank there too: gitlockd@HOST both ways (git alone would refuse).
    git(d, &["config", "user.name", ""]);
    git(d, &["config", "user.email", ""]);
    let via_git = through(true, "5\n", None);
    assert!(via_git.starts_with("gitlockd <gitlockd@"), "{via_git}");
    assert_eq!(through(false, "6\n", None), via_git, "via libgit2");
    assert_fsck_clean(d);
}
