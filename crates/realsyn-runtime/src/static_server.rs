//! A static file server on loopback for `realsyn view`: GET only, files under one
//! folder, no listing, no path outside it.

use std::path::{Component, Path, PathBuf};

use anyhow::{Result, anyhow};

/// Serve `root` on `addr` (e.g. 127.0.0.1:8765) until the process ends; `ready`
/// gets the bound address (port 0 picks a free one).
pub fn serve(root: &Path, addr: &str, ready: impl FnOnce(&str)) -> Result<()> {
    let server = tiny_http::Server::http(addr).map_err(|e| anyhow!("binding {addr}: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .map(|a| a.to_string())
        .unwrap_or_else(|| addr.to_string());
    ready(&bound);
    for req in server.incoming_requests() {
        // One thread per request: a browser's idle or slow connection never holds
        // up the others.
        let root = root.to_path_buf();
        std::thread::spawn(move || respond(&root, req));
    }
    Ok(())
}

fn respond(root: &Path, req: tiny_http::Request) {
    let not_found = || tiny_http::Response::from_data(b"not found".to_vec()).with_status_code(404);
    let resp = match file_for(root, req.url()) {
        Some(p) if *req.method() == tiny_http::Method::Get => match std::fs::read(&p) {
            Ok(bytes) => {
                let ct = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type(&p))
                    .expect("static header");
                tiny_http::Response::from_data(bytes).with_header(ct)
            }
            Err(_) => not_found(),
        },
        _ => not_found(),
    };
    let _ = req.respond(resp);
}

/// The file a URL names under `root` (`/` is index.html); `None` for anything that
/// would leave it.
fn file_for(root: &Path, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next().unwrap_or("/");
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "index.html" } else { rel };
    let rel = Path::new(rel);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}

fn content_type(p: &Path) -> &'static [u8] {
    match p.extension().and_then(|e| e.to_str()) {
        Some("html") => b"text/html; charset=utf-8",
        Some("js") => b"text/javascript; charset=utf-8",
        Some("json") => b"application/json",
        Some("svg") => b"image/svg+xml",
        Some("png") => b"image/png",
        Some("jpg") | Some("jpeg") => b"image/jpeg",
        _ => b"application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_stay_inside_the_root() {
        let root = Path::new("/site");
        assert_eq!(file_for(root, "/"), Some(root.join("index.html")));
        assert_eq!(file_for(root, "/?q=dog"), Some(root.join("index.html")));
        assert_eq!(
            file_for(root, "/images/a.jpg"),
            Some(root.join("images/a.jpg"))
        );
        assert_eq!(file_for(root, "/../etc/passwd"), None);
        assert_eq!(file_for(root, "/images/../../x"), None);
    }
}
