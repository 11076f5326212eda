//! A real HTTP/1.1 server on loopback that speaks OpenAI's chat-completions API and
//! misbehaves on purpose, for the LLM client's tests. Included by test files with
//! `#[path = ".../tests/common/fault_server.rs"] mod fault_server;`.
//!
//! What it answers is decided by `Script`: a queue of faults served in arrival order
//! (`Fault`), then `Fault::Ok` with a reply derived from the prompt, so replies are
//! deterministic whatever the order of requests.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// 200 with a reply derived from the prompt.
    Ok,
    /// 500 Internal Server Error.
    Status500,
    /// 429 with `Retry-After: secs`.
    RateLimited(u32),
    /// Sleep this long before answering (past the client's timeout).
    Slow(Duration),
    /// 200 with a body that is not JSON.
    Malformed,
    /// Close the connection without answering.
    Reset,
    /// 200 with empty content.
    Empty,
    /// 200 with finish_reason = length.
    Cut,
    /// 200 whose content repeats the prompt.
    Echo,
}

pub struct FaultServer {
    pub url: String,
    /// Added before every normal answer.
    pub delay: Arc<Mutex<Duration>>,
    pub requests: Arc<AtomicUsize>,
    script: Arc<Mutex<VecDeque<Fault>>>,
}

/// The reply the server gives to `prompt` when it answers normally: empty for one
/// prompt in ten (by a hash of the prompt, so the same ones every run).
pub fn reply_for(prompt: &str) -> String {
    let h = prompt.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    if prompt.contains("Raw caption:") && h % 10 == 0 {
        return String::new();
    }
    let raw = prompt
        .split("Raw caption:")
        .nth(1)
        .and_then(|r| r.split(", synthetic caption:").next())
        .unwrap_or(prompt);
    format!(
        "A synthetic text about: {}",
        raw.chars().take(60).collect::<String>()
    )
}

impl FaultServer {
    /// Start on a free loopback port; `faults` are served first, in arrival order.
    pub fn start(faults: Vec<Fault>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let script = Arc::new(Mutex::new(VecDeque::from(faults)));
        let requests = Arc::new(AtomicUsize::new(0));
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let (s, n, d) = (script.clone(), requests.clone(), delay.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (s, n, d) = (s.clone(), n.clone(), d.clone());
                std::thread::spawn(move || serve(conn, &s, &n, &d));
            }
        });
        Self {
            url,
            delay,
            requests,
            script,
        }
    }

    /// Faults not served yet.
    pub fn pending(&self) -> usize {
        self.script.lock().unwrap().len()
    }
}

fn read_request(conn: &mut BufReader<TcpStream>) -> Option<String> {
    let mut len = 0;
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    conn.read_exact(&mut body).ok()?;
    String::from_utf8(body).ok()
}

fn respond(conn: &mut TcpStream, status: &str, extra: &str, body: &str) {
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: keep-alive\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.flush();
}

fn completion(content: &str, finish: &str) -> String {
    serde_json::json!({
        "id": "chatcmpl-test", "object": "chat.completion", "model": "fault-server",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": content.split_whitespace().count()},
    })
    .to_string()
}

fn serve(
    conn: TcpStream,
    script: &Mutex<VecDeque<Fault>>,
    n: &AtomicUsize,
    delay: &Mutex<Duration>,
) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    while let Some(body) = read_request(&mut reader) {
        n.fetch_add(1, Ordering::SeqCst);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let prompt = v["messages"][0]["content"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let fault = script.lock().unwrap().pop_front().unwrap_or(Fault::Ok);
        match fault {
            Fault::Ok => {
                let d = *delay.lock().unwrap();
                std::thread::sleep(d);
                respond(
                    &mut conn,
                    "200 OK",
                    "",
                    &completion(&reply_for(&prompt), "stop"),
                );
            }
            Fault::Status500 => respond(
                &mut conn,
                "500 Internal Server Error",
                "",
                "{\"error\":\"boom\"}",
            ),
            Fault::RateLimited(s) => respond(
                &mut conn,
                "429 Too Many Requests",
                &format!("Retry-After: {s}\r\n"),
                "{\"error\":\"slow down\"}",
            ),
            Fault::Slow(d) => {
                std::thread::sleep(d);
                respond(
                    &mut conn,
                    "200 OK",
                    "",
                    &completion(&reply_for(&prompt), "stop"),
                );
            }
            Fault::Malformed => respond(&mut conn, "200 OK", "", "{\"choices\": [oops"),
            Fault::Reset => {
                let _ = conn.shutdown(std::net::Shutdown::Both);
                return;
            }
            Fault::Empty => respond(&mut conn, "200 OK", "", &completion("", "stop")),
            Fault::Cut => respond(
                &mut conn,
                "200 OK",
                "",
                &completion("A synthetic text that", "length"),
            ),
            Fault::Echo => respond(&mut conn, "200 OK", "", &completion(&prompt, "stop")),
        }
    }
}
