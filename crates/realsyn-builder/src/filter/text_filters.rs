//! The rule-based sentence filters of paper §3.1, each a named
//! step of the funnel: emoji or URL, word count outside [3, 81], and information
//! entropy below 0.3 with word probabilities from the whole corpus.
//!
//! Words, here and in the entropy, are maximal runs of letters and digits (an
//! apostrophe or hyphen between two of them stays inside: "isn't", "e-mail"),
//! lower-cased. Punctuation and symbols are not words.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use rustc_hash::FxHashMap;

pub const MIN_WORDS: usize = 3;
pub const MAX_WORDS: usize = 81;
pub const MIN_ENTROPY: f64 = 0.3;

/// The words of a sentence, lower-cased (borrowed from the sentence when it already
/// is: most words are, and the builder handles billions of them).
pub fn words(sentence: &str) -> Vec<Cow<'_, str>> {
    let b = sentence.as_bytes();
    let char_at = |k: usize| sentence.get(k..).and_then(|r| r.chars().next());
    let alnum_at = |k: usize| match b.get(k) {
        Some(c) if c.is_ascii() => c.is_ascii_alphanumeric(),
        Some(_) => char_at(k).is_some_and(char::is_alphanumeric),
        None => false,
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !alnum_at(i) {
            i += if b[i].is_ascii() {
                1
            } else {
                char_at(i).map_or(1, char::len_utf8)
            };
            continue;
        }
        let start = i;
        let mut plain = true; // ASCII lower-case letters, digits, ' and - only
        loop {
            match b.get(i) {
                Some(c) if c.is_ascii_alphanumeric() => {
                    plain &= !c.is_ascii_uppercase();
                    i += 1;
                }
                Some(b'\'' | b'-') if alnum_at(i + 1) => i += 1,
                Some(c) if !c.is_ascii() => {
                    let ch = char_at(i).unwrap();
                    let inner = ch.is_alphanumeric() || (ch == '\u{2019}' && alnum_at(i + 3));
                    if !inner {
                        break;
                    }
                    plain = false;
                    i += ch.len_utf8();
                }
                _ => break,
            }
        }
        let w = &sentence[start..i];
        out.push(if plain {
            Cow::Borrowed(w)
        } else if w.is_ascii() {
            Cow::Owned(w.to_ascii_lowercase())
        } else {
            Cow::Owned(
                w.chars()
                    .flat_map(char::to_lowercase)
                    .map(|c| if c == '\u{2019}' { '\'' } else { c })
                    .collect(),
            )
        });
    }
    out
}

/// Emoji: the Unicode blocks of pictographs, emoticons, transport and map symbols,
/// dingbats, flags (regional indicators), plus the emoji variation selector and
/// keycap. (Plain symbols such as © or ™ are not emoji unless followed by U+FE0F.)
pub fn has_emoji(s: &str) -> bool {
    !s.is_ascii()
        && s.chars().any(|c| {
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
    // Every pattern needs "://", "www." or a dot between two alphanumerics; most
    // sentences have none, and the regex (Unicode word boundaries) is the slow part.
    let b = s.as_bytes();
    let dotted = b
        .windows(3)
        .any(|w| w[1] == b'.' && w[0].is_ascii_alphanumeric() && w[2].is_ascii_alphabetic());
    (dotted || s.contains("://")) && URL.is_match(s)
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
    pub counts: FxHashMap<String, u64>,
    pub total: u64,
}

impl WordCounts {
    pub fn add<W: AsRef<str>>(&mut self, words: &[W]) {
        for w in words {
            let w = w.as_ref();
            match self.counts.get_mut(w) {
                Some(n) => *n += 1,
                None => {
                    self.counts.insert(w.to_string(), 1);
                }
            }
        }
        self.total += words.len() as u64;
    }

    pub fn merge(&mut self, other: &WordCounts) {
        for (w, &n) in &other.counts {
            match self.counts.get_mut(w.as_str()) {
                Some(c) => *c += n,
                None => {
                    self.counts.insert(w.clone(), n);
                }
            }
        }
        self.total += other.total;
    }

    /// Paper Eq. 1: theta(x) = -sum_i p(x_i) ln p(x_i) over the sentence's words
    /// (repeats counted), p = the word's frequency in the whole corpus. A word the
    /// corpus never saw contributes 0.
    pub fn entropy<W: AsRef<str>>(&self, words: &[W]) -> f64 {
        let total = self.total.max(1) as f64;
        words
            .iter()
            .map(|w| {
                let p = self.counts.get(w.as_ref()).copied().unwrap_or(0) as f64 / total;
                if p > 0.0 { -p * p.ln() } else { 0.0 }
            })
            .sum()
    }

    /// Each word's term of Eq. 1, -p ln p, so that the filter pass does one lookup
    /// per word and no logarithm.
    pub fn information(&self) -> Information {
        let total = self.total.max(1) as f64;
        Information(
            self.counts
                .iter()
                .map(|(w, &n)| {
                    let p = n as f64 / total;
                    (w.clone(), -p * p.ln())
                })
                .collect(),
        )
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

/// -p ln p of every word of a corpus (`WordCounts::information`).
#[derive(Debug, Clone, Default)]
pub struct Information(FxHashMap<String, f64>);

impl Information {
    /// Paper Eq. 1, as `WordCounts::entropy`.
    pub fn entropy<W: AsRef<str>>(&self, words: &[W]) -> f64 {
        words
            .iter()
            .map(|w| self.0.get(w.as_ref()).copied().unwrap_or(0.0))
            .sum()
    }
}

/// Near-exact duplicate key: the words joined by single spaces (case, punctuation
/// and spacing ignored), hashed.
pub fn dedup_key<W: AsRef<str>>(words: &[W]) -> u64 {
    let mut h = realsyn_io::hash::Fnv1a::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            h.write(b" ");
        }
        h.write(w.as_ref().as_bytes());
    }
    h.finish()
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
        assert!((c.information().entropy(&words("the cat")) - want).abs() < 1e-12);
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
