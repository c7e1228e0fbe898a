//! "Did you mean": how far apart two words are, for suggesting the name an operator meant
//! (a config key, a time zone). A leaf.

/// The Levenshtein distance between `a` and `b` (insertions, deletions, substitutions).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_edits() {
        assert_eq!(edit_distance("zone", "zone"), 0);
        assert_eq!(edit_distance("zonee", "zone"), 1);
        assert_eq!(edit_distance("zoen", "zone"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
