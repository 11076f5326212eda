//! Punkt sentence segmentation (Kiss & Strunk 2006) exactly as NLTK 3.10's
//! `PunktSentenceTokenizer` applies trained parameters, on stable Rust. The English
//! parameters are NLTK's (`data/punkt/english.json`).
//!
//! NLTK drives the algorithm with regular expressions that use look-ahead; here each
//! one is a small hand-written scanner (named after the NLTK expression it replaces),
//! which is both stable-Rust friendly and much faster. Offsets are byte offsets into
//! the text; every boundary NLTK finds is found here (`tests/punkt.rs` checks it on
//! Wikipedia and GIMP-manual text against NLTK itself).

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use anyhow::{Context, Result};
use rustc_hash::{FxHashMap, FxHashSet};

const ORTHO_BEG_UC: u32 = 1 << 1;
const ORTHO_MID_UC: u32 = 1 << 2;
const ORTHO_UNK_UC: u32 = 1 << 3;
const ORTHO_BEG_LC: u32 = 1 << 4;
const ORTHO_MID_LC: u32 = 1 << 5;
const ORTHO_UNK_LC: u32 = 1 << 6;
const ORTHO_UC: u32 = ORTHO_BEG_UC + ORTHO_MID_UC + ORTHO_UNK_UC;
const ORTHO_LC: u32 = ORTHO_BEG_LC + ORTHO_MID_LC + ORTHO_UNK_LC;
const NUMBER: &str = "##number##";

/// Trained Punkt parameters (NLTK's `PunktParameters`).
#[derive(Debug, Clone, Default)]
pub struct PunktParameters {
    pub abbrev_types: FxHashSet<String>,
    /// First word -> the words that follow it in a collocation.
    pub collocations: FxHashMap<String, FxHashSet<String>>,
    pub sent_starters: FxHashSet<String>,
    pub ortho_context: FxHashMap<String, u32>,
}

#[derive(serde::Deserialize)]
struct ParameterFile {
    sentence_starters: Vec<String>,
    abbrev_types: Vec<String>,
    collocations: Vec<(String, String)>,
    ortho_context: HashMap<String, u32>,
}

impl PunktParameters {
    /// NLTK's English parameters, compiled into the binary.
    pub fn english() -> Self {
        Self::from_json(include_str!("../../data/punkt/english.json")).expect("bundled Punkt data")
    }

    /// Parameters in the `punkt` crate's JSON layout (`sentence_starters`,
    /// `abbrev_types`, `collocations`, `ortho_context`).
    pub fn from_json(json: &str) -> Result<Self> {
        let f: ParameterFile = serde_json::from_str(json).context("reading Punkt parameters")?;
        let mut collocations: FxHashMap<String, FxHashSet<String>> = FxHashMap::default();
        for (a, b) in f.collocations {
            collocations.entry(a).or_default().insert(b);
        }
        Ok(Self {
            abbrev_types: f.abbrev_types.into_iter().collect(),
            collocations,
            sent_starters: f.sentence_starters.into_iter().collect(),
            ortho_context: f.ortho_context.into_iter().collect(),
        })
    }

    fn ortho(&self, typ: &str) -> u32 {
        self.ortho_context.get(typ).copied().unwrap_or(0)
    }
}

/// Splits text into sentences.
#[derive(Debug, Clone)]
pub struct SentenceSplitter {
    params: PunktParameters,
}

impl Default for SentenceSplitter {
    fn default() -> Self {
        Self::english()
    }
}

impl SentenceSplitter {
    pub fn english() -> Self {
        Self::new(PunktParameters::english())
    }

    pub fn new(params: PunktParameters) -> Self {
        Self { params }
    }

