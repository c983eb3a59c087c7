//! "Did you mean": the configured notebook name closest to a mistyped one.

/// The name in `names` closest to `typed` (edit distance, case ignored),
/// if it is close enough to be a likely typo.
pub fn closest<'a>(typed: &str, names: &'a [String]) -> Option<&'a str> {
    if typed.contains('/') {
        return None;
    }
    let typed = typed.to_lowercase();
    let limit = (typed.chars().count() / 3).max(1);
    names
        .iter()
        .map(|name| (distance(&typed, &name.to_lowercase()), name))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name.as_str())
}

/// Levenshtein distance, adjacent swaps counting one (optimal string alignment).
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names: Vec<String> = ["notes", "work", "journal"].map(String::from).to_vec();
        assert_eq!(closest("ntoes", &names), Some("notes"));
        assert_eq!(closest("note", &names), Some("notes"));
        assert_eq!(closest("Notes", &names), Some("notes"));
        assert_eq!(closest("jurnal", &names), Some("journal"));
        assert_eq!(closest("wrk", &names), Some("work"));
        assert_eq!(closest("zzz", &names), None);
        assert_eq!(closest("/home/u/notse", &names), None);
        assert_eq!(closest("x", &[]), None);
    }
}
