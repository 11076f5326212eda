//! Local HTML pages: text blocks and `<img>` in document order. Block elements (p,
//! li, headings, table cells, ...) end a text item; an image ends the text before it.
//! Script, style, head and form contents are not text.

use std::path::Path;

use scraper::{Html, Node};

use realsyn_io::limits;

use super::nesting::nesting_depth;
use super::resolve_src;
use crate::extract::document::{Document, Item};

const BLOCK: &[&str] = &[
    "p",
    "div",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "td",
    "th",
    "tr",
    "table",
    "dd",
    "dt",
    "dl",
    "pre",
    "blockquote",
    "figcaption",
    "figure",
    "caption",
    "section",
    "article",
    "header",
    "footer",
    "body",
    "br",
    "hr",
];
const SKIP: &[&str] = &[
    "script", "style", "head", "noscript", "template", "select", "textarea", "svg",
];

/// One page; `Err` is the reason it was skipped.
pub fn read_page(root: &Path, file: &Path) -> Result<Document, &'static str> {
    let meta = std::fs::metadata(file).map_err(|_| "unreadable file")?;
    if meta.len() > limits::PAGE_BYTES.get() {
        return Err("page too large");
    }
    let bytes = std::fs::read(file).map_err(|_| "unreadable file")?;
    let (text, repaired) = decode_page(bytes);
    let max_nesting = limits::NESTING.get() as usize;
    if nesting_depth(&text, max_nesting) > max_nesting {
        return Err("nesting too deep");
    }
    let base = file.parent().unwrap_or(Path::new("."));
    let items = parse(&text, base);
    let abs = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let id = file
        .strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string();
    Ok(Document {
        id,
        url: Some(format!("file://{}", abs.display())),
        source: format!("html:{}", root.display()),
        items,
        repaired: repaired.map(str::to_string),
    })
}

/// The page's text and, when it was not valid UTF-8, how it was repaired: by its
/// declared charset when that is the Latin-1 family (decoded as windows-1252, as
/// browsers do for `iso-8859-1` too, WHATWG Encoding), otherwise as UTF-8 with the
/// invalid bytes replaced by U+FFFD. A page is never dropped for its encoding.
pub fn decode_page(bytes: Vec<u8>) -> (String, Option<&'static str>) {
    let bytes = match String::from_utf8(bytes) {
        Ok(text) => return (text, None),
        Err(e) => e.into_bytes(),
    };
    match declared_charset(&bytes).as_deref() {
        Some(
            "iso-8859-1" | "iso8859-1" | "latin1" | "latin-1" | "l1" | "windows-1252" | "cp1252"
            | "x-cp1252" | "us-ascii" | "ascii" | "iso-8859-15" | "latin9",
        ) => (
            bytes.iter().map(|&b| windows_1252(b)).collect(),
            Some("decoded as windows-1252 (declared charset)"),
        ),
        _ => (
            String::from_utf8_lossy(&bytes).into_owned(),
            Some("invalid utf-8 replaced"),
        ),
    }
}

/// The `charset` a page declares in its first 1,024 bytes (`<meta charset=...>` or
/// `content="text/html; charset=..."`), lower-cased: the HTML prescan's window.
fn declared_charset(bytes: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).to_ascii_lowercase();
    let at = head.find("charset")? + "charset".len();
    let rest = head[at..].trim_start().strip_prefix('=')?.trim_start();
    let rest = rest.trim_start_matches(['"', '\'']);
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
        .collect();
    (!name.is_empty()).then_some(name)
}

/// One windows-1252 byte as a char (WHATWG's table: Latin-1 except 0x80-0x9F).
fn windows_1252(b: u8) -> char {
    const HIGH: [u16; 32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013,
        0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
    ];
    match b {
        0x80..=0x9F => char::from_u32(HIGH[(b - 0x80) as usize] as u32).expect("valid table"),
        _ => b as char,
    }
}

