//! Local HTML pages: text blocks and `<img>` in document order. Block elements (p,
//! li, headings, table cells, ...) end a text item; an image ends the text before it.
//! Script, style, head and form contents are not text.

use std::path::Path;

use scraper::{Html, Node};

use super::resolve_src;
use crate::document::{Document, Item};

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

/// Pages larger than this are skipped ("page too large"): web pages are a few
/// hundred KB; a bigger one is a dump or an attack.
pub const MAX_PAGE_BYTES: u64 = 16 << 20;
/// Element nesting deeper than this skips the page ("nesting too deep"): html5ever's
/// open-element scope search is linear in the depth, so 100k nested `<div>`s take
/// minutes; real pages stay under a few hundred (Blink caps its DOM at 512).
pub const MAX_NESTING: usize = 4096;

/// One page; `Err` is the reason it was skipped.
pub fn read_page(root: &Path, file: &Path) -> Result<Document, &'static str> {
    let meta = std::fs::metadata(file).map_err(|_| "unreadable file")?;
    if meta.len() > MAX_PAGE_BYTES {
        return Err("page too large");
    }
    let bytes = std::fs::read(file).map_err(|_| "unreadable file")?;
    if nesting_depth(&bytes) > MAX_NESTING {
        return Err("nesting too deep");
    }
    let text = String::from_utf8(bytes).map_err(|_| "bad utf-8")?;
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
    })
}

/// An upper estimate of the element nesting of a page, from one pass over its bytes:
/// start tags deepen, end tags return; void elements, self-closing tags, comments,
/// and elements whose end tag HTML lets a page omit (p, li, td, ...) do not count,
/// so unclosed paragraphs do not look deep.
pub fn nesting_depth(html: &[u8]) -> usize {
    const NOT_NESTING: &[&[u8]] = &[
        b"area",
        b"base",
        b"br",
        b"col",
        b"embed",
        b"hr",
        b"img",
        b"input",
        b"link",
        b"meta",
        b"param",
        b"source",
        b"track",
        b"wbr",
        b"p",
        b"li",
        b"dt",
        b"dd",
        b"tr",
        b"td",
        b"th",
        b"option",
        b"optgroup",
        b"thead",
        b"tbody",
        b"tfoot",
        b"colgroup",
        b"rb",
        b"rt",
        b"rp",
        b"caption",
        b"html",
        b"head",
        b"body",
    ];
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
    while let Some(off) = html[i..].iter().position(|&b| b == b'<') {
        i += off + 1;
        if html[i..].starts_with(b"!--") {
            match html[i..].windows(3).position(|w| w == b"-->") {
                Some(end) => i += end + 3,
                None => break,
            }
            continue;
        }
        let closing = html.get(i) == Some(&b'/');
        let start = if closing { i + 1 } else { i };
        let name_len = html[start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        if name_len == 0 {
            continue;
        }
        let name = html[start..start + name_len].to_ascii_lowercase();
        if NOT_NESTING.contains(&name.as_slice()) {
            continue;
        }
        let end = html[start..]
            .iter()
            .position(|&b| b == b'>')
            .map(|e| start + e);
        let self_closing = end.is_some_and(|e| e > 0 && html[e - 1] == b'/');
        if closing {
            depth = depth.saturating_sub(1);
        } else if !self_closing {
            depth += 1;
            max = max.max(depth);
            // Raw text: skip to the matching end tag.
            if name == b"script" || name == b"style" {
                let close: &[u8] = if name == b"script" {
                    b"</script"
                } else {
                    b"</style"
                };
                let from = end.unwrap_or(start);
                match html[from..]
                    .windows(close.len())
                    .position(|w| w.eq_ignore_ascii_case(close))
                {
                    Some(p) => i = from + p,
                    None => break,
                }
            }
        }
    }
    max
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
    fn deep_nesting_is_measured_and_unclosed_paragraphs_are_not() {
        let deep = format!(
            "<html><body>{}x{}</body></html>",
            "<div>".repeat(100_000),
            "</div>".repeat(100_000)
        );
        let t = std::time::Instant::now();
        assert_eq!(nesting_depth(deep.as_bytes()), 100_000);
        assert!(t.elapsed().as_secs_f64() < 1.0);
        let flat = format!(
            "<div>{}</div>",
            "<p>text <b>bold</b> <img src=a.png><br>".repeat(5000)
        );
        assert_eq!(nesting_depth(flat.as_bytes()), 2);
        let script =
            "<div><script>if (a<b) { x = '<div><div>'; }</script><!-- <div><div> --></div>";
        assert_eq!(nesting_depth(script.as_bytes()), 2);
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
