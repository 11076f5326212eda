//! An OpenAI-compatible chat-completions client (vLLM, llama.cpp's server, SGLang,
//! `realsyn llm serve`, any provider): `POST {base}/chat/completions` with `n = 1`,
//! a per-request `seed`, `max_tokens`, `temperature`, `top_p` and `stop`; requests
//! run `concurrency` at a time; a 429 (honouring `Retry-After`), a 5xx, a timeout, a
//! reset connection or a malformed body is retried with exponential backoff, then
//! counted with its reason.
//!
//! Offline batch mode (`write_batch` / `BatchResults`): the same requests as OpenAI
//! Batch JSONL (`custom_id`, `method`, `url`, `body`) for `vllm run-batch` on a GPU
//! cluster, and its output read back as the answers.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::llm::{ChatLlm, ChatReply, ChatRequest, failure};

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// The `model` field (vLLM's served model name).
    pub model: String,
    /// Sent as `Authorization: Bearer ...` when set.
    pub api_key: Option<String>,
    pub concurrency: usize,
    /// Per request (connect + whole response).
    pub timeout: Duration,
    pub retries: u32,
    /// First wait between attempts; doubles each time (at most `max_backoff`).
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl ClientOptions {
    pub fn new(base_url: &str, model: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key: None,
            concurrency: 8,
            timeout: Duration::from_secs(120),
            retries: 4,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

pub struct OpenAiClient {
    agent: ureq::Agent,
    pub opts: ClientOptions,
}

enum Attempt {
    Done(Result<ChatReply, &'static str>),
    /// Worth another try, after `wait` if the server said so.
    Retry(&'static str, Option<Duration>),
}

impl OpenAiClient {
    pub fn new(opts: ClientOptions) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(opts.timeout)
            .timeout(opts.timeout)
            .build();
        Self { agent, opts }
    }

    /// The JSON body of one request.
    pub fn body(&self, r: &ChatRequest) -> Value {
        request_body(&self.opts.model, r)
    }

    /// POST one body, with retries.
    pub fn post(&self, body: &Value) -> Result<ChatReply, &'static str> {
        let mut wait = self.opts.backoff;
        let mut attempt = 0;
        loop {
            match self.once(body) {
                Attempt::Done(r) => return r,
                Attempt::Retry(reason, _) if attempt >= self.opts.retries => return Err(reason),
                Attempt::Retry(_, server_wait) => {
                    std::thread::sleep(server_wait.unwrap_or(wait).min(self.opts.max_backoff));
                    wait = (wait * 2).min(self.opts.max_backoff);
                    attempt += 1;
                }
            }
        }
    }

    fn once(&self, body: &Value) -> Attempt {
        let url = format!("{}/chat/completions", self.opts.base_url);
        let mut req = self
            .agent
            .post(&url)
            .set("Content-Type", "application/json");
        if let Some(key) = &self.opts.api_key {
            req = req.set("Authorization", &format!("Bearer {key}"));
        }
        let resp = match req.send_string(&body.to_string()) {
            Ok(r) => r,
            Err(ureq::Error::Status(code, resp)) => {
                return match code {
                    429 => {
                        let wait = resp
                            .header("Retry-After")
                            .and_then(|s| s.trim().parse::<f64>().ok())
                            .map(Duration::from_secs_f64);
                        Attempt::Retry(failure::RATE, wait)
                    }
                    500..=599 => Attempt::Retry(failure::SERVER, None),
                    408 => Attempt::Retry(failure::TIMEOUT, None),
                    _ => Attempt::Done(Err(failure::REJECTED)),
                };
            }
            Err(ureq::Error::Transport(t)) => {
                let msg = t.to_string().to_lowercase();
                return if msg.contains("timed out") || msg.contains("timeout") {
                    Attempt::Retry(failure::TIMEOUT, None)
                } else {
                    Attempt::Retry(failure::CONNECTION, None)
                };
            }
        };
        let text = match resp.into_string() {
            Ok(t) => t,
            Err(e) => {
                let msg = e.to_string().to_lowercase();
                return if msg.contains("timed out") || msg.contains("timeout") {
                    Attempt::Retry(failure::TIMEOUT, None)
                } else {
                    Attempt::Retry(failure::CONNECTION, None)
                };
            }
        };
        match parse_completion(&text) {
            Some(reply) => Attempt::Done(Ok(reply)),
            None => Attempt::Retry(failure::MALFORMED, None),
        }
    }

    /// Many bodies, `concurrency` at a time; results in input order.
    pub fn post_all(&self, bodies: &[Value]) -> Vec<Result<ChatReply, &'static str>> {
        let results: Vec<Mutex<Option<Result<ChatReply, &'static str>>>> =
            bodies.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..self.opts.concurrency.clamp(1, bodies.len().max(1)) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= bodies.len() {
                            break;
                        }
                        let r = self.post(&bodies[i]);
                        *results[i].lock().expect("result slot") = Some(r);
                    }
                });
            }
        });
        results
            .into_iter()
            .map(|m| {
                m.into_inner()
                    .ok()
                    .flatten()
                    .unwrap_or(Err(failure::CONNECTION))
            })
            .collect()
    }
}

