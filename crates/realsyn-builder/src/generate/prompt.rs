//! The merge prompt (paper App. A.2, verbatim in `a2_merge_prompt.txt`): the
//! instruction the paper gave ChatGPT-4 Turbo to build its 100K instruction set, with
//! `{raw_caption}` (the retrieved realistic text), `{synthetic_caption}` (the
//! captioner's caption) and `{detection_tags}` (the tagger's tags, comma-separated)
//! filled in. A template file may replace it (same three placeholders); its SHA-256
//! goes into every sample's provenance.

use anyhow::{Result, bail};
use sha2::{Digest, Sha256};

/// The paper's App. A.2 prompt.
pub const A2_MERGE_PROMPT: &str = include_str!("a2_merge_prompt.txt");

#[derive(Debug, Clone, PartialEq)]
pub struct MergePrompt {
    pub template: String,
}

impl MergePrompt {
    pub fn new(template: &str) -> Result<Self> {
        for p in ["{raw_caption}", "{synthetic_caption}", "{detection_tags}"] {
            if !template.contains(p) {
                bail!("the merge prompt template has no {p} placeholder");
            }
        }
        Ok(Self {
            template: template.to_string(),
        })
    }

    pub fn paper() -> Self {
        Self::new(A2_MERGE_PROMPT).expect("the A.2 prompt has its placeholders")
    }

    /// SHA-256 of the template, hex (16 digits).
    pub fn hash(&self) -> String {
        Sha256::digest(self.template.as_bytes())[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The label text just before each placeholder ("Raw caption:", "synthetic
    /// caption:", "highly relevant detection tags:" in A.2): back to the previous
    /// placeholder or sentence end, without a leading ", and".
    pub fn labels(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut from = 0;
        for p in ["{raw_caption}", "{synthetic_caption}", "{detection_tags}"] {
            let Some(at) = self.template.find(p) else {
                continue;
            };
            let before = &self.template[from.min(at)..at];
            let start = before.rfind(['.', '}', '\n']).map_or(0, |i| i + 1);
            let label = before[start..]
                .trim_start_matches(|c: char| c == ',' || c.is_whitespace())
                .trim_start_matches("and ")
                .trim();
            if label.chars().count() >= 8 {
                out.push(label.to_string());
            }
            from = at + p.len();
        }
        out
    }

    /// Does a reply copy one of the template's labels (a small LLM filling the
    /// template in instead of merging)? Case-insensitive.
    pub fn copied_by(&self, reply: &str) -> bool {
        let reply = reply.to_lowercase();
        self.labels()
            .iter()
            .any(|l| reply.contains(&l.to_lowercase()))
    }

    pub fn render(&self, raw_caption: &str, synthetic_caption: &str, tags: &[&str]) -> String {
        self.template
            .replace("{raw_caption}", raw_caption)
            .replace("{synthetic_caption}", synthetic_caption)
            .replace("{detection_tags}", &tags.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_prompt_is_filled_in() {
        let p = MergePrompt::paper();
        assert!(
            p.template
                .starts_with("Please merge the information from the given raw text")
        );
        let s = p.render(
            "A bus in Rome.",
            "a red bus on a street",
            &["bus", "street"],
        );
        assert!(s.ends_with(
            "Raw caption:A bus in Rome., synthetic caption:a red bus on a street, and highly relevant detection tags:bus, street"
        ));
        assert!(MergePrompt::new("no placeholders").is_err());
        assert_eq!(
            p.labels(),
            [
                "Raw caption:",
                "synthetic caption:",
                "highly relevant detection tags:"
            ]
        );
        // SmolLM2-135M's habit: the template's fields filled in, not a merge.
        assert!(p.copied_by("A bus in Rome, Synthetic caption: a red bus, and tags: bus"));
        assert!(!p.copied_by("A red bus drives down a street in Rome."));
    }
}