/// Text blocks and images of an HTML document, images resolved against `base`.
pub fn parse(html: &str, base: &Path) -> Vec<Item> {
    let doc = Html::parse_document(html);
    let mut items = Vec::new();
    let mut buf = String::new();
    let mut skip = 0usize;
    let flush = |buf: &mut String, items: &mut Vec<Item>| {
        let text = buf.split_whitespace().collect::<Vec<_>>().join(" ");
        if !text.is_empty() {
            items.push(Item::Text { text });
        }
        buf.clear();
    };
    for edge in doc.root_element().traverse() {
        match edge {
            ego_tree::iter::Edge::Open(node) => match node.value() {
                Node::Element(e) => {
                    let name = e.name();
                    if SKIP.contains(&name) {
                        skip += 1;
                    } else if skip == 0 {
                        if name == "img" {
                            flush(&mut buf, &mut items);
                            if let Some(src) = e.attr("src").filter(|s| !s.trim().is_empty()) {
                                let alt = e
                                    .attr("alt")
                                    .map(|a| a.split_whitespace().collect::<Vec<_>>().join(" "));
                                items.push(Item::Image {
                                    src: resolve_src(src, base),
                                    alt: alt.filter(|a| !a.is_empty()),
                                });
                            }
                        } else if BLOCK.contains(&name) {
                            flush(&mut buf, &mut items);
                        }
                    }
                }
                Node::Text(t) if skip == 0 => buf.push_str(t),
                _ => {}
            },
            ego_tree::iter::Edge::Close(node) => {
                if let Node::Element(e) = node.value() {
                    if SKIP.contains(&e.name()) {
                        skip = skip.saturating_sub(1);
                    } else if skip == 0 && BLOCK.contains(&e.name()) {
                        flush(&mut buf, &mut items);
                    }
                }
            }
        }
    }
    flush(&mut buf, &mut items);
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_in_latin_1_or_with_bad_bytes_are_repaired_not_dropped() {
        let latin1 = b"<html><head><meta charset=\"ISO-8859-1\"></head><body><p>Caf\xe9 \x80 5 \x93quoted\x94</p></body></html>";
        let (text, how) = decode_page(latin1.to_vec());
        assert!(
            text.contains("Caf\u{e9} \u{20ac} 5 \u{201c}quoted\u{201d}"),
            "{text}"
        );
        assert_eq!(how, Some("decoded as windows-1252 (declared charset)"));
        let http_equiv = b"<meta http-equiv='Content-Type' content='text/html; charset=windows-1252'><p>na\xefve</p>";
        assert!(decode_page(http_equiv.to_vec()).0.contains("na\u{ef}ve"));
        let (text, how) = decode_page(b"<p>Broken \xff bytes</p>".to_vec());
        assert_eq!(text, "<p>Broken \u{fffd} bytes</p>");
        assert_eq!(how, Some("invalid utf-8 replaced"));
        // Valid UTF-8 is untouched, whatever it declares.
        let utf8 = "<meta charset=iso-8859-1><p>Caf\u{e9}</p>";
        assert_eq!(
            decode_page(utf8.as_bytes().to_vec()),
            (utf8.to_string(), None)
        );
    }

    #[test]
    fn text_and_images_in_order() {
        let items = parse(
            r#"<html><head><title>T</title><script>x()</script></head><body>
            <p>First  paragraph with <b>bold</b> text.</p>
            <div><img src="images/a.png" alt=" An  example "/>After the image.</div>
            <img src="https://e.org/b.jpg"><ul><li>One.</li><li>Two.</li></ul></body></html>"#,
            Path::new("/pages/en"),
        );
        assert_eq!(
            items,
            vec![
                Item::Text {
                    text: "First paragraph with bold text.".into()
                },
                Item::Image {
                    src: "/pages/en/images/a.png".into(),
                    alt: Some("An example".into())
                },
                Item::Text {
                    text: "After the image.".into()
                },
                Item::Image {
                    src: "https://e.org/b.jpg".into(),
                    alt: None
                },
                Item::Text {
                    text: "One.".into()
                },
                Item::Text {
                    text: "Two.".into()
                },
            ]
        );
    }
}
