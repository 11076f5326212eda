//! Downloading URL images the way img2dataset does: concurrent requests with connect
//! and read timeouts, retries with exponential backoff on transient failures
//! (connection errors, 429, 5xx), a size cap, and img2dataset's opt-out rule (an
//! `X-Robots-Tag` header containing noai, noimageai, noindex or noimageindex means
//! the image is not used). Every URL ends with bytes or one named reason.

use std::io::Read;
use std::time::Duration;

use rayon::prelude::*;

/// img2dataset's default `--disallowed_header_directives`.
pub const OPT_OUT_DIRECTIVES: [&str; 4] = ["noai", "noimageai", "noindex", "noimageindex"];

#[derive(Debug, Clone, PartialEq)]
pub struct FetchOptions {
    pub timeout: Duration,
    pub retries: u32,
    /// First retry waits this long, then twice as long each time.
    pub backoff: Duration,
    pub max_bytes: u64,
    pub threads: usize,
    pub user_agent: String,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retries: 2,
            backoff: Duration::from_millis(500),
            max_bytes: 20 << 20,
            threads: 32,
            user_agent: format!(
                "realsyn/{} (+https://github.com/realsyn/realsyn; img2dataset-compatible)",
                env!("CARGO_PKG_VERSION")
            ),
        }
    }
}

pub struct Fetcher {
    agent: ureq::Agent,
    opts: FetchOptions,
    pool: rayon::ThreadPool,
}

/// Why a URL gave no image (the funnel's drop reasons).
pub type FetchResult = Result<Vec<u8>, &'static str>;

impl Fetcher {
    pub fn new(opts: FetchOptions) -> anyhow::Result<Self> {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(opts.timeout)
            .timeout(opts.timeout)
            .user_agent(&opts.user_agent)
            .redirects(5)
            .build();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.threads.max(1))
            .thread_name(|i| format!("fetch-{i}"))
            .build()?;
        Ok(Self { agent, opts, pool })
    }

    /// Fetch every URL concurrently; results in input order.
    pub fn fetch_all(&self, urls: &[&str]) -> Vec<FetchResult> {
        self.pool
            .install(|| urls.par_iter().map(|u| self.fetch(u)).collect())
    }

    /// One URL, with retries.
    pub fn fetch(&self, url: &str) -> FetchResult {
        let mut wait = self.opts.backoff;
        let mut attempt = 0;
        loop {
            match self.once(url) {
                Err(Failure::Transient(_)) if attempt < self.opts.retries => {
                    std::thread::sleep(wait);
                    wait *= 2;
                    attempt += 1;
                }
                Err(Failure::Transient(reason) | Failure::Final(reason)) => return Err(reason),
                Ok(bytes) => return Ok(bytes),
            }
        }
    }

    fn once(&self, url: &str) -> Result<Vec<u8>, Failure> {
        let resp = match self.agent.get(url).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, _)) => {
                return Err(match code {
                    429 => Failure::Transient("http 429 (rate limited)"),
                    500..=599 => Failure::Transient("http 5xx"),
                    404 | 410 => Failure::Final("http 404/410 (gone)"),
                    _ => Failure::Final("http 4xx"),
                });
            }
            Err(ureq::Error::Transport(t)) => {
                let msg = t.to_string().to_lowercase();
                return Err(if msg.contains("timed out") || msg.contains("timeout") {
                    Failure::Transient("timeout")
                } else if matches!(t.kind(), ureq::ErrorKind::Dns) {
                    Failure::Final("dns failure")
                } else if matches!(
                    t.kind(),
                    ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme
                ) {
                    Failure::Final("invalid url")
                } else {
                    Failure::Transient("connection error")
                });
            }
        };
        if let Some(tag) = resp.header("X-Robots-Tag") {
            let tag = tag.to_lowercase();
            if tag
                .split([',', ' ', ':'])
                .any(|d| OPT_OUT_DIRECTIVES.contains(&d.trim()))
            {
                return Err(Failure::Final("opt-out (X-Robots-Tag)"));
            }
        }
        if resp
            .header("Content-Length")
            .and_then(|l| l.parse::<u64>().ok())
            .is_some_and(|l| l > self.opts.max_bytes)
        {
            return Err(Failure::Final("too large"));
        }
        let mut bytes = Vec::new();
        match resp
            .into_reader()
            .take(self.opts.max_bytes + 1)
            .read_to_end(&mut bytes)
        {
            Ok(_) if bytes.len() as u64 > self.opts.max_bytes => Err(Failure::Final("too large")),
            Ok(_) => Ok(bytes),
            Err(e) if e.to_string().to_lowercase().contains("timed out") => {
                Err(Failure::Transient("timeout"))
            }
            Err(_) => Err(Failure::Transient("connection error")),
        }
    }
}

enum Failure {
    Transient(&'static str),
    Final(&'static str),
}
