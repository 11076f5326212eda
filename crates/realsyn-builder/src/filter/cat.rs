//! The CAT filter (Radenovic et al., CVPR 2023, as RealSyn uses it): keep a sentence
//! whose caption complexity is at least C1 and that contains an action.
//!
//! CAT parses captions into scene graphs; the paper gives no more. What is decided
//! here, exactly:
//! 1. **Tagging.** Words (`text_filters::words`) are tagged by a deterministic
//!    left-to-right rule tagger. Closed classes (determiners, pronouns, prepositions,
//!    conjunctions, auxiliaries and modals) come from fixed lists below. Open words
//!    get their possible parts of speech from WordNet (Debian `wordnet-base`: the
//!    `index.*` files, lemmatised with the `*.exc` exception lists and WordNet's
//!    suffix rules), each weighted by its SemCor-tagged sense count + 1. Context
//!    then decides: after a determiner, possessive or adjective a word is an
//!    adjective if a noun follows and it can be one, else a noun; after an
//!    auxiliary, `to`, a pronoun or a noun, a word that can be a verb is a verb when
//!    it carries verb morphology (-s, -ed, -ing, irregular forms) or verb is its
//!    heaviest reading; an -ing or -ed form is an adjective before a noun or after an
//!    adverb when WordNet has it as one, else a verb if it can be one; a first word
//!    that can be a verb at least as often as a noun is an imperative verb; otherwise
//!    the heaviest reading wins. Unknown words are nouns.
//! 2. **Scene graph.** Objects: nouns and personal pronouns. Attributes: an
//!    adjective before a noun, or after a form of `be`. Relations: a preposition
//!    between two objects, or a verb with an object before or after it.
//! 3. **Complexity**: C0 when there is no object or no attribute or relation, C1
//!    with one attribute or relation, C2 with two or more, and so on.
//! 4. **Action**: a verb other than be / have / do / the modals.
//!
//! Keep when complexity >= C1 and there is an action. Measured on the hand-labelled
//! sentences of `tests/cat.rs`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};

use crate::filter::text_filters::words;

const DET: &[&str] = &[
    "a", "an", "the", "this", "that", "these", "those", "his", "her", "its", "their", "my", "your",
    "our", "some", "any", "each", "every", "no", "another", "several", "many", "few", "both",
    "all", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
];
const PRON: &[&str] = &[
    "i", "you", "he", "she", "it", "we", "they", "him", "them", "me", "us", "someone", "people",
];
const PREP: &[&str] = &[
    "in", "on", "at", "with", "by", "from", "to", "into", "onto", "under", "over", "near",
    "behind", "beside", "between", "through", "across", "along", "around", "above", "below", "of",
    "for", "against", "toward", "towards", "inside", "outside", "during", "after", "before",
    "down", "up", "off", "beneath", "next", "among", "past", "via", "without", "within", "upon",
    "about",
];
const CONJ: &[&str] = &[
    "and", "or", "but", "while", "as", "because", "if", "so", "than", "when", "then", "not",
];
const AUX: &[&str] = &[
    "is", "are", "was", "were", "be", "been", "being", "am", "has", "have", "had", "having", "do",
    "does", "did", "can", "could", "will", "would", "shall", "should", "may", "might", "must",
];
const BE: &[&str] = &["is", "are", "was", "were", "be", "been", "being", "am"];
const NON_ACTION: &[&str] = &[
    "be", "have", "do", "can", "could", "will", "would", "shall", "should", "may", "might", "must",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Det,
    Pron,
    Prep,
    Conj,
    Aux,
    Noun,
    Verb,
    Adj,
    Adv,
}

/// WordNet's parts of speech for a lemma, with SemCor tagged-sense counts.
#[derive(Debug, Default, Clone, Copy)]
struct Readings {
    noun: u32,
    verb: u32,
    adj: u32,
    adv: u32,
}

pub struct CatFilter {
    lemmas: HashMap<String, Readings>,
    exceptions: HashMap<String, (String, Tag)>,
}

/// The verdict on one sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct CatResult {
    pub tags: Vec<Tag>,
    pub complexity: usize,
    pub action: Option<String>,
}

impl CatResult {
    pub fn keep(&self) -> bool {
        self.complexity >= 1 && self.action.is_some()
    }
}

pub const WORDNET_DIR: &str = "/usr/share/wordnet";

