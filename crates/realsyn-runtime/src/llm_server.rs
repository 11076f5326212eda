//! `realsyn llm serve`: the embedded LLM behind an OpenAI-compatible HTTP endpoint,
//! so the builder (or anything that speaks the API) can use it as a service:
//! `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`.
//!
//! Requests that arrive together are generated as one batch (up to `batch`), as a
//! serving engine batches; each keeps its own seed, so its text does not depend on
//! its batch-mates under sampling. Invalid requests get a 400 with OpenAI's error
//! shape; `n` other than 1 is refused.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow};
use burn::tensor::backend::Backend;
use realsyn_builder::generate::llm::{ChatLlm, ChatRequest, Message};
use serde_json::{Value, json};

use crate::llm::EmbeddedLlm;

pub struct ServeOptions {
    /// host:port, e.g. 127.0.0.1:8000.
    pub addr: String,
    /// Requests generated together at most.
    pub batch: usize,
    /// Stop after this many requests (tests); `None`: serve until killed.
    pub max_requests: Option<usize>,
}

fn error(status: u16, message: &str) -> (u16, Value) {
    (
        status,
        json!({"error": {"message": message, "type": "invalid_request_error"}}),
    )
}

/// OpenAI's request body -> the builder's request (or a 400's message).
pub fn parse_request(body: &str) -> Result<ChatRequest, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("body is not JSON: {e}"))?;
    if v.get("n").and_then(Value::as_u64).is_some_and(|n| n != 1) {
        return Err("only n = 1 is supported".into());
    }
    let messages = v
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("messages: a non-empty array is required")?
        .iter()
        .map(|m| {
            let role = m["role"].as_str().ok_or("each message needs a role")?;
            let content = match &m["content"] {
                Value::String(s) => s.clone(),
                // Content parts: the text ones, joined (images are not understood).
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => return Err("each message needs a string content"),
            };
            Ok(Message {
                role: role.to_string(),
                content,
            })
        })
        .collect::<Result<Vec<_>, &str>>()?;
    let f = |k: &str, d: f64| v.get(k).and_then(Value::as_f64).unwrap_or(d);
    let stop = match v.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    Ok(ChatRequest {
        messages,
        max_tokens: v
            .get("max_tokens")
            .or_else(|| v.get("max_completion_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(256) as usize,
        // OpenAI's defaults.
        temperature: f("temperature", 1.0) as f32,
        top_p: f("top_p", 1.0) as f32,
        seed: v.get("seed").and_then(Value::as_i64).unwrap_or(0) as u64,
        stop,
    })
}

fn respond(req: tiny_http::Request, status: u16, body: &Value) {
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
        .expect("static header");
    let resp = tiny_http::Response::from_string(body.to_string())
        .with_status_code(status)
        .with_header(header);
    let _ = req.respond(resp);
}

/// Serve until killed (or `max_requests`).
pub fn serve(device: &str, gguf: &Path, opts: ServeOptions) -> Result<()> {
    struct Job<'a> {
        gguf: &'a Path,
        opts: ServeOptions,
    }
    impl crate::device::BackendJob for Job<'_> {
        type Output = ();
        fn run<B: Backend>(self, device: B::Device) -> Result<()> {
            let mut llm = EmbeddedLlm::<B>::load(self.gguf, self.opts.batch, &device)?;
            run_server(&mut llm, &self.opts)
        }
    }
    crate::device::dispatch(device, Job { gguf, opts })
}

fn run_server(llm: &mut dyn ChatLlm, opts: &ServeOptions) -> Result<()> {
    let server =
        tiny_http::Server::http(&opts.addr).map_err(|e| anyhow!("binding {}: {e}", opts.addr))?;
    let model = llm.model_id();
    eprintln!(
        "serving {model} on http://{}/v1 (POST /v1/chat/completions, batches of up to {})",
        opts.addr, opts.batch
    );
    let mut served = 0usize;
    let mut counter = 0u64;
    while opts.max_requests.is_none_or(|m| served < m) {
        // Block for one request, then take whatever else is already waiting.
        let mut pending = vec![server.recv()?];
        while pending.len() < opts.batch.max(1) {
            match server.recv_timeout(Duration::from_millis(5))? {
                Some(r) => pending.push(r),
                None => break,
            }
        }
        let mut batch: Vec<(tiny_http::Request, ChatRequest)> = Vec::new();
        for mut req in pending {
            served += 1;
            let path = req.url().split('?').next().unwrap_or("").to_string();
            let (status, body) = match (req.method(), path.as_str()) {
                (tiny_http::Method::Get, "/health") => (200, json!({"status": "ok"})),
                (tiny_http::Method::Get, "/v1/models") => (
                    200,
                    json!({"object": "list", "data": [{"id": model, "object": "model", "owned_by": "realsyn"}]}),
                ),
                (tiny_http::Method::Post, "/v1/chat/completions") => {
                    let mut body = String::new();
                    if let Err(e) = req.as_reader().read_to_string(&mut body) {
                        error(400, &format!("reading the body: {e}"))
                    } else {
                        match parse_request(&body) {
                            Ok(r) => {
                                batch.push((req, r));
                                continue;
                            }
                            Err(m) => error(400, &m),
                        }
                    }
                }
                _ => error(404, &format!("no route {path}")),
            };
            respond(req, status, &body);
        }
        if batch.is_empty() {
            continue;
        }
        let requests: Vec<ChatRequest> = batch.iter().map(|(_, r)| r.clone()).collect();
        let replies = llm.complete(&requests);
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for ((req, _), reply) in batch.into_iter().zip(replies) {
            counter += 1;
            match reply {
                Ok(r) => respond(
                    req,
                    200,
                    &json!({
                        "id": format!("chatcmpl-{counter}"),
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": r.text},
                                     "finish_reason": r.finish_reason}],
                        "usage": {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                                  "total_tokens": r.prompt_tokens + r.completion_tokens},
                    }),
                ),
                Err(reason) => respond(
                    req,
                    500,
                    &json!({"error": {"message": reason, "type": "server_error"}}),
                ),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_parsed_as_openai_defines_them() {
        let r = parse_request(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":5,"temperature":0,"seed":3,"stop":"x"}"#,
        )
        .unwrap();
        assert_eq!((r.max_tokens, r.temperature, r.seed), (5, 0.0, 3));
        assert_eq!(r.messages[0].content, "hi");
        assert_eq!(r.stop, vec!["x".to_string()]);
        assert!(parse_request(r#"{"messages":[],"n":1}"#).is_err());
        assert!(parse_request(r#"{"messages":[{"role":"user","content":"a"}],"n":2}"#).is_err());
        assert!(parse_request("{oops").is_err());
    }
}