    /// The sentences of `text` (NLTK's `tokenize`).
    pub fn sentences<'t>(&self, text: &'t str) -> Vec<&'t str> {
        self.spans(text).into_iter().map(|r| &text[r]).collect()
    }

    /// Byte spans of the sentences of `text` (NLTK's `span_tokenize` with
    /// `realign_boundaries=True`).
    pub fn spans(&self, text: &str) -> Vec<Range<usize>> {
        realign_boundaries(text, &self.slices(text))
    }

    /// NLTK's `_slices_from_text`.
    fn slices(&self, text: &str) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut last_break = 0;
        let mut context = String::new();
        for (m, prev_word) in potential_end_contexts(text) {
            context.clear();
            context.push_str(&text[prev_word]);
            context.push_str(&text[m.end_char..m.end_char + 1]);
            context.push_str(&text[m.after_tok.clone()]);
            if self.contains_sentbreak(&context) {
                out.push(last_break..m.end());
                last_break = m.next_tok_start.unwrap_or(m.end());
            }
        }
        out.push(last_break..py_rstrip(text).len());
        out
    }

    /// NLTK's `text_contains_sentbreak`: a token other than the last is a break.
    fn contains_sentbreak(&self, text: &str) -> bool {
        let mut tokens = tokenize_words(text);
        for t in &mut tokens {
            self.first_pass(t);
        }
        for i in 0..tokens.len().saturating_sub(1) {
            let (a, b) = tokens.split_at_mut(i + 1);
            self.second_pass(&mut a[i], &b[0]);
            if a[i].sentbreak {
                return true;
            }
        }
        false
    }

    fn first_pass(&self, t: &mut Token) {
        let tok = t.tok;
        if matches!(tok, "." | "?" | "!") {
            t.sentbreak = true;
        } else if t.is_ellipsis() {
            t.ellipsis = true;
        } else if t.period_final() && !tok.ends_with("..") {
            let stem = tok[..tok.len() - 1].to_lowercase();
            let last = stem.rsplit('-').next().unwrap_or("");
            if self.params.abbrev_types.contains(&stem) || self.params.abbrev_types.contains(last) {
                t.abbr = true;
            } else {
                t.sentbreak = true;
            }
        }
    }

    fn second_pass(&self, t1: &mut Token, t2: &Token) {
        if !t1.period_final() {
            return;
        }
        let typ = t1.type_no_period().to_string();
        let next_typ = t2.type_no_sentperiod();
        let initial = t1.is_initial();
        // Collocation heuristic.
        if self
            .params
            .collocations
            .get(typ.as_str())
            .is_some_and(|after| after.contains(next_typ))
        {
            t1.sentbreak = false;
            t1.abbr = true;
            return;
        }
        // Abbreviations and ellipses may also end a sentence.
        if (t1.abbr || t1.ellipsis) && !initial {
            if self.ortho_heuristic(t2) == Ortho::Starter {
                t1.sentbreak = true;
                return;
            }
            if t2.first_upper() && self.params.sent_starters.contains(next_typ) {
                t1.sentbreak = true;
                return;
            }
        }
        // Initials and ordinals.
        if initial || typ == NUMBER {
            let starter = self.ortho_heuristic(t2);
            if starter == Ortho::NotStarter {
                t1.sentbreak = false;
                t1.abbr = true;
                return;
            }
            if starter == Ortho::Unknown
                && initial
                && t2.first_upper()
                && self.params.ortho(next_typ) & ORTHO_LC == 0
            {
                t1.sentbreak = false;
                t1.abbr = true;
            }
        }
    }

    fn ortho_heuristic(&self, t: &Token) -> Ortho {
        if matches!(t.tok, ";" | ":" | "," | "." | "!" | "?") {
            return Ortho::NotStarter;
        }
        let ortho = self.params.ortho(t.type_no_sentperiod());
        if t.first_upper() && ortho & ORTHO_LC != 0 && ortho & ORTHO_MID_UC == 0 {
            return Ortho::Starter;
        }
        if t.first_lower() && (ortho & ORTHO_UC != 0 || ortho & ORTHO_BEG_LC == 0) {
            return Ortho::NotStarter;
        }
        Ortho::Unknown
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Ortho {
    Starter,
    NotStarter,
    Unknown,
}

/// A word token with NLTK's `PunktToken` annotations.
#[derive(Debug)]
struct Token<'a> {
    tok: &'a str,
    typ: Cow<'a, str>,
    sentbreak: bool,
    abbr: bool,
    ellipsis: bool,
}

