//! The OpenAI-compatible client against a real, misbehaving HTTP server on loopback:
//! every fault is retried or counted with its reason, never a panic; and the batch
//! JSONL files round-trip.

#[path = "../../../tests/common/fault_server.rs"]
mod fault_server;

use std::time::Duration;

use fault_server::{Fault, FaultServer, reply_for};
use realsyn_builder::generate::llm::{ChatLlm, ChatRequest, Message, failure, validate};
use realsyn_builder::generate::openai::{
    BatchResults, ClientOptions, OpenAiClient, custom_id, write_batch,
};

fn request(prompt: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![Message {
            role: "user".into(),
            content: prompt.into(),
        }],
        max_tokens: 32,
        temperature: 0.0,
        top_p: 1.0,
        seed: 7,
        stop: vec![],
    }
}

fn client(url: &str, retries: u32) -> OpenAiClient {
    OpenAiClient::new(ClientOptions {
        concurrency: 1,
        timeout: Duration::from_millis(700),
        retries,
        backoff: Duration::from_millis(20),
        ..ClientOptions::new(url, "test-model")
    })
}

/// Each fault once, then a good answer: with one retry every request succeeds.
#[test]
fn transient_faults_are_retried() {
    let faults = vec![
        Fault::Status500,
        Fault::RateLimited(1),
        Fault::Slow(Duration::from_millis(1500)),
        Fault::Malformed,
        Fault::Reset,
    ];
    let server = FaultServer::start(faults.iter().flat_map(|f| [f.clone(), Fault::Ok]).collect());
    let mut c = client(&server.url, 1);
    let prompts: Vec<String> = (0..5).map(|i| format!("prompt number {i}")).collect();
    let reqs: Vec<ChatRequest> = prompts.iter().map(|p| request(p)).collect();
    let started = std::time::Instant::now();
    let out = c.complete(&reqs);
    for (p, r) in prompts.iter().zip(&out) {
        assert_eq!(r.as_ref().unwrap().text, reply_for(p));
    }
    // Retry-After: 1 was honoured.
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(server.pending(), 0);
}

/// With no retries left, each fault is one counted reason; bad replies fail validation.
#[test]
fn persistent_faults_are_counted_with_their_reason() {
    let cases = [
        (Fault::Status500, failure::SERVER),
        (Fault::RateLimited(0), failure::RATE),
        (Fault::Slow(Duration::from_millis(1500)), failure::TIMEOUT),
        (Fault::Malformed, failure::MALFORMED),
        (Fault::Reset, failure::CONNECTION),
    ];
    for (fault, reason) in cases {
        let server = FaultServer::start(vec![fault.clone(), fault.clone(), fault.clone()]);
        let mut c = client(&server.url, 2);
        let out = c.complete(&[request("hello")]);
        assert_eq!(out[0], Err(reason), "{fault:?}");
        assert_eq!(
            server.requests.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "{fault:?}: 1 try + 2 retries"
        );
    }
    for (fault, reason) in [
        (Fault::Empty, failure::EMPTY),
        (Fault::Cut, failure::CUT),
        (Fault::Echo, failure::ECHO),
    ] {
        let server = FaultServer::start(vec![fault.clone()]);
        let mut c = client(&server.url, 2);
        let req = request("Please merge the information from the given raw text. Raw caption:x");
        let reply = c.complete(std::slice::from_ref(&req)).remove(0).unwrap();
        assert_eq!(validate(&req, &reply), Err(reason), "{fault:?}");
    }
}

#[test]
fn concurrent_requests_keep_their_order() {
    let server = FaultServer::start(vec![]);
    let mut c = OpenAiClient::new(ClientOptions {
        concurrency: 6,
        ..ClientOptions::new(&server.url, "m")
    });
    let prompts: Vec<String> = (0..40)
        .map(|i| format!("Raw caption:text {i}, synthetic caption:"))
        .collect();
    let out = c.complete(&prompts.iter().map(|p| request(p)).collect::<Vec<_>>());
    for (p, r) in prompts.iter().zip(out) {
        assert_eq!(r.unwrap().text, reply_for(p));
    }
}

/// Offline batch mode: requests as OpenAI Batch JSONL, answers read back by custom_id
/// in any order (as vllm run-batch writes them).
#[test]
fn batch_files_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let reqs = [request("first"), request("second"), request("third")];
    let input = dir.path().join("requests.jsonl");
    write_batch(&input, "m", &reqs).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["url"], "/v1/chat/completions");
    assert_eq!(lines[0]["body"]["seed"], 7);
    // A batch runner's output, reversed, with the second request failed.
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate().rev() {
        let id = custom_id(&l["body"]);
        let line = if i == 1 {
            serde_json::json!({"id": "b", "custom_id": id, "response": {"status_code": 500, "body": {}}, "error": null})
        } else {
            let content = format!("answer {i}");
            serde_json::json!({"id": "b", "custom_id": id, "response": {"status_code": 200, "body": {
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}}, "error": null})
        };
        out += &format!("{line}\n");
    }
    let output = dir.path().join("results.jsonl");
    std::fs::write(&output, out).unwrap();
    let mut results = BatchResults::read(&output, "m").unwrap();
    let got = results.complete(&reqs);
    assert_eq!(got[0].as_ref().unwrap().text, "answer 0");
    assert_eq!(got[1], Err(failure::SERVER));
    assert_eq!(got[2].as_ref().unwrap().text, "answer 2");
}
