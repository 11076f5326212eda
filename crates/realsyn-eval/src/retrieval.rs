//! Image-text retrieval Recall@K as CLIP_benchmark's `zeroshot_retrieval` computes it:
//! scores = image_features @ text_features^T (both normalised); text->image recall
//! ("image_retrieval_recall@k") is whether each text's image is in its top K;
//! image->text recall ("text_retrieval_recall@k") counts a hit when ANY of the
//! image's captions is in the image's top K.

use std::collections::BTreeMap;

/// `scores[i * n_texts + t]` for image i and text t; `text_image[t]` is text t's image.
pub fn retrieval_recalls(
    scores: &[f32],
    n_images: usize,
    text_image: &[usize],
    ks: &[usize],
) -> BTreeMap<String, f64> {
    let n_texts = text_image.len();
    assert_eq!(
        scores.len(),
        n_images * n_texts,
        "scores must be [images, texts]"
    );
    let mut out = BTreeMap::new();
    // Rank = number of candidates scoring strictly higher (ties are rare with float
    // features; torch.topk would break them arbitrarily).
    let text_ranks: Vec<usize> = (0..n_texts)
        .map(|t| {
            let target = scores[text_image[t] * n_texts + t];
            (0..n_images)
                .filter(|&i| scores[i * n_texts + t] > target)
                .count()
        })
        .collect();
    let image_ranks: Vec<usize> = (0..n_images)
        .map(|i| {
            let row = &scores[i * n_texts..(i + 1) * n_texts];
            (0..n_texts)
                .filter(|&t| text_image[t] == i)
                .map(|t| row.iter().filter(|&&v| v > row[t]).count())
                .min()
                .unwrap_or(usize::MAX)
        })
        .collect();
    for &k in ks {
        let img = text_ranks.iter().filter(|&&r| r < k).count() as f64 / n_texts.max(1) as f64;
        let txt = image_ranks.iter().filter(|&&r| r < k).count() as f64 / n_images.max(1) as f64;
        out.insert(format!("image_retrieval_recall@{k}"), img);
        out.insert(format!("text_retrieval_recall@{k}"), txt);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_caption_counts_for_image_to_text() {
        // 2 images, 3 texts: texts 0, 1 belong to image 0, text 2 to image 1.
        let scores = [
            0.9, 0.1, 0.8, // image 0: its best own caption (0) is first
            0.95, 0.2, 0.3, // image 1: its caption (2) is second
        ];
        let r = retrieval_recalls(&scores, 2, &[0, 0, 1], &[1, 2]);
        assert_eq!(r["text_retrieval_recall@1"], 0.5);
        assert_eq!(r["text_retrieval_recall@2"], 1.0);
        // text 0: image 1 scores 0.95 > 0.9 -> rank 1; text 1: rank 1; text 2: rank 1.
        assert_eq!(r["image_retrieval_recall@1"], 0.0);
        assert_eq!(r["image_retrieval_recall@2"], 1.0);
    }
}