impl<'a> Token<'a> {
    fn new(tok: &'a str) -> Self {
        // Case does not change what `is_numeric` sees (digits and , . -).
        let typ = if is_numeric(tok) {
            Cow::Borrowed(NUMBER)
        } else if tok.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
            Cow::Borrowed(tok)
        } else {
            Cow::Owned(tok.to_lowercase())
        };
        Self {
            tok,
            typ,
            sentbreak: false,
            abbr: false,
            ellipsis: false,
        }
    }

    fn period_final(&self) -> bool {
        self.tok.ends_with('.')
    }

    fn type_no_period(&self) -> &str {
        if self.typ.chars().count() > 1 && self.typ.ends_with('.') {
            &self.typ[..self.typ.len() - 1]
        } else {
            &self.typ
        }
    }

    fn type_no_sentperiod(&self) -> &str {
        if self.sentbreak {
            self.type_no_period()
        } else {
            &self.typ
        }
    }

    fn first_upper(&self) -> bool {
        self.tok.chars().next().is_some_and(char::is_uppercase)
    }

    fn first_lower(&self) -> bool {
        self.tok.chars().next().is_some_and(char::is_lowercase)
    }

    /// `\.\.+$`
    fn is_ellipsis(&self) -> bool {
        self.tok.len() >= 2 && self.tok.bytes().all(|b| b == b'.')
    }

    /// `[^\W\d]\.$`: one letter and a period.
    fn is_initial(&self) -> bool {
        let mut c = self.tok.chars();
        matches!((c.next(), c.next(), c.next()), (Some(a), Some('.'), None) if is_letter(a))
    }
}

/// Python's `[^\W\d]`: a word character that is not a digit.
fn is_letter(c: char) -> bool {
    c == '_' || (c.is_alphanumeric() && !c.is_numeric())
}

/// `^-?[\.,]?\d[\d,\.-]*\.?$`
fn is_numeric(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    if matches!(b.get(i), Some(b'.' | b',')) {
        i += 1;
    }
    if !b.get(i).is_some_and(u8::is_ascii_digit) {
        return false;
    }
    // `[\d,\.-]*\.?` then the end: the rest is digits and these marks.
    b[i..]
        .iter()
        .all(|c| c.is_ascii_digit() || matches!(c, b',' | b'.' | b'-'))
}

/// Python's `\s` (`str.isspace`).
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// `str.rstrip()`.
fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_space)
}

/// NLTK's `_re_non_word_chars`: characters that cannot appear within words.
fn is_non_word(c: char) -> bool {
    matches!(
        c,
        ')' | '"'
            | ';'
            | '}'
            | ']'
            | '*'
            | ':'
            | '@'
            | '\''
            | '('
            | '{'
            | '['
            | '\u{2018}'
            | '\u{2019}'
            | '\u{201c}'
            | '\u{201d}'
            | '\u{ab}'
            | '\u{bb}'
            | '!'
            | '?'
    )
}

/// NLTK's `_re_word_start`.
fn is_word_start(c: char) -> bool {
    !matches!(
        c,
        '(' | '"'
            | '`'
            | '{'
            | '['
            | ':'
            | ';'
            | '&'
            | '#'
            | '*'
            | '@'
            | ')'
            | '}'
            | ']'
            | '-'
            | ','
    )
}

fn char_at(s: &str, i: usize) -> Option<char> {
    s.get(i..).and_then(|r| r.chars().next())
}

