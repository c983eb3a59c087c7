//! A hook counts only when git would run it: git asks `access(X_OK)` for
//! the user running the commit. A hook with execute bits for others but not
//! for its owner is skipped by git (with a hint), so gitlockd must not treat
//! it as a reason to commit through git. Run as an unprivileged user: root
//! may execute any file with an x bit.

mod as_user;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use as_user::{can_act_as_nobody, give_to_nobody, start_as_nobody, status_as_nobody, NOBODY};
use serde_json::json;

#[test]
fn a_hook_its_owner_may_not_execute_is_not_a_hook() {
    if !can_act_as_nobody() {
        return;
    }
    let sb = support::Sandbox::new();
    let mut repo = sb.repo("nb");
    repo.write("a.md", "a\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-q", "-m", "start"]);
    let hook = repo.path.join(".git/hooks/pre-commit");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(&hook, "#!/bin/sh\necho refused >&2\nexit 1\n").unwrap();
    sb.write_config("", &[("nb", &repo.path, "")]);
    give_to_nobody(&sb, &mut repo);
    // Owner (nobody) rw-, group and others --x.
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o611)).unwrap();

    // The oracle: git itself, as the hook's owner, commits despite the hook.
    let oracle = std::process::Command::new("git")
        .args(["commit", "-q", "--allow-empty", "-m", "oracle"])
        .current_dir(&repo.path)
        .envs(repo.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("HOME", sb.root.join("home"))
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    assert!(
        oracle.status.success(),
        "git, as the hook's owner, skips the hook: {}",
        String::from_utf8_lossy(&oracle.stderr)
    );

    let _d = start_as_nobody(&sb);
    let st = status_as_nobody(&sb, "nb");
    assert_eq!(st["commit_via"], "libgit2", "{st}");
    assert_eq!(st["git_features"], json!([]), "{st}");
}
