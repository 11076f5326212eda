//! Captioners: a short caption of each image (the paper's OFA step). Implementations:
//! a vision-language model behind an OpenAI-compatible chat endpoint (`VisionChat`,
//! the image sent as a base64 JPEG data URL) and, in `realsyn-runtime`, models of the
//! model library. Without a captioner the image's alt text from its document is the
//! caption, marked `alt-text` in each sample.

use std::io::Cursor;

use base64::Engine;
use serde_json::json;

use super::llm::validate;
use super::llm::{ChatRequest, Message};
use super::openai::{ClientOptions, OpenAiClient};

/// The instruction a chat model is given to caption an image (OFA's task prompt).
pub const CAPTION_PROMPT: &str = "What does the image describe? Answer with one short sentence.";

pub trait Captioner {
    fn model_id(&self) -> String;
    fn batch_size(&self) -> usize;
    /// One caption per image, in order, or why there is none.
    fn caption(&mut self, images: &[image::DynamicImage]) -> Vec<Result<String, &'static str>>;
}

/// A vision chat model served with an OpenAI-compatible API (vLLM, llama.cpp).
pub struct VisionChat {
    client: OpenAiClient,
    pub max_tokens: usize,
}

impl VisionChat {
    pub fn new(opts: ClientOptions) -> Self {
        Self {
            client: OpenAiClient::new(opts),
            max_tokens: 48,
        }
    }
}

/// An image as a `data:image/jpeg;base64,...` URL (at most 512 px on a side).
pub fn data_url(img: &image::DynamicImage) -> Result<String, &'static str> {
    let img = if img.width().max(img.height()) > 512 {
        img.resize(512, 512, image::imageops::FilterType::Triangle)
    } else {
        img.clone()
    };
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(img.to_rgb8())
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Jpeg)
        .map_err(|_| "image could not be encoded for the captioner")?;
    Ok(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

impl Captioner for VisionChat {
    fn model_id(&self) -> String {
        format!("{} @ {}", self.client.opts.model, self.client.opts.base_url)
    }
    fn batch_size(&self) -> usize {
        (self.client.opts.concurrency * 4).max(1)
    }
    fn caption(&mut self, images: &[image::DynamicImage]) -> Vec<Result<String, &'static str>> {
        let mut bodies = Vec::new();
        let mut slots = Vec::new();
        let mut out: Vec<Result<String, &'static str>> = Vec::with_capacity(images.len());
        for img in images {
            match data_url(img) {
                Ok(url) => {
                    bodies.push(json!({
                        "model": self.client.opts.model,
                        "messages": [{"role": "user", "content": [
                            {"type": "text", "text": CAPTION_PROMPT},
                            {"type": "image_url", "image_url": {"url": url}},
                        ]}],
                        "max_tokens": self.max_tokens,
                        "temperature": 0.0,
                        "seed": 0,
                        "n": 1,
                    }));
                    slots.push(out.len());
                    out.push(Err("captioner gave no answer"));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        let request = ChatRequest {
            messages: vec![Message {
                role: "user".into(),
                content: CAPTION_PROMPT.into(),
            }],
            max_tokens: self.max_tokens,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop: vec![],
        };
        for (slot, reply) in slots.into_iter().zip(self.client.post_all(&bodies)) {
            out[slot] = reply.and_then(|r| validate(&request, &r));
        }
        out
    }
}
