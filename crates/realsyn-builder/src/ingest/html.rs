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

/// One page; `Err` is the reason it was skipped.
pub fn read_page(root: &Path, file: &Path) -> Result<Document, &'static str> {
    let bytes = std::fs::read(file).map_err(|_| "unreadable file")?;
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
