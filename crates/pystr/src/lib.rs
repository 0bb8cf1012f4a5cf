//! Python `str.strip()` and `str.lower()` semantics.
//!
//! pycti normalises names with Python's string methods before hashing them into ids. Rust's
//! `trim()` disagrees with Python on U+001C..U+001F (Python treats the four "information
//! separators" as whitespace, Unicode's `White_Space` property does not), so ids computed with
//! plain `trim()` would differ from pycti's for such names and the platform would see duplicates.

/// `true` for the characters Python's `str.isspace()` (and so `str.strip()`) treats as whitespace.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` with no argument.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_python_space)
}

/// Python's `str.lower()`: full Unicode lowercase mapping, final-sigma aware.
///
/// Rust's `str::to_lowercase` applies the same SpecialCasing rules (İ -> i̇, final Σ -> ς), which
/// the golden ids confirm; this wrapper names the intent at call sites.
pub fn lower(s: &str) -> String {
    s.to_lowercase()
}

/// `lower(strip(s))`, the normalisation pycti applies to names before hashing.
pub fn normalise_name(s: &str) -> String {
    lower(strip(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_removes_information_separators_like_python() {
        assert_eq!(strip("\u{1c}\u{1d} a b \u{1e}\u{1f}"), "a b");
        assert_eq!(strip("\u{a0}\u{3000}x\u{2029}"), "x");
        // Zero-width space is not whitespace to Python either.
        assert_eq!(strip("\u{200b}x"), "\u{200b}x");
    }

    #[test]
    fn lower_uses_full_mapping() {
        assert_eq!(lower("İ"), "i\u{307}");
        assert_eq!(lower("ΟΔΟΣ"), "οδος");
        assert_eq!(lower("Éléphant"), "éléphant");
    }
}
