//! The perplexity filter (paper 3.1: keep 30 <= PPL <= 200 under GPT-2 large, with
//! PPL(x) = exp(-1/t sum_i log p(x_i | x_<i))). The language model plugs in through
//! [`PerplexityScorer`]; the CLI provides realsyn's GPT-2 in Burn
//! (`realsyn_model::Gpt2Perplexity`), on the CPU or a GPU.

use anyhow::Result;
use serde::{Deserialize, Serialize};

pub const MIN_PERPLEXITY: f64 = 30.0;
pub const MAX_PERPLEXITY: f64 = 200.0;

/// Sentences handed to the scorer per call: bounds memory and paces the progress bar.
pub const SCORE_CHUNK: usize = 1024;

pub trait PerplexityScorer {
    /// What scores the sentences, for logs.
    fn name(&self) -> String;
    /// One perplexity per text, in order; `None` for a text with no tokens.
    fn perplexities(&mut self, texts: &[&str]) -> Result<Vec<Option<f64>>>;
}

/// The kept range, inclusive at both ends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PerplexityRange {
    pub min: f64,
    pub max: f64,
}

impl Default for PerplexityRange {
    fn default() -> Self {
        Self {
            min: MIN_PERPLEXITY,
            max: MAX_PERPLEXITY,
        }
    }
}

impl PerplexityRange {
    /// The funnel step's name.
    pub fn step_name(&self) -> String {
        format!("perplexity in [{}, {}]", self.min, self.max)
    }

    /// Why a sentence with this perplexity is dropped, or `None` to keep it.
    pub fn drop_reason(&self, ppl: Option<f64>) -> Option<&'static str> {
        match ppl {
            None => Some("no tokens"),
            Some(p) if p.is_nan() => Some("no tokens"),
            Some(p) if p < self.min => Some("perplexity too low"),
            Some(p) if p > self.max => Some("perplexity too high"),
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_inclusive_and_names_reasons() {
        let r = PerplexityRange::default();
        assert_eq!(r.drop_reason(Some(30.0)), None);
        assert_eq!(r.drop_reason(Some(200.0)), None);
        assert_eq!(r.drop_reason(Some(29.99)), Some("perplexity too low"));
        assert_eq!(r.drop_reason(Some(200.01)), Some("perplexity too high"));
        assert_eq!(r.drop_reason(None), Some("no tokens"));
        assert_eq!(r.step_name(), "perplexity in [30, 200]");
    }
}