impl CatFilter {
    /// Load WordNet's `index.{noun,verb,adj,adv}` and `{noun,verb,adj}.exc` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut lemmas: HashMap<String, Readings> = HashMap::new();
        for (file, pos) in [
            ("index.noun", Tag::Noun),
            ("index.verb", Tag::Verb),
            ("index.adj", Tag::Adj),
            ("index.adv", Tag::Adv),
        ] {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "reading {} (install Debian's wordnet-base, or pass --wordnet DIR / --no-cat)",
                    path.display()
                )
            })?;
            for line in text.lines().filter(|l| !l.starts_with(' ')) {
                let f: Vec<&str> = line.split_whitespace().collect();
                let Some(p_cnt) = f.get(3).and_then(|v| v.parse::<usize>().ok()) else {
                    continue;
                };
                let tagged: u32 = f.get(5 + p_cnt).and_then(|v| v.parse().ok()).unwrap_or(0);
                let r = lemmas.entry(f[0].to_string()).or_default();
                let w = tagged + 1;
                match pos {
                    Tag::Noun => r.noun = w,
                    Tag::Verb => r.verb = w,
                    Tag::Adj => r.adj = w,
                    _ => r.adv = w,
                }
            }
        }
        let mut exceptions = HashMap::new();
        for (file, pos) in [
            ("verb.exc", Tag::Verb),
            ("noun.exc", Tag::Noun),
            ("adj.exc", Tag::Adj),
        ] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            for line in text.lines() {
                if let Some((form, lemma)) = line.split_once(' ') {
                    exceptions
                        .entry(form.to_string())
                        .or_insert((lemma.split(' ').next().unwrap_or(lemma).to_string(), pos));
                }
            }
        }
        Ok(Self { lemmas, exceptions })
    }

    /// WordNet readings of a word form (its own entry, exceptions, suffix rules) and
    /// whether it carries verb morphology.
    fn readings(&self, w: &str) -> (Readings, bool, String) {
        let mut r = self.lemmas.get(w).copied().unwrap_or_default();
        let mut verb_form = false;
        let mut verb_lemma = w.to_string();
        if let Some((lemma, pos)) = self.exceptions.get(w) {
            if let Some(l) = self.lemmas.get(lemma) {
                match pos {
                    Tag::Verb => {
                        r.verb = r.verb.max(l.verb);
                        verb_form = true;
                        verb_lemma = lemma.clone();
                    }
                    Tag::Noun => r.noun = r.noun.max(l.noun),
                    _ => r.adj = r.adj.max(l.adj),
                }
            }
        }
        // WordNet's morphy suffix rules.
        for (suffix, repl, pos) in [
            ("s", "", Tag::Noun),
            ("ses", "s", Tag::Noun),
            ("xes", "x", Tag::Noun),
            ("ches", "ch", Tag::Noun),
            ("shes", "sh", Tag::Noun),
            ("ies", "y", Tag::Noun),
            ("s", "", Tag::Verb),
            ("ies", "y", Tag::Verb),
            ("es", "e", Tag::Verb),
            ("es", "", Tag::Verb),
            ("ed", "e", Tag::Verb),
            ("ed", "", Tag::Verb),
            ("ing", "e", Tag::Verb),
            ("ing", "", Tag::Verb),
            ("er", "", Tag::Adj),
            ("est", "", Tag::Adj),
            ("er", "e", Tag::Adj),
            ("est", "e", Tag::Adj),
        ] {
            let Some(stem) = w.strip_suffix(suffix) else {
                continue;
            };
            if stem.len() < 2 {
                continue;
            }
            let mut lemma = format!("{stem}{repl}");
            // running -> run, stopped -> stop
            let b = lemma.as_bytes();
            if repl.is_empty()
                && (suffix == "ing" || suffix == "ed")
                && b.len() >= 3
                && b[b.len() - 1] == b[b.len() - 2]
                && !self.lemmas.contains_key(&lemma)
            {
                lemma.pop();
            }
            let Some(l) = self.lemmas.get(&lemma) else {
                continue;
            };
            match pos {
                Tag::Noun => r.noun = r.noun.max(l.noun),
                Tag::Verb if l.verb > 0 => {
                    r.verb = r.verb.max(l.verb);
                    verb_form = true;
                    verb_lemma = lemma;
                }
                Tag::Adj => r.adj = r.adj.max(l.adj),
                _ => {}
            }
        }
        (r, verb_form, verb_lemma)
    }

    /// The words of `sentence` the tagger reads as nouns, lower-cased (the tagger's
    /// tags, one per word of `text_filters::words`).
    pub fn nouns(&self, sentence: &str) -> Vec<String> {
        let tags = self.judge(sentence).tags;
        words(sentence)
            .into_iter()
            .zip(tags)
            .filter(|(w, t)| *t == Tag::Noun && w.chars().all(char::is_alphabetic))
            .map(|(w, _)| w.into_owned())
            .collect()
    }

    pub fn judge(&self, sentence: &str) -> CatResult {
        let ws = words(sentence);
        let ws: Vec<&str> = ws.iter().map(|w| w.as_ref()).collect();
        let info: Vec<(Readings, bool, String)> = ws.iter().map(|w| self.readings(w)).collect();
        let mut tags: Vec<Tag> = Vec::with_capacity(ws.len());
        for (i, &w) in ws.iter().enumerate() {
            let closed = if DET.contains(&w) {
                Some(Tag::Det)
            } else if PRON.contains(&w) {
                Some(Tag::Pron)
            } else if AUX.contains(&w) {
                Some(Tag::Aux)
            } else if PREP.contains(&w) {
                Some(Tag::Prep)
            } else if CONJ.contains(&w) {
                Some(Tag::Conj)
            } else {
                None
            };
            if let Some(t) = closed {
                tags.push(t);
                continue;
            }
            let (r, verb_form, _) = &info[i];
            let prev = tags.last().copied();
            let next_nounish = info
                .get(i + 1)
                .is_some_and(|(n, _, _)| n.noun > 0 && !DET.contains(&ws[i + 1]));
            let heaviest = {
                let best = [
                    (r.noun, Tag::Noun),
                    (r.verb, Tag::Verb),
                    (r.adj, Tag::Adj),
                    (r.adv, Tag::Adv),
                ]
                .into_iter()
                .max_by_key(|(w, _)| *w)
                .unwrap();
                if best.0 == 0 { Tag::Noun } else { best.1 }
            };
            let tag = match prev {
                Some(Tag::Det | Tag::Adj) => {
                    if r.adj > 0 && next_nounish {
                        Tag::Adj
                    } else {
                        Tag::Noun
                    }
                }
                Some(Tag::Aux) | Some(Tag::Pron) | Some(Tag::Noun)
                    if r.verb > 0 && (*verb_form || heaviest == Tag::Verb) =>
                {
                    Tag::Verb
                }
                Some(Tag::Prep) if w.ends_with("ing") && r.verb > 0 => Tag::Verb,
                Some(Tag::Prep) if ws[i - 1] == "to" && r.verb > 0 && r.verb >= r.noun => Tag::Verb,
                Some(Tag::Aux) if r.adj > 0 => Tag::Adj,
                // "an interesting article", "very tired": participles used as adjectives.
                _ if r.adj > 0
                    && (w.ends_with("ing") || w.ends_with("ed"))
                    && (next_nounish || prev == Some(Tag::Adv)) =>
                {
                    Tag::Adj
                }
                _ if r.verb > 0 && (w.ends_with("ing") || w.ends_with("ed")) && *verb_form => {
                    Tag::Verb
                }
                None if r.verb > 0 && r.verb >= r.noun => Tag::Verb, // imperative
                _ => {
                    if heaviest == Tag::Adj && !next_nounish && prev != Some(Tag::Aux) {
                        Tag::Adj
                    } else {
                        heaviest
                    }
                }
            };
            tags.push(tag);
        }
        let is_obj = |t: Tag| matches!(t, Tag::Noun | Tag::Pron);
        let mut complexity = 0;
        let mut action = None;
        for (i, &t) in tags.iter().enumerate() {
            match t {
                Tag::Adj => {
                    let before_noun = tags.get(i + 1).is_some_and(|&n| n == Tag::Noun);
                    let after_be =
                        i > 0 && BE.contains(&ws[i - 1]) && tags[..i].iter().any(|&x| is_obj(x));
                    complexity += (before_noun || after_be) as usize;
                }
                Tag::Prep => {
                    let left = tags[..i]
                        .iter()
                        .rev()
                        .take(3)
                        .any(|&x| is_obj(x) || x == Tag::Verb);
                    let right = tags[i + 1..].iter().take(3).any(|&x| is_obj(x));
                    complexity += (left && right) as usize;
                }
                Tag::Verb => {
                    let lemma = &info[i].2;
                    let subject = tags[..i].iter().any(|&x| is_obj(x));
                    let object = tags[i + 1..].iter().take(3).any(|&x| is_obj(x));
                    complexity += (subject || object) as usize;
                    if !NON_ACTION.contains(&lemma.as_str()) && action.is_none() {
                        action = Some(lemma.clone());
                    }
                }
                _ => {}
            }
        }
        if !tags.iter().any(|&x| is_obj(x)) {
            complexity = 0;
        }
        CatResult {
            tags,
            complexity,
            action,
        }
    }
}
