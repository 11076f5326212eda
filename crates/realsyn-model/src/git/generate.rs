//! Captioning with GIT: greedy decoding and beam search over a KV cache, batched over
//! images, reproducing transformers' `generate(pixel_values=...)` token for token
//! (greedy = `do_sample=False`; beam search = its vectorised `_beam_search` with
//! `early_stopping=False`, the length penalty on the generated length, and the same
//! early-stop heuristic), and `GitCaptioner`, which ties the model to its WordPiece
//! tokenizer: normalised pixels in, caption text out.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use tokenizers::Tokenizer;

use super::{Git, GitConfig, ImagePrefix, TextCache};
use crate::common::batch::{image_batch, to_rows};
use crate::llama::generate::{FinishReason, Generated, argmax};

/// transformers' score for "never": added to scores that must not be chosen.
const NEG: f32 = -1.0e9;

/// How captions are decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionParams {
    /// New tokens at most (the `[SEP]` that ends a caption counts).
    pub max_new_tokens: usize,
    /// 1 = greedy.
    pub num_beams: usize,
    /// Beam scores are sum(log p) / generated_length^length_penalty.
    pub length_penalty: f32,
}

impl Default for CaptionParams {
    /// GIT's own generation settings for COCO captions (greedy, up to 50 tokens with
    /// the `[CLS]` prompt, as its model card generates).
    fn default() -> Self {
        Self {
            max_new_tokens: 49,
            num_beams: 1,
            length_penalty: 1.0,
        }
    }
}

fn check(model: &Git<impl Backend>, prompt: &[u32], max_new: usize) -> Result<()> {
    if prompt.is_empty() {
        bail!("GIT needs a prompt (its [CLS] token)");
    }
    let vocab = model.vocab_size();
    if let Some(bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
        bail!("token id {bad} is outside the vocabulary of {vocab}");
    }
    if prompt.len() + max_new > model.max_positions() {
        bail!(
            "a prompt of {} tokens + {max_new} new ones exceeds GIT's {} text positions",
            prompt.len(),
            model.max_positions()
        );
    }
    Ok(())
}

fn ids_tensor<B: Backend>(rows: &[Vec<u32>], device: &B::Device) -> Tensor<B, 2, Int> {
    let n = rows.first().map_or(0, Vec::len);
    let flat: Vec<i64> = rows.iter().flatten().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), n]), device)
}

/// The next-token logits of every row after feeding `ids` ([rows, n]), on the host.
fn next_logits<B: Backend>(
    model: &Git<B>,
    prefix: &ImagePrefix<B>,
    cache: &mut TextCache<B>,
    ids: Tensor<B, 2, Int>,
) -> Vec<f32> {
    let [rows, n] = ids.dims();
    let h = model.decode(prefix, cache, ids);
    let w = h.dims()[2];
    let last = h.slice([0..rows, n - 1..n]).reshape([rows, w]);
    to_rows(model.head(last)).0
}

/// Greedy captions of `images` ([batch, 3, s, s]) after `prompt`. Rows that reach
/// `eos` leave the batch.
pub fn greedy<B: Backend>(
    model: &Git<B>,
    images: Tensor<B, 4>,
    prompt: &[u32],
    max_new_tokens: usize,
    eos: u32,
) -> Result<Vec<Generated>> {
    check(model, prompt, max_new_tokens)?;
    let b = images.dims()[0];
    let device = images.device();
    let vocab = model.vocab_size();
    let mut prefix = model.encode_images(images);
    let mut cache = TextCache::new(model.layers.len());
    let mut out = vec![
        Generated {
            ids: Vec::new(),
            finish: FinishReason::Length,
        };
        b
    ];
    // `active[r]`: the image of batch row r.
    let mut active: Vec<usize> = (0..b).collect();
    let mut ids = ids_tensor::<B>(&vec![prompt.to_vec(); b], &device);
    for _ in 0..max_new_tokens {
        let logits = next_logits(model, &prefix, &mut cache, ids);
        let mut keep = Vec::new();
        let mut next = Vec::new();
        for (r, &img) in active.iter().enumerate() {
            let tok = argmax(&logits[r * vocab..(r + 1) * vocab]);
            if tok == eos {
                out[img].finish = FinishReason::Stop;
            } else {
                out[img].ids.push(tok);
                keep.push(r);
                next.push(vec![tok]);
            }
        }
        if keep.is_empty() {
            break;
        }
        if keep.len() < active.len() {
            prefix = prefix.select(&keep);
            cache.select(&keep);
            active = keep.iter().map(|&r| active[r]).collect();
        }
        ids = ids_tensor::<B>(&next, &device);
    }
    Ok(out)
}

