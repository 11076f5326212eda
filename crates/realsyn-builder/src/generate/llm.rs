//! What the merge step asks of a language model, whoever serves it: an OpenAI-style
//! chat request, its reply, and the checks every reply passes before it becomes a
//! synthetic text. The embedded engine (realsyn's Llama in Burn, adapted in
//! `realsyn-runtime`) and the HTTP client (`openai`) both implement `ChatLlm`.

use serde::{Deserialize, Serialize};

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// One request: OpenAI's chat-completions fields that change the text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    /// Per request, so a text does not depend on its batch or on retries.
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

/// A reply as the server gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatReply {
    pub text: String,
    /// `stop` or `length` (OpenAI's words).
    pub finish_reason: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// Why a request produced no usable text (the funnel's reasons).
pub mod failure {
    pub const EMPTY: &str = "LLM reply empty";
    pub const CUT: &str = "LLM reply cut at max_tokens (finish_reason = length)";
    pub const ECHO: &str = "LLM reply echoes the prompt";
    /// The reply copies the merge template's field labels ("synthetic caption: ...").
    pub const TEMPLATE: &str = "LLM reply copies the prompt template's labels";
    pub const SERVER: &str = "LLM server error (5xx) after retries";
    pub const RATE: &str = "LLM rate-limited (429) after retries";
    pub const TIMEOUT: &str = "LLM request timed out after retries";
    pub const CONNECTION: &str = "LLM connection failed after retries";
    pub const MALFORMED: &str = "LLM reply not valid chat-completion JSON";
    pub const REJECTED: &str = "LLM request rejected (4xx)";
    pub const ENGINE: &str = "embedded LLM failed";
    /// Offline batch mode: written to the batch file, not answered yet. Never a
    /// final outcome: the stage stops before committing such a row.
    pub const QUEUED: &str = "queued for the offline batch run";
}

/// A language model that answers chat requests in batches. Results come back in
/// request order; a failed request is `Err(reason)` (one of `failure`), never a
/// panic, so one bad request costs one synthetic text.
pub trait ChatLlm {
    /// The model id written into every sample's provenance.
    fn model_id(&self) -> String;
    /// How many requests to hand over at once (the engine's batch or the client's
    /// concurrency).
    fn batch_size(&self) -> usize;
    fn complete(&mut self, requests: &[ChatRequest]) -> Vec<Result<ChatReply, &'static str>>;
}

/// The checks a reply passes to become a synthetic text: not empty, not cut by the
/// token limit, not the prompt echoed back. Returns the trimmed text.
pub fn validate(request: &ChatRequest, reply: &ChatReply) -> Result<String, &'static str> {
    let text = reply.text.trim();
    if text.is_empty() {
        return Err(failure::EMPTY);
    }
    if reply.finish_reason == "length" {
        return Err(failure::CUT);
    }
    let prompt = request
        .messages
        .last()
        .map(|m| m.content.trim())
        .unwrap_or("");
    // An echo: the reply repeats a long stretch of the instruction (the first 200
    // characters of the prompt, or the whole prompt when shorter).
    let head: String = prompt.chars().take(200).collect();
    if !head.is_empty() && (text.contains(head.as_str()) || prompt == text) {
        return Err(failure::ECHO);
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(prompt: &str) -> ChatRequest {
        ChatRequest {
            messages: vec![Message {
                role: "user".into(),
                content: prompt.into(),
            }],
            max_tokens: 16,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop: vec![],
        }
    }

    fn reply(text: &str, finish: &str) -> ChatReply {
        ChatReply {
            text: text.into(),
            finish_reason: finish.into(),
            prompt_tokens: 1,
            completion_tokens: 1,
        }
    }

    #[test]
    fn replies_are_checked() {
        let r = req("Please merge the information from the given raw text.");
        assert_eq!(
            validate(&r, &reply("  A red bus.\n", "stop")),
            Ok("A red bus.".into())
        );
        assert_eq!(validate(&r, &reply(" \n", "stop")), Err(failure::EMPTY));
        assert_eq!(validate(&r, &reply("A red", "length")), Err(failure::CUT));
        assert_eq!(
            validate(
                &r,
                &reply(
                    "Sure: Please merge the information from the given raw text.",
                    "stop"
                )
            ),
            Err(failure::ECHO)
        );
    }
}
