//! open_clip's `_clean_lower`: `whitespace_clean(basic_clean(x)).lower()`, where
//! `basic_clean` is ftfy + `html.unescape` twice + strip.

use super::tables::TABLES;
use super::{ftfy, html};

/// Clean a caption exactly as open_clip does before BPE.
pub fn clean_text(text: &str) -> String {
    let fixed = ftfy::fix_text(text);
    let unescaped = html::unescape(&html::unescape(&fixed));
    // Python's `" ".join(s.split())` splits on Python's whitespace set, which is not
    // Rust's `char::is_whitespace` (it includes U+001C..U+001F).
    let words: Vec<&str> = unescaped
        .split(|c: char| TABLES.python_whitespace.contains(&c))
        .filter(|w| !w.is_empty())
        .collect();
    words.join(" ").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::clean_text;

    #[test]
    fn collapses_whitespace_and_lowercases() {
        assert_eq!(
            clean_text("  A\tPhoto\x1c of\u{3000}a DOG  "),
            "a photo of a dog"
        );
        assert_eq!(clean_text("Fish &amp;amp; Chips"), "fish & chips");
    }
}