/// One hypothesis of a beam.
#[derive(Debug, Clone)]
struct Hyp {
    /// Generated tokens (the prompt excluded; a final `eos` included).
    ids: Vec<u32>,
    score: f32,
    /// A finished slot holds a real finished hypothesis (transformers' `is_sent_finished`).
    done: bool,
}

/// The beam state of one image.
struct Beams {
    running: Vec<Hyp>,
    finished: Vec<Hyp>,
    /// transformers' `is_early_stop_heuristic_unsatisfied`: false once no running beam
    /// can beat the worst finished one; the image's result is then fixed.
    open: bool,
}

/// Indices of the `k` largest values, largest first (ties: lower index first).
fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    let k = k.min(values.len());
    idx.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| {
        values[b].total_cmp(&values[a]).then(a.cmp(&b))
    });
    idx.truncate(k);
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx
}

/// log_softmax of one row in f32 (max-shifted, as torch computes it).
fn log_softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
    let lse = sum.ln() as f32;
    row.iter().map(|&v| v - max - lse).collect()
}

/// Beam search (transformers' `_beam_search`, `early_stopping=False`): per image,
/// the `2 * num_beams` best continuations of all beams; those that end (`eos` or the
/// length limit) among the first `num_beams` compete for the finished slots with
/// score / length^penalty, the others continue. Returns the best finished hypothesis
/// of each image.
pub fn beam_search<B: Backend>(
    model: &Git<B>,
    images: Tensor<B, 4>,
    prompt: &[u32],
    params: &CaptionParams,
    eos: u32,
) -> Result<Vec<Generated>> {
    let nb = params.num_beams.max(1);
    check(model, prompt, params.max_new_tokens)?;
    let b = images.dims()[0];
    let device = images.device();
    let vocab = model.vocab_size();
    let max_new = params.max_new_tokens;
    let k = 2 * nb;
    let rows_of_images: Vec<usize> = (0..b * nb).map(|r| r / nb).collect();
    let prefix = model.encode_images(images).select(&rows_of_images);
    let mut cache = TextCache::new(model.layers.len());
    let start = |j: usize| Hyp {
        ids: Vec::new(),
        score: if j == 0 { 0.0 } else { NEG },
        done: false,
    };
    let mut beams: Vec<Beams> = (0..b)
        .map(|_| Beams {
            running: (0..nb).map(start).collect(),
            finished: (0..nb)
                .map(|_| Hyp {
                    ids: Vec::new(),
                    score: NEG,
                    done: false,
                })
                .collect(),
            open: max_new > 0,
        })
        .collect();
    let mut ids = ids_tensor::<B>(&vec![prompt.to_vec(); b * nb], &device);
    for step in 0..max_new {
        if beams.iter().all(|s| !s.open) {
            break;
        }
        let logits = next_logits(model, &prefix, &mut cache, ids);
        let generated = step + 1;
        let last_step = generated >= max_new;
        let norm = (generated as f32).powf(params.length_penalty);
        let mut reorder = Vec::with_capacity(b * nb);
        let mut next = Vec::with_capacity(b * nb);
        for (i, s) in beams.iter_mut().enumerate() {
            // Candidates over (beam, token), scored by the running sum of log-probs.
            let mut acc = Vec::with_capacity(nb * vocab);
            for (j, h) in s.running.iter().enumerate() {
                let r = i * nb + j;
                acc.extend(
                    log_softmax(&logits[r * vocab..(r + 1) * vocab])
                        .into_iter()
                        .map(|lp| lp + h.score),
                );
            }
            let top = top_k(&acc, k);
            let cands: Vec<(usize, u32, f32, bool)> = top
                .iter()
                .map(|&c| {
                    let (beam, tok) = (c / vocab, (c % vocab) as u32);
                    (beam, tok, acc[c], tok == eos || last_step)
                })
                .collect();
            let extend = |beam: usize, tok: u32| {
                let mut ids = s.running[beam].ids.clone();
                ids.push(tok);
                ids
            };
            // The running beams of the next step: the best candidates that did not end.
            let running_scores: Vec<f32> = cands
                .iter()
                .map(|&(_, _, sc, hit)| if hit { sc + NEG } else { sc })
                .collect();
            let keep = top_k(&running_scores, nb);
            // Finished slots: the old ones and the candidates among the first
            // `num_beams` that ended, length-normalised; the best `num_beams` stay.
            let mut merged: Vec<Hyp> = s.finished.clone();
            for (c, &(beam, tok, sc, hit)) in cands.iter().enumerate() {
                let mut score = sc / norm;
                if !s.open {
                    score += NEG;
                }
                let finished_now = hit && c < nb;
                if !finished_now {
                    score += NEG;
                }
                merged.push(Hyp {
                    ids: extend(beam, tok),
                    score,
                    done: finished_now,
                });
            }
            let scores: Vec<f32> = merged.iter().map(|h| h.score).collect();
            let best = top_k(&scores, nb);
            let new_finished: Vec<Hyp> = best.iter().map(|&m| merged[m].clone()).collect();
            let new_running: Vec<Hyp> = keep
                .iter()
                .map(|&c| {
                    let (beam, tok, _, _) = cands[c];
                    Hyp {
                        ids: extend(beam, tok),
                        score: running_scores[c],
                        done: false,
                    }
                })
                .collect();
            for &c in &keep {
                reorder.push(i * nb + cands[c].0);
                next.push(vec![cands[c].1]);
            }
            s.finished = new_finished;
            s.running = new_running;
            // Early-stop heuristic: can the best running beam still beat a finished slot?
            let best_possible = s.running[0].score / norm;
            let worst = s
                .finished
                .iter()
                .map(|h| h.score)
                .fold(f32::INFINITY, f32::min);
            let improvable = s
                .finished
                .iter()
                .any(|h| best_possible > if h.done { worst } else { NEG });
            let all_hit = cands.iter().all(|c| c.3);
            s.open = s.open && improvable && !all_hit;
        }
        cache.select(&reorder);
        ids = ids_tensor::<B>(&next, &device);
    }
    Ok(beams
        .into_iter()
        .map(|s| {
            let best = s.finished.into_iter().next().expect("num_beams >= 1");
            let mut ids = best.ids;
            let finish = if ids.last() == Some(&eos) {
                ids.pop();
                FinishReason::Stop
            } else {
                FinishReason::Length
            };
            Generated { ids, finish }
        })
        .collect())
}

