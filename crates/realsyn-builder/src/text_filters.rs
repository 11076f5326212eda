//! The rule-based sentence filters of paper section 3.1 (SPEC.md 1.1), each a named
//! step of the funnel: emoji or URL, word count outside [3, 81], and information
//! entropy below 0.3 with word probabilities from the whole corpus.
//!
//! Words, here and in the entropy, are maximal runs of letters and digits (an
//! apostrophe or hyphen between two of them stays inside: "isn't", "e-mail"),
//! lower-cased. Punctuation and symbols are not words.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

pub const MIN_WORDS: usize = 3;
pub const MAX_WORDS: usize = 81;
pub const MIN_ENTROPY: f64 = 0.3;

/// The words of a sentence, lower-cased.
pub fn words(sentence: &str) -> Vec<String> {
    let chars: Vec<char> = sentence.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_alphanumeric() {
            cur.extend(c.to_lowercase());
        } else if matches!(c, '\'' | '\u{2019}' | '-')
            && !cur.is_empty()
            && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric())
        {
            cur.push(if c == '-' { '-' } else { '\'' });
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Emoji: the Unicode blocks of pictographs, emoticons, transport and map symbols,
/// dingbats, flags (regional indicators), plus the emoji variation selector and
/// keycap. (Plain symbols such as © or ™ are not emoji unless followed by U+FE0F.)
pub fn has_emoji(s: &str) -> bool {
    s.chars().any(|c| {
        matches!(c as u32,
            0x1F000..=0x1FAFF   // mahjong .. symbols & pictographs extended-A (incl. flags, emoticons)
            | 0x2600..=0x27BF   // miscellaneous symbols, dingbats
            | 0x2B05..=0x2B07 | 0x2B1B..=0x2B1C | 0x2B50 | 0x2B55
            | 0x231A..=0x231B | 0x23E9..=0x23FA | 0x3030 | 0x303D | 0x3297 | 0x3299
            | 0xFE0F | 0x20E3)
    })
}

static URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?xi)
        \b(?:https?|ftp)://\S+                        # scheme URLs
        | \bwww\.[a-z0-9-]+\.\S+                      # www.example.org
        | \b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|edu|gov|io|co|uk|de|info|biz|ru|cn|fr|jp)\b(?:/\S*)?  # bare domains
        ",
    )
    .unwrap()
});

pub fn has_url(s: &str) -> bool {
    URL.is_match(s)
}

/// The first rule a sentence fails, as the funnel's drop reason.
pub fn rule_violation(sentence: &str, n_words: usize) -> Option<&'static str> {
    if has_emoji(sentence) {
        Some("emoji")
    } else if has_url(sentence) {
        Some("url")
    } else if n_words < MIN_WORDS {
        Some("fewer than 3 words")
    } else if n_words > MAX_WORDS {
        Some("more than 81 words")
    } else {
        None
    }
}

/// Word counts of a corpus (the counting pass of the entropy filter).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WordCounts {
    pub counts: HashMap<String, u64>,
    pub total: u64,
}

impl WordCounts {
    pub fn add(&mut self, words: &[String]) {
        for w in words {
            *self.counts.entry(w.clone()).or_default() += 1;
        }
        self.total += words.len() as u64;
    }

    pub fn merge(&mut self, other: &WordCounts) {
        for (w, n) in &other.counts {
            *self.counts.entry(w.clone()).or_default() += n;
        }
        self.total += other.total;
    }

    /// Paper Eq. 1: theta(x) = -sum_i p(x_i) ln p(x_i) over the sentence's words
    /// (repeats counted), p = the word's frequency in the whole corpus. A word the
    /// corpus never saw contributes 0.
    pub fn entropy(&self, words: &[String]) -> f64 {
        let total = self.total.max(1) as f64;
        words
            .iter()
            .map(|w| {
                let p = self.counts.get(w).copied().unwrap_or(0) as f64 / total;
                if p > 0.0 { -p * p.ln() } else { 0.0 }
            })
            .sum()
    }

    /// `word\tcount` lines, most frequent first (ties by word), total first.
    pub fn to_tsv(&self) -> String {
        let mut rows: Vec<(&String, &u64)> = self.counts.iter().collect();
        rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut out = format!("#total\t{}\n", self.total);
        for (w, n) in rows {
            out += &format!("{w}\t{n}\n");
        }
        out
    }

    pub fn from_tsv(s: &str) -> anyhow::Result<Self> {
        let mut out = Self::default();
        for (i, line) in s.lines().enumerate() {
            let (w, n) = line.rsplit_once('\t').ok_or_else(|| {
                anyhow::anyhow!("word counts line {}: expected word<TAB>count", i + 1)
            })?;
            let n: u64 = n.parse()?;
            if w == "#total" {
                out.total = n;
            } else {
                out.counts.insert(w.to_string(), n);
            }
        }
        Ok(out)
    }
}

/// Near-exact duplicate key: the words joined by single spaces (case, punctuation
/// and spacing ignored), hashed.
pub fn dedup_key(words: &[String]) -> u64 {
    // FNV-1a: stable across runs and platforms (std's SipHash keys are not promised).
    let mut h: u64 = 0xcbf29ce484222325;
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            h = (h ^ b' ' as u64).wrapping_mul(0x100000001b3);
        }
        for b in w.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_rules() {
        assert_eq!(
            words("Isn't the e-mail (new)? 3.5 GB!"),
            vec!["isn't", "the", "e-mail", "new", "3", "5", "gb"]
        );
        assert_eq!(
            rule_violation("A cat sits on the mat 🐱.", 7),
            Some("emoji")
        );
        assert_eq!(
            rule_violation("See https://example.org/x for more.", 4),
            Some("url")
        );
        assert_eq!(
            rule_violation("Visit gimp.org today, friends.", 4),
            Some("url")
        );
        assert_eq!(rule_violation("Two words.", 2), Some("fewer than 3 words"));
        assert_eq!(rule_violation("A man rides a horse.", 5), None);
        assert_eq!(
            rule_violation("Version 2.10 is out.", 5),
            None,
            "a version number is not a URL"
        );
    }

    #[test]
    fn entropy_is_eq1() {
        let mut c = WordCounts::default();
        c.add(&words("the cat the dog the end"));
        // p(the) = 3/6, p(cat) = 1/6.
        let e = c.entropy(&words("the cat"));
        let want = -(0.5f64 * 0.5f64.ln()) - (1.0 / 6.0) * (1.0f64 / 6.0).ln();
        assert!((e - want).abs() < 1e-12);
        assert_eq!(c.entropy(&words("unseen")), 0.0);
        let back = WordCounts::from_tsv(&c.to_tsv()).unwrap();
        assert_eq!(back, c);
        assert_eq!(
            dedup_key(&words("The cat, sat!")),
            dedup_key(&words("the  cat sat"))
        );
        assert_ne!(
            dedup_key(&words("the cat sat")),
            dedup_key(&words("the cats at"))
        );
    }
}
