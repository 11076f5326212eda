//! Paper §3.1, sentence filters: the rules at extraction (`text_filters`: emoji,
//! URLs, length; `cat`: the CAT complexity + action filter over a WordNet-lexicon
//! tagger), information entropy (Eq. 1, corpus-wide word probabilities) and GPT-2
//! perplexity (`perplexity`: the kept range and the `PerplexityScorer` a model
//! plugs into). `stage`: the `filter-text` stage.

pub mod cat;
pub mod perplexity;
pub mod stage;
pub mod text_filters;