/// Greedy or beam search by `params.num_beams`.
pub fn caption_ids<B: Backend>(
    model: &Git<B>,
    images: Tensor<B, 4>,
    prompt: &[u32],
    params: &CaptionParams,
    eos: u32,
) -> Result<Vec<Generated>> {
    if params.num_beams <= 1 {
        greedy(model, images, prompt, params.max_new_tokens, eos)
    } else {
        beam_search(model, images, prompt, params, eos)
    }
}

/// A GIT snapshot ready to caption: the model, its config and its tokenizer
/// (`tokenizer.json`, else BERT's WordPiece built from `vocab.txt`).
#[derive(Debug)]
pub struct GitCaptioner<B: Backend> {
    pub model: Git<B>,
    pub config: GitConfig,
    pub tokenizer: Tokenizer,
    pub params: CaptionParams,
    /// The snapshot folder's name (the model id recorded with each caption).
    pub name: String,
    device: B::Device,
}

/// A snapshot's tokenizer: `tokenizer.json`, or a lower-casing BERT WordPiece from
/// `vocab.txt` (what `BertTokenizerFast` builds for git-base).
pub fn load_wordpiece(dir: &Path) -> Result<Tokenizer> {
    let json = dir.join("tokenizer.json");
    if json.exists() {
        return Tokenizer::from_file(&json).map_err(|e| anyhow::anyhow!("{}: {e}", json.display()));
    }
    let vocab = dir.join("vocab.txt");
    if !vocab.exists() {
        bail!(
            "{}: no tokenizer.json or vocab.txt (the GIT snapshot's BERT tokenizer)",
            dir.display()
        );
    }
    use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
    use tokenizers::models::wordpiece::WordPiece;
    use tokenizers::normalizers::bert::BertNormalizer;
    use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
    let model = WordPiece::from_file(&vocab.to_string_lossy())
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| anyhow::anyhow!("{}: {e}", vocab.display()))?;
    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_decoder(Some(WordPieceDecoder::default()));
    let specials: Vec<tokenizers::AddedToken> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|t| tokenizers::AddedToken::from(*t, true))
        .collect();
    tok.add_special_tokens(&specials);
    // [CLS] text [SEP], as BertTokenizerFast encodes.
    let id = |t: &str| {
        tok.token_to_id(t)
            .ok_or_else(|| anyhow::anyhow!("{}: no {t} token", vocab.display()))
    };
    let post = tokenizers::processors::bert::BertProcessing::new(
        ("[SEP]".into(), id("[SEP]")?),
        ("[CLS]".into(), id("[CLS]")?),
    );
    tok.with_post_processor(Some(post));
    Ok(tok)
}

