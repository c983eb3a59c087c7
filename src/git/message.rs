//! Commit messages from the `message` template, and RFC 3339 time formatting.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// How one path changed in a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// New file.
    Added,
    /// Content or mode changed.
    Modified,
    /// File removed.
    Deleted,
    /// Moved here from `from` (content possibly changed too).
    Renamed {
        /// The old path.
        from: PathBuf,
    },
}

/// One changed path of a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChange {
    /// Notebook-relative path (the new one for a rename).
    pub path: PathBuf,
    /// What happened to it.
    pub kind: ChangeKind,
}

impl FileChange {
    /// The paths this change touches: both sides of a rename.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        let from = match &self.kind {
            ChangeKind::Renamed { from } => Some(from.as_path()),
            _ => None,
        };
        from.into_iter().chain(std::iter::once(self.path.as_path()))
    }
}

/// A commit message for `paths`, each taken as updated: the subject from
/// `template` (`{summary}`, `{count}`, `{notebook}`, `{date}`), a blank line,
/// then every path on a line of its own.
pub fn render_message(template: &str, notebook: &str, paths: &[PathBuf]) -> String {
    let changes: Vec<FileChange> = paths
        .iter()
        .map(|p| FileChange {
            path: p.clone(),
            kind: ChangeKind::Modified,
        })
        .collect();
    render_changes_message(template, notebook, &changes)
}

/// Like [`render_message`], knowing what happened to each path, so the
/// summary says "add x", "delete y" or "rename a to b" for a single change.
pub fn render_changes_message(template: &str, notebook: &str, changes: &[FileChange]) -> String {
    render_at(template, notebook, changes, SystemTime::now())
}

fn render_at(template: &str, notebook: &str, changes: &[FileChange], now: SystemTime) -> String {
    let summary = summary(changes);
    let count = changes.len().to_string();
    let date = humantime::format_rfc3339_seconds(now).to_string();
    // One pass, so a path containing `{count}` is not substituted again.
    let mut subject = String::with_capacity(template.len() + summary.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        subject.push_str(&rest[..start]);
        let tail = &rest[start..];
        let (value, len) = [
            ("{summary}", summary.as_str()),
            ("{count}", count.as_str()),
            ("{notebook}", notebook),
            ("{date}", date.as_str()),
        ]
        .iter()
        .find(|(key, _)| tail.starts_with(key))
        .map_or(("{", 1), |(key, value)| (*value, key.len()));
        subject.push_str(value);
        rest = &tail[len..];
    }
    subject.push_str(rest);
    // A subject is one line, whatever the template or the file names hold.
    let mut message: String = subject
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if message.is_empty() {
        message = summary;
    }
    if !changes.is_empty() {
        message.push_str("\n\n");
        for change in changes {
            let line = match &change.kind {
                ChangeKind::Renamed { from } => {
                    format!("{} -> {}", one_line(from), one_line(&change.path))
                }
                _ => one_line(&change.path),
            };
            let _ = writeln!(message, "{line}");
        }
    }
    message
}

fn summary(changes: &[FileChange]) -> String {
    match changes {
        [] => "no changes".to_string(),
        [one] => match &one.kind {
            ChangeKind::Added => format!("add {}", one_line(&one.path)),
            ChangeKind::Modified => format!("update {}", one_line(&one.path)),
            ChangeKind::Deleted => format!("delete {}", one_line(&one.path)),
            ChangeKind::Renamed { from } => {
                format!("rename {} to {}", one_line(from), one_line(&one.path))
            }
        },
        many => {
            let mut s = format!("{} files: ", many.len());
            let shown: Vec<String> = many.iter().take(2).map(|c| one_line(&c.path)).collect();
            s.push_str(&shown.join(", "));
            if many.len() > 2 {
                let _ = write!(s, ", +{}", many.len() - 2);
            }
            s
        }
    }
}

/// A path as text on one line (control characters shown as `?`).
fn one_line(p: &Path) -> String {
    p.to_string_lossy()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `secs` since the epoch in an offset of `offset_minutes`, as RFC 3339
/// (`Z` for UTC, like git's `%aI`).
pub(crate) fn rfc3339(secs: i64, offset_minutes: i32) -> String {
    let local = secs + i64::from(offset_minutes) * 60;
    let days = local.div_euclid(86_400);
    let tod = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let zone = match offset_minutes {
        0 => "Z".to_string(),
        o => {
            let sign = if o < 0 { '-' } else { '+' };
            let off = o.unsigned_abs();
            format!("{sign}{:02}:{:02}", off / 60, off % 60)
        }
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{zone}",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60,
    )
}

/// Howard Hinnant's days-since-epoch to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn change(path: &str, kind: ChangeKind) -> FileChange {
        FileChange {
            path: PathBuf::from(path),
            kind,
        }
    }

    #[test]
    fn summaries() {
        let renamed = ChangeKind::Renamed {
            from: PathBuf::from("old.md"),
        };
        for (changes, want) in [
            (
                vec![change("notes.md", ChangeKind::Modified)],
                "update notes.md",
            ),
            (vec![change("x", ChangeKind::Added)], "add x"),
            (vec![change("y", ChangeKind::Deleted)], "delete y"),
            (vec![change("new.md", renamed)], "rename old.md to new.md"),
            (
                vec![
                    change("a.md", ChangeKind::Added),
                    change("b.md", ChangeKind::Modified),
                ],
                "2 files: a.md, b.md",
            ),
            (
                vec![
                    change("a.md", ChangeKind::Added),
                    change("b.md", ChangeKind::Modified),
                    change("c.md", ChangeKind::Deleted),
                ],
                "3 files: a.md, b.md, +1",
            ),
            (vec![], "no changes"),
        ] {
            assert_eq!(summary(&changes), want);
        }
    }

    #[test]
    fn template_placeholders_and_body() {
        let at = UNIX_EPOCH + Duration::from_secs(1_764_174_245);
        let paths = [
            change("a.md", ChangeKind::Modified),
            change("d/{count}.md", ChangeKind::Added),
            change("c.md", ChangeKind::Deleted),
        ];
        let msg = render_at(
            "{notebook}: {summary} ({count}) at {date} {unknown} {",
            "notes",
            &paths,
            at,
        );
        assert_eq!(
            msg,
            "notes: 3 files: a.md, d/{count}.md, +1 (3) at 2025-11-26T16:24:05Z {unknown} {\n\n\
             a.md\nd/{count}.md\nc.md\n"
        );
    }

    #[test]
    fn render_message_takes_plain_paths_as_updates() {
        let msg = render_message("gitlockd: {summary}", "n", &[PathBuf::from("notes.md")]);
        assert_eq!(msg, "gitlockd: update notes.md\n\nnotes.md\n");
    }

    #[test]
    fn subject_stays_on_one_line() {
        let msg = render_message("x\n{summary}", "n", &[PathBuf::from("a\nb")]);
        let mut lines = msg.lines();
        assert_eq!(lines.next(), Some("x update a?b"));
        assert_eq!(lines.next(), Some(""));
        assert_eq!(lines.next(), Some("a?b"));
    }

    #[test]
    fn empty_template_falls_back_to_the_summary() {
        assert_eq!(
            render_message("", "n", &[PathBuf::from("a")]),
            "update a\n\na\n"
        );
    }

    #[test]
    fn rfc3339_with_offsets() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_174_245, 60), "2025-11-26T17:24:05+01:00");
        assert_eq!(rfc3339(1_764_174_245, -330), "2025-11-26T10:54:05-05:30");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00Z");
    }
}
