//! The released RealSyn parquet both ways against a real HTTP server on loopback:
//! rows whose images download (a JPEG, a PNG re-encoded as JPEG) become samples;
//! a 404, garbage bytes, an opt-out header and a row without a URL are counted
//! with their reason and listed in the shard's parquet; a rerun skips finished
//! shards without a request; the shards export back to the rows that downloaded.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use realsyn_builder::extract::fetch::FetchOptions;
use realsyn_builder::write::parquet::{ReleasedRow, read_released, write_released};
use realsyn_builder::write::released::{DownloadOptions, download, export};
use realsyn_data::wds::{SkipCounter, read_shard};

fn image(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 256) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

fn serve(hits: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            hits.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || respond(stream));
        }
    });
    base
}

fn respond(mut stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    reader.read_line(&mut request).unwrap();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, headers, body) = match path {
        "/photo.jpg" => ("200 OK", "", image(320, 240, image::ImageFormat::Jpeg)),
        "/drawing.png" => ("200 OK", "", image(200, 300, image::ImageFormat::Png)),
        "/garbage.jpg" => ("200 OK", "", b"not an image at all".to_vec()),
        "/noai.jpg" => (
            "200 OK",
            "X-Robots-Tag: noai\r\n",
            image(64, 64, image::ImageFormat::Jpeg),
        ),
        _ => ("404 Not Found", "", Vec::new()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

fn row(url: &str, i: usize) -> ReleasedRow {
    ReleasedRow {
        raw_image_url: url.into(),
        text1: format!("realistic text one of row {i}"),
        text2: Some(format!("realistic text two of row {i}")),
        text3: Some(format!("realistic text three of row {i}")),
        syn_text: Some(format!("synthetic text of row {i}")),
    }
}

#[test]
fn released_parquet_downloads_to_shards_and_exports_back() {
    let hits = Arc::new(AtomicUsize::new(0));
    let base = serve(hits.clone());
    let tmp = tempfile::tempdir().unwrap();
    let rows: Vec<ReleasedRow> = [
        "/photo.jpg",
        "/missing.jpg",
        "/drawing.png",
        "/garbage.jpg",
        "/noai.jpg",
        "",
    ]
    .iter()
    .enumerate()
    .map(|(i, p)| {
        row(
            &if p.is_empty() {
                String::new()
            } else {
                format!("{base}{p}")
            },
            i,
        )
    })
    .collect();
    let parquet = tmp.path().join("realsyn.parquet");
    write_released(&parquet, &rows).unwrap();
    let out = tmp.path().join("shards");
    let opts = DownloadOptions {
        samples_per_shard: 2,
        resize: Some("96:center_crop".parse().unwrap()),
        jpeg_quality: 90,
        fetch: FetchOptions {
            retries: 0,
            threads: 4,
            ..FetchOptions::default()
        },
        shards: None,
    };
    let s = download(&[parquet.clone()], &out, &opts).unwrap();
    assert_eq!(s.rows, 5);
    assert_eq!(s.bad_rows["no raw_image_url"], 1);
    assert_eq!(s.shards, 3);
    assert_eq!(s.status["success"], 2, "{:?}", s.status);
    assert_eq!(s.status.values().sum::<usize>(), 5);

    // The samples: the JPEG and the PNG, resized, with their texts.
    let skips = SkipCounter::new();
    let mut samples = Vec::new();
    for shard in ["00000.tar", "00001.tar"] {
        samples.extend(read_shard(&out.join(shard), &skips));
    }
    assert_eq!(skips.total(), 0);
    let keys: Vec<&str> = samples.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, ["000000000", "000010000"]);
    for (s, i) in samples.iter().zip([0, 2]) {
        assert_eq!(s.get("txt").unwrap().as_ref(), rows[i].text1.as_bytes());
        let json: serde_json::Value = serde_json::from_slice(s.get("json").unwrap()).unwrap();
        assert_eq!(json["syn_text"], rows[i].syn_text.clone().unwrap());
        assert_eq!(json["url"], rows[i].raw_image_url);
        let img = image::load_from_memory(s.get("jpg").unwrap()).unwrap();
        assert_eq!((img.width(), img.height()), (96, 96));
        assert!(realsyn_builder::write::is_jpeg(s.get("jpg").unwrap()));
    }
    assert!(!out.join("00002.tar").exists(), "a shard of failures only");
    let sizes: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sizes.json")).unwrap()).unwrap();
    assert_eq!(sizes, serde_json::json!({"00000.tar": 1, "00001.tar": 1}));
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("00001_stats.json")).unwrap()).unwrap();
    assert_eq!(stats["count"], 2);
    assert_eq!(stats["failed_to_resize"], 1, "garbage bytes: {stats}");
    // The shard's parquet lists every row tried, with its status.
    let mut listed = Vec::new();
    let back = realsyn_builder::write::parquet::read_columns(
        &out.join("00000.parquet"),
        &["url", "status"],
    )
    .unwrap();
    listed.extend(back);
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0][1].as_deref(), Some("success"));
    assert!(
        listed[1][1].as_deref().unwrap().contains("404"),
        "{listed:?}"
    );

    // Rerun: every shard is done; no request is sent.
    let before = hits.load(Ordering::SeqCst);
    let again = download(&[parquet], &out, &opts).unwrap();
    assert_eq!(again.shards_skipped_done, 3);
    assert_eq!(hits.load(Ordering::SeqCst), before);

    // Exported back: the rows that downloaded.
    let exported = tmp.path().join("export.parquet");
    assert_eq!(export(&out, &exported).unwrap(), 2);
    let round = read_released(&exported, |_, _| panic!("no bad rows")).unwrap();
    assert_eq!(round, vec![rows[0].clone(), rows[2].clone()]);

    // Hostile input: a truncated tar is not exported as if whole; a file that is
    // not parquet is named.
    let tar = std::fs::read(out.join("00001.tar")).unwrap();
    std::fs::write(out.join("00001.tar"), &tar[..tar.len() / 3]).unwrap();
    let err = export(&out, &tmp.path().join("x.parquet"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unreadable"), "{err}");
    let bogus = tmp.path().join("bogus.parquet");
    std::fs::write(&bogus, b"PAR1 but not really").unwrap();
    let err = format!(
        "{:#}",
        download(&[bogus], &tmp.path().join("y"), &opts).unwrap_err()
    );
    assert!(err.contains("not a parquet file"), "{err}");
}