/// The chat-completions body of one request for `model` (also what batch files hold).
pub fn request_body(model: &str, r: &ChatRequest) -> Value {
    let mut body = json!({
        "model": model,
        "messages": r.messages,
        "max_tokens": r.max_tokens,
        "temperature": r.temperature,
        "top_p": r.top_p,
        "seed": r.seed,
        "n": 1,
    });
    if !r.stop.is_empty() {
        body["stop"] = json!(r.stop);
    }
    body
}

/// A chat-completion response body -> the reply, `None` when it is not one.
pub fn parse_completion(text: &str) -> Option<ChatReply> {
    let v: Value = serde_json::from_str(text).ok()?;
    let choice = v.get("choices")?.get(0)?;
    let message = choice.get("message")?;
    let content = match message.get("content")? {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    let usage = |k: &str| {
        v.get("usage")
            .and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize
    };
    Some(ChatReply {
        text: content,
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .unwrap_or("stop")
            .to_string(),
        prompt_tokens: usage("prompt_tokens"),
        completion_tokens: usage("completion_tokens"),
    })
}

impl ChatLlm for OpenAiClient {
    fn model_id(&self) -> String {
        format!("{} @ {}", self.opts.model, self.opts.base_url)
    }
    fn batch_size(&self) -> usize {
        // Enough requests in flight to keep every connection busy.
        (self.opts.concurrency * 4).max(1)
    }
    fn complete(&mut self, requests: &[ChatRequest]) -> Vec<Result<ChatReply, &'static str>> {
        let bodies: Vec<Value> = requests.iter().map(|r| self.body(r)).collect();
        self.post_all(&bodies)
    }
}

