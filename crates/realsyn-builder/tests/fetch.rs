//! URL images against a real HTTP server on loopback: real JPEGs, a slow response, a
//! 404, garbage bytes, an opt-out header, an oversized body, and a server that fails
//! once then recovers (retried). Then the extract stage end to end on MMC4 documents
//! whose images live on that server.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use realsyn_builder::extract::fetch::{FetchOptions, Fetcher};
use realsyn_builder::extract::ingest::Format;
use realsyn_builder::pipeline::Models;
use realsyn_builder::pipeline::run_all;
use realsyn_builder::store::manifest::{FetchSettings, Manifest};

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 256) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

/// A small HTTP/1.1 server: one thread per connection, routes by path.
fn serve() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let flaky_hits = Arc::new(AtomicUsize::new(0));
    let hits = flaky_hits.clone();
    let photo = Arc::new(jpeg(320, 240));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (photo, hits) = (photo.clone(), hits.clone());
            std::thread::spawn(move || respond(stream, &photo, &hits));
        }
    });
    (base, flaky_hits)
}

fn respond(mut stream: TcpStream, photo: &[u8], flaky_hits: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let send = |stream: &mut TcpStream, status: &str, headers: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
    };
    match path.as_str() {
        "/photo.jpg" => send(&mut stream, "200 OK", "Content-Type: image/jpeg\r\n", photo),
        "/slow.jpg" => {
            std::thread::sleep(Duration::from_secs(3));
            send(&mut stream, "200 OK", "", photo);
        }
        "/garbage.jpg" => send(&mut stream, "200 OK", "", b"<html>not an image</html>"),
        "/optout.jpg" => send(
            &mut stream,
            "200 OK",
            "X-Robots-Tag: noai, noimageai\r\n",
            photo,
        ),
        "/huge.jpg" => send(&mut stream, "200 OK", "", &vec![0u8; 300_000]),
        "/flaky.jpg" => {
            if flaky_hits.fetch_add(1, Ordering::SeqCst) == 0 {
                send(&mut stream, "503 Service Unavailable", "", b"busy");
            } else {
                send(&mut stream, "200 OK", "", photo);
            }
        }
        _ => send(&mut stream, "404 Not Found", "", b"no such image"),
    }
}

fn options() -> FetchOptions {
    FetchOptions {
        timeout: Duration::from_millis(700),
        retries: 2,
        backoff: Duration::from_millis(50),
        max_bytes: 200_000,
        threads: 8,
        ..FetchOptions::default()
    }
}

#[test]
fn each_url_ends_with_bytes_or_a_reason() {
    let (base, flaky_hits) = serve();
    let fetcher = Fetcher::new(options()).unwrap();
    let urls: Vec<String> = [
        "photo.jpg",
        "slow.jpg",
        "missing.jpg",
        "garbage.jpg",
        "optout.jpg",
        "huge.jpg",
        "flaky.jpg",
    ]
    .iter()
    .map(|p| format!("{base}/{p}"))
    .collect();
    let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let start = Instant::now();
    let got = fetcher.fetch_all(&refs);
    let took = start.elapsed();
    assert_eq!(got[0].as_ref().unwrap(), &jpeg(320, 240));
    assert_eq!(got[1], Err("timeout"), "3 s response, 0.7 s timeout");
    assert_eq!(got[2], Err("http 404/410 (gone)"));
    assert_eq!(
        got[3].as_ref().map(Vec::len),
        Ok(25),
        "bytes come back; decoding judges them"
    );
    assert_eq!(got[4], Err("opt-out (X-Robots-Tag)"));
    assert_eq!(got[5], Err("too large"));
    assert!(got[6].is_ok(), "503 once, then retried: {:?}", got[6]);
    assert_eq!(flaky_hits.load(Ordering::SeqCst), 2);
    // Concurrent: the slow URL's three attempts (3 x 0.7 s + backoff) bound the time,
    // not the sum over URLs.
    assert!(took < Duration::from_secs(6), "{took:?}");
    let refused = Fetcher::new(options())
        .unwrap()
        .fetch("http://127.0.0.1:9/none.jpg");
    assert_eq!(refused, Err("connection error"));
}

#[test]
fn extract_downloads_url_images_and_counts_failures() {
    let (base, _) = serve();
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs.jsonl");
    let doc = |i: usize, images: &[&str]| {
        serde_json::json!({
            "url": format!("https://example.org/{i}"),
            "text_list": ["A man walks his dog along the beach at sunset.", "The dog chases a ball into the waves."],
            "image_info": images.iter().map(|p| serde_json::json!({"raw_url": format!("{base}/{p}"), "matched_text_index": 0})).collect::<Vec<_>>(),
        })
        .to_string()
    };
    let lines = [
        doc(0, &["photo.jpg", "missing.jpg"]),
        doc(1, &["garbage.jpg", "optout.jpg", "photo.jpg"]),
    ]
    .join("\n");
    std::fs::write(&docs, lines).unwrap();
    let manifest = Manifest {
        format: Format::Mmc4,
        inputs: vec![docs],
        parts: 1,
        min_entropy: 0.0,
        max_hamming: 4,
        images_per_tar: 100,
        fetch: Some(FetchSettings {
            timeout_secs: 2.0,
            retries: 1,
            max_bytes: 1 << 20,
            threads: 4,
        }),
        semantic: None,
        cat_wordnet: None,
        perplexity: None,
        text_semantic: None,
        pairing: None,
        generation: None,
        balance: None,
        dataset: None,
        images_outside_input: false,
    };
    let store = tmp.path().join("store");
    let funnel = run_all(&store, &manifest, Models::default()).unwrap();
    let read = funnel
        .steps
        .iter()
        .find(|s| s.name == "read image")
        .unwrap();
    assert_eq!((read.input, read.output), (5, 2), "{read:?}");
    assert_eq!(
        read.dropped["unknown image format"], 1,
        "garbage bytes have no image header"
    );
    assert_eq!(read.dropped["http 404/410 (gone)"], 1);
    assert_eq!(read.dropped["opt-out (X-Robots-Tag)"], 1);
    let header = funnel
        .steps
        .iter()
        .find(|s| s.name == "size and aspect")
        .unwrap();
    assert_eq!(
        header.output, 2,
        "garbage bytes have no image header: {header:?}"
    );
    let dedup = funnel
        .steps
        .iter()
        .find(|s| s.name == "image dedup")
        .unwrap();
    assert_eq!((dedup.output, dedup.dropped["identical bytes"]), (1, 1));
    let status =
        std::fs::read_to_string(store.join("extract/part-00000-of-00001/fetch.jsonl")).unwrap();
    assert_eq!(
        status.lines().count(),
        4,
        "each distinct URL fetched once:\n{status}"
    );
    assert!(status.contains(r#""status":"ok""#) && status.contains("opt-out"));
}