/// Length of NLTK's `_re_multi_char_punct` (`-{2,}|\.{2,}|(?:\.\s){2,}\.`) at `i`.
fn multi_char_at(s: &str, i: usize) -> Option<usize> {
    let b = &s.as_bytes()[i..];
    for mark in [b'-', b'.'] {
        let run = b.iter().take_while(|&&c| c == mark).count();
        if run >= 2 {
            return Some(run);
        }
    }
    // `(?:\.\s){2,}\.`, greedy with backtracking.
    let mut q = i;
    let mut reps = Vec::new();
    while s.as_bytes().get(q) == Some(&b'.') {
        match char_at(s, q + 1) {
            Some(w) if is_space(w) => {
                reps.push(q);
                q += 1 + w.len_utf8();
            }
            _ => break,
        }
    }
    if reps.len() >= 2 && s.as_bytes().get(q) == Some(&b'.') {
        return Some(q + 1 - i);
    }
    if reps.len() >= 3 {
        return Some(reps[reps.len() - 1] + 1 - i);
    }
    None
}

/// Whether a word token may end before position `p` of `line` (the look-ahead of
/// NLTK's `_word_tokenize_fmt`).
fn word_ends_at(line: &str, p: usize) -> bool {
    let Some(c) = char_at(line, p) else {
        return true;
    };
    if is_space(c) || is_non_word(c) || multi_char_at(line, p).is_some() {
        return true;
    }
    if c == ',' {
        let q = p + 1;
        return match char_at(line, q) {
            None => true,
            Some(d) => is_space(d) || is_non_word(d) || multi_char_at(line, q).is_some(),
        };
    }
    false
}

/// NLTK's `PunktLanguageVars.word_tokenize` on one line.
fn word_tokenize<'a>(line: &'a str, out: &mut Vec<Token<'a>>) {
    let mut pos = 0;
    while let Some(c) = char_at(line, pos) {
        if let Some(len) = multi_char_at(line, pos) {
            out.push(Token::new(&line[pos..pos + len]));
            pos += len;
        } else if is_space(c) {
            pos += c.len_utf8();
        } else if is_word_start(c) {
            let mut end = pos + c.len_utf8();
            while !word_ends_at(line, end) {
                end += char_at(line, end).map_or(1, char::len_utf8);
            }
            out.push(Token::new(&line[pos..end]));
            pos = end;
        } else {
            out.push(Token::new(&line[pos..pos + c.len_utf8()]));
            pos += c.len_utf8();
        }
    }
}

/// NLTK's `_tokenize_words`: words of every non-blank line.
fn tokenize_words(text: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        if !line.trim_matches(is_space).is_empty() {
            word_tokenize(line, &mut out);
        }
    }
    out
}

/// One match of NLTK's `_period_context_fmt`: an end character and the token after it.
struct EndContext {
    end_char: usize,
    after_tok: Range<usize>,
    next_tok_start: Option<usize>,
}

impl EndContext {
    fn end(&self) -> usize {
        self.end_char + 1
    }
}

fn period_contexts(text: &str) -> impl Iterator<Item = EndContext> + '_ {
    // The end characters are ASCII, so a byte scan finds them (no UTF-8 decoding).
    text.bytes().enumerate().filter_map(move |(i, c)| {
        if !matches!(c, b'.' | b'?' | b'!') {
            return None;
        }
        let q = i + 1;
        let next = char_at(text, q)?;
        if is_non_word(next) {
            return Some(EndContext {
                end_char: i,
                after_tok: q..q + next.len_utf8(),
                next_tok_start: None,
            });
        }
        let ws = text[q..].find(|c: char| !is_space(c))?;
        if ws == 0 {
            return None;
        }
        let start = q + ws;
        let end = text[start..]
            .find(is_space)
            .map_or(text.len(), |n| start + n);
        Some(EndContext {
            end_char: i,
            after_tok: q..end,
            next_tok_start: Some(start),
        })
    })
}