/// A request's `custom_id` in batch files: a hash of its body, so answers find their
/// request whatever order a batch runner writes them in.
pub fn custom_id(body: &Value) -> String {
    let digest = Sha256::digest(body.to_string().as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// Append requests to an OpenAI Batch JSONL file (`vllm run-batch -i FILE`).
pub fn write_batch(path: &Path, model: &str, requests: &[ChatRequest]) -> Result<()> {
    let mut f = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?,
    );
    for r in requests {
        let body = request_body(model, r);
        let line = json!({
            "custom_id": custom_id(&body),
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": body,
        });
        writeln!(f, "{line}")?;
    }
    f.flush()?;
    Ok(())
}

/// Offline batch mode as an LLM: requests answered by `DIR/results.jsonl` (the output
/// of `vllm run-batch` or OpenAI's Batch API) are answered from it; the others are
/// appended once each to `DIR/requests.jsonl` and come back as `failure::QUEUED`.
pub struct BatchDir {
    pub requests: std::path::PathBuf,
    pub results: std::path::PathBuf,
    model: String,
    answers: Option<BatchResults>,
    written: std::collections::HashSet<String>,
    pub queued: usize,
}

impl BatchDir {
    pub fn open(dir: &Path, model: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (requests, results) = (dir.join("requests.jsonl"), dir.join("results.jsonl"));
        let answers = if results.exists() {
            Some(BatchResults::read(&results, model)?)
        } else {
            None
        };
        let mut written = std::collections::HashSet::new();
        if let Ok(f) = std::fs::File::open(&requests) {
            for line in std::io::BufReader::new(f).lines() {
                if let Ok(v) = serde_json::from_str::<Value>(&line?)
                    && let Some(id) = v.get("custom_id").and_then(Value::as_str)
                {
                    written.insert(id.to_string());
                }
            }
        }
        Ok(Self {
            requests,
            results,
            model: model.to_string(),
            answers,
            written,
            queued: 0,
        })
    }

    /// The command that answers the queued requests.
    pub fn instructions(&self) -> String {
        format!(
            "vllm run-batch -i {} -o {} --model {}",
            self.requests.display(),
            self.results.display(),
            self.model
        )
    }
}

impl ChatLlm for BatchDir {
    fn model_id(&self) -> String {
        format!("{} (offline batch)", self.model)
    }
    fn batch_size(&self) -> usize {
        1024
    }
    fn complete(&mut self, requests: &[ChatRequest]) -> Vec<Result<ChatReply, &'static str>> {
        let mut out = Vec::with_capacity(requests.len());
        let mut new = Vec::new();
        for r in requests {
            let id = custom_id(&request_body(&self.model, r));
            match self.answers.as_ref().and_then(|a| a.answers.get(&id)) {
                Some(answer) => out.push(answer.clone()),
                None => {
                    self.queued += 1;
                    if self.written.insert(id) {
                        new.push(r.clone());
                    }
                    out.push(Err(failure::QUEUED));
                }
            }
        }
        if !new.is_empty()
            && let Err(e) = write_batch(&self.requests, &self.model, &new)
        {
            eprintln!("offline batch: {e:#}");
        }
        out
    }
}

/// The output of a batch run (`vllm run-batch -o FILE`, or OpenAI's Batch API) as
/// an LLM: each request is answered from the line with its `custom_id`.
pub struct BatchResults {
    model: String,
    answers: HashMap<String, Result<ChatReply, &'static str>>,
}

impl BatchResults {
    pub fn read(path: &Path, model: &str) -> Result<Self> {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut answers = HashMap::new();
        for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&line)
                .with_context(|| format!("{} line {}: not JSON", path.display(), n + 1))?;
            let id = v
                .get("custom_id")
                .and_then(Value::as_str)
                .with_context(|| format!("{} line {}: no custom_id", path.display(), n + 1))?
                .to_string();
            let resp = v.get("response").filter(|r| !r.is_null());
            let answer = match resp {
                Some(r) if r.get("status_code").and_then(Value::as_u64) == Some(200) => r
                    .get("body")
                    .and_then(|b| parse_completion(&b.to_string()))
                    .ok_or(failure::MALFORMED),
                Some(r)
                    if r.get("status_code")
                        .and_then(Value::as_u64)
                        .is_some_and(|c| c >= 500) =>
                {
                    Err(failure::SERVER)
                }
                _ => Err(failure::REJECTED),
            };
            answers.insert(id, answer);
        }
        Ok(Self {
            model: model.to_string(),
            answers,
        })
    }
}

impl ChatLlm for BatchResults {
    fn model_id(&self) -> String {
        format!("{} (batch results)", self.model)
    }
    fn batch_size(&self) -> usize {
        1024
    }
    fn complete(&mut self, requests: &[ChatRequest]) -> Vec<Result<ChatReply, &'static str>> {
        requests
            .iter()
            .map(|r| {
                self.answers
                    .get(&custom_id(&request_body(&self.model, r)))
                    .cloned()
                    .unwrap_or(Err("request missing from the batch results"))
            })
            .collect()
    }
}