impl<B: Backend> GitCaptioner<B> {
    pub fn load(dir: &Path, params: CaptionParams, device: &B::Device) -> Result<Self> {
        let (model, config) = Git::load(dir, device)?;
        let tokenizer = load_wordpiece(dir)?;
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > config.vocab_size {
            bail!(
                "{}: the tokenizer has {vocab} tokens, the model {}",
                dir.display(),
                config.vocab_size
            );
        }
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(Self {
            model,
            config,
            tokenizer,
            params,
            name,
            device: device.clone(),
        })
    }

    pub fn image_size(&self) -> usize {
        self.model.image_size()
    }

    /// Captions of images already resized, cropped and normalised (CLIP's eval
    /// transform at `image_size`, each `3 * s * s` values): text and why it ended.
    pub fn caption(&self, pixels: &[Vec<f32>]) -> Result<Vec<(String, FinishReason)>> {
        if pixels.is_empty() {
            return Ok(Vec::new());
        }
        let images = image_batch::<B>(pixels, self.image_size(), &self.device);
        let out = caption_ids(
            &self.model,
            images,
            &[self.config.bos_token_id],
            &self.params,
            self.config.eos_token_id,
        )?;
        out.into_iter()
            .map(|g| {
                let text = self
                    .tokenizer
                    .decode(&g.ids, true)
                    .map_err(|e| anyhow::anyhow!("decoding a caption: {e}"))
                    .context("GIT tokenizer")?;
                Ok((text.trim().to_string(), g.finish))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_sorted_and_breaks_ties_by_index() {
        assert_eq!(top_k(&[0.1, 0.5, 0.5, -1.0, 0.3], 3), vec![1, 2, 4]);
        assert_eq!(top_k(&[1.0], 3), vec![0]);
        let lp = log_softmax(&[1.0, 2.0, 3.0]);
        let total: f32 = lp.iter().map(|v| v.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6 && lp[2] > lp[1]);
    }
}