/// NLTK's `_match_potential_end_contexts`: each candidate end with the word before it.
fn potential_end_contexts(text: &str) -> Vec<(EndContext, Range<usize>)> {
    let mut out = Vec::new();
    let mut previous: Option<(EndContext, Range<usize>)> = None;
    let mut previous_slice = 0..0;
    for m in period_contexts(text) {
        let before = &text[previous_slice.end..m.end_char];
        // `string.whitespace` (ASCII), and NLTK's quirk: a space at index 0 or none
        // at all both fall back to the previous slice's start.
        let last_space = before
            .bytes()
            .rposition(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c'))
            .unwrap_or(0);
        let start = if last_space != 0 {
            last_space + previous_slice.end + 1
        } else {
            previous_slice.start
        };
        let prev_word = start..m.end_char;
        if let Some(p) = previous.take()
            && previous_slice.end <= prev_word.start
        {
            out.push(p);
        }
        previous_slice = prev_word.clone();
        previous = Some((m, prev_word));
    }
    out.extend(previous);
    out
}

/// NLTK's `_realign_boundaries`: closing quotes and brackets after an end go with it.
fn realign_boundaries(text: &str, slices: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut realign = 0;
    for (k, s1) in slices.iter().enumerate() {
        let s1 = (s1.start + realign)..s1.end;
        let Some(s2) = slices.get(k + 1) else {
            if s1.start < s1.end {
                out.push(s1);
            }
            continue;
        };
        let s2_text = if s2.start < s2.end {
            &text[s2.clone()]
        } else {
            ""
        };
        if let Some((keep, consumed)) = closing_punctuation(s2_text) {
            out.push(s1.start..s2.start + keep);
            realign = consumed;
        } else {
            realign = 0;
            if s1.start < s1.end {
                out.push(s1);
            }
        }
    }
    out
}

/// `["')\]}‘’“”«»]+?(?:\s+|(?=--)|$)` (multiline) at the start of `s`: the closing
/// characters' length and the whole match's length.
fn closing_punctuation(s: &str) -> Option<(usize, usize)> {
    let mut k = 0;
    for c in s.chars() {
        if !matches!(
            c,
            '"' | '\''
                | ')'
                | ']'
                | '}'
                | '\u{2018}'
                | '\u{2019}'
                | '\u{201c}'
                | '\u{201d}'
                | '\u{ab}'
                | '\u{bb}'
        ) {
            break;
        }
        k += c.len_utf8();
        let rest = &s[k..];
        let ws: usize = rest
            .chars()
            .take_while(|&c| is_space(c))
            .map(char::len_utf8)
            .sum();
        if ws > 0 {
            return Some((k, k + ws));
        }
        if rest.is_empty() || rest.starts_with("--") {
            return Some((k, k));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nltk_docstring_examples() {
        let s = SentenceSplitter::english();
        assert_eq!(
            s.sentences(
                "This is a test. Mr. Smith went to Washington. He left at 5 p.m. yesterday."
            ),
            vec![
                "This is a test.",
                "Mr. Smith went to Washington.",
                "He left at 5 p.m. yesterday."
            ]
        );
        // Closing punctuation stays with its sentence (NLTK's realignment).
        assert_eq!(
            s.sentences("(How does it deal with this parenthesis?)  \"It should be part of the previous sentence.\" Yes."),
            vec![
                "(How does it deal with this parenthesis?)",
                "\"It should be part of the previous sentence.\"",
                "Yes."
            ]
        );
    }

    #[test]
    fn word_tokens_follow_nltk() {
        let mut t = Vec::new();
        word_tokenize(
            "Hello, world... (e.g. this) isn't--it's \"quoted\".",
            &mut t,
        );
        let toks: Vec<&str> = t.iter().map(|t| t.tok).collect();
        assert_eq!(
            toks,
            vec![
                "Hello", ",", "world", "...", "(", "e.g.", "this", ")", "isn", "'t", "--", "it",
                "'s", "\"", "quoted", "\"", "."
            ]
        );
        assert!(is_numeric("3.14") && is_numeric("-1,000.") && !is_numeric("a1"));
    }
}
