//! The daemon's start-up scan writes refreshed stat data back to the index
//! of a notebook that was copied or restored (issue 11), against the real
//! binary; git's `diff-files` (stat comparison only) is the referee.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, UNIX_EPOCH};

use support::*;

#[test]
fn the_start_up_scan_refreshes_stale_stat_data_and_commits_nothing() {
    let sb = Sandbox::new();
    let nb = sb.repo("nb");
    let names: Vec<String> = (0..30).map(|i| format!("d{}/f{i}.md", i % 3)).collect();
    for (i, name) in names.iter().enumerate() {
        nb.write(name, &format!("note {i}\n"));
    }
    let head = nb.commit_all("base");
    // What a copy or a restore does: same content, other stat data.
    for (i, name) in names.iter().enumerate() {
        let file = std::fs::File::options()
            .write(true)
            .open(nb.path.join(name))
            .unwrap();
        file.set_modified(UNIX_EPOCH + Duration::from_secs(1_600_000_000 + i as u64))
            .unwrap();
    }
    let stale = nb.git(&["diff-files", "--name-only"]);
    assert_eq!(stale.lines().count(), names.len(), "set-up: {stale}");

    let d = sb.serve_one("nb", &nb, "");
    wait_for(
        Duration::from_secs(20),
        "the start-up scan to write refreshed stat data",
        || {
            nb.git(&["diff-files", "--name-only"])
                .is_empty()
                .then_some(())
        },
    );
    assert_eq!(
        nb.head().as_deref(),
        Some(head.as_str()),
        "{}",
        d.log_text()
    );
    assert_eq!(nb.status_porcelain(), "");
    nb.assert_fsck_clean();
}
