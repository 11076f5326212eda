//! MediaWiki XML dumps (`*.xml`, `*.xml.bz2`, e.g. enwiki-...-pages-articles.xml.bz2):
//! one text-only document per article, streamed page by page. Wikitext is reduced
//! to prose: templates, tables, references, comments, tags, files and categories
//! removed; links replaced by their text; headings and list/table lines dropped;
//! paragraphs are blank-line separated blocks.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::extract::document::{Document, Item};

pub fn read_file(file: &Path, emit: &mut dyn FnMut(Document), on_skip: &mut dyn FnMut(&str, &str)) {
    let name = file.display().to_string();
    let Ok(f) = std::fs::File::open(file) else {
        return on_skip("unreadable file", &name);
    };
    let reader: Box<dyn Read> = if name.ends_with(".bz2") {
        Box::new(bzip2::read::MultiBzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut lines = BufReader::new(reader);
    let (mut title, mut text, mut in_text, mut redirect) =
        (String::new(), String::new(), false, false);
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return on_skip("corrupt compressed file", &name),
        }
        let Ok(l) = std::str::from_utf8(&line) else {
            on_skip("bad utf-8", &format!("{name}: {title}"));
            continue;
        };
        let t = l.trim_start();
        if let Some(rest) = t.strip_prefix("<title>") {
            title = unescape(rest.split("</title>").next().unwrap_or(""));
            redirect = false;
        } else if t.starts_with("<redirect") {
            redirect = true;
        } else if !in_text && t.starts_with("<text") {
            let body = &t[t.find('>').map_or(t.len(), |i| i + 1)..];
            text.clear();
            if let Some(end) = body.find("</text>") {
                text.push_str(&body[..end]);
            } else if !t.trim_end().ends_with("/>") {
                text.push_str(body);
                in_text = true;
            }
            if !in_text {
                finish(&title, &text, redirect, &name, emit);
            }
        } else if in_text {
            if let Some(end) = l.find("</text>") {
                text.push_str(&l[..end]);
                in_text = false;
                finish(&title, &text, redirect, &name, emit);
            } else {
                text.push_str(l);
            }
        }
    }
}

fn finish(title: &str, raw: &str, redirect: bool, source: &str, emit: &mut dyn FnMut(Document)) {
    if redirect || title.contains(':') {
        return; // redirects and non-article namespaces carry no prose
    }
    let items: Vec<Item> = paragraphs(&unescape(raw))
        .into_iter()
        .map(|text| Item::Text { text })
        .collect();
    if items.is_empty() {
        return;
    }
    emit(Document {
        id: title.to_string(),
        url: Some(format!(
            "https://en.wikipedia.org/wiki/{}",
            title.replace(' ', "_")
        )),
        source: format!("mediawiki:{source}"),
        items,
        repaired: None,
    });
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#039;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

/// Remove `open ... close` spans, nested.
fn strip_nested(s: &str, open: &str, close: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let (mut depth, mut i) = (0usize, 0);
    while i < s.len() {
        if s[i..].starts_with(open) {
            depth += 1;
            i += open.len();
        } else if depth > 0 && s[i..].starts_with(close) {
            depth -= 1;
            i += close.len();
        } else {
            let c = s[i..].chars().next().unwrap();
            if depth == 0 {
                out.push(c);
            }
            i += c.len_utf8();
        }
    }
    out
}

/// Replace `[[target|label]]` by label, `[[target]]` by target; drop files and
/// categories; `[http://x label]` by label.
fn links(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("[[") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find("]]") else {
            rest = after;
            break;
        };
        let inner = &after[..j];
        let lower = inner.to_lowercase();
        if !(lower.starts_with("file:")
            || lower.starts_with("image:")
            || lower.starts_with("category:"))
        {
            out.push_str(inner.rsplit('|').next().unwrap_or(inner));
        }
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    // External links.
    let mut ext = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find("[http") {
        ext.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find(']') else {
            rest = after;
            break;
        };
        ext.push_str(after[..j].split_once(' ').map_or("", |(_, label)| label));
        rest = &after[j + 1..];
    }
    ext.push_str(rest);
    ext
}

/// The first match of a needle at or after a position, remembered: searches from
/// increasing positions reuse the last answer while it is still ahead.
#[derive(Default)]
struct NextMatch {
    /// `(searched from, first match at or after it)`
    last: Option<(usize, Option<usize>)>,
}

impl NextMatch {
    fn find(&mut self, hay: &str, from: usize, needle: &str) -> Option<usize> {
        if let Some((start, found)) = self.last
            && start <= from
            && found.is_none_or(|f| f >= from)
        {
            return found;
        }
        let found = hay[from..].find(needle).map(|k| from + k);
        self.last = Some((from, found));
        found
    }
}

fn paragraphs(raw: &str) -> Vec<String> {
    let mut s = strip_nested(raw, "{{", "}}");
    s = strip_nested(&s, "{|", "|}");
    s = strip_nested(&s, "<!--", "-->");
    // References: <ref .../> and <ref>...</ref>.
    let mut out = String::with_capacity(s.len());
    // Each search for the next `>` or `</ref>` is cached by position, so a page of
    // thousands of unclosed `<ref` stays linear (found by fuzzing: searching again
    // after every open tag made it quadratic).
    let mut next_gt = NextMatch::default();
    let mut next_close = NextMatch::default();
    let mut pos = 0;
    while let Some(i) = s[pos..].find("<ref") {
        let open = pos + i;
        out.push_str(&s[pos..open]);
        let tag_end = next_gt.find(&s, open, ">").map_or(s.len(), |k| k + 1);
        pos = if s[open..tag_end].ends_with("/>") {
            tag_end
        } else if let Some(close) = next_close.find(&s, open, "</ref>") {
            close + "</ref>".len()
        } else {
            tag_end
        };
    }
    let rest = &s[pos..];
    out.push_str(rest);
    // Any other tag.
    let mut plain = String::with_capacity(out.len());
    let mut in_tag = false;
    for c in out.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => plain.push(c),
            _ => {}
        }
    }
    let plain = links(&plain).replace("'''", "").replace("''", "");
    plain
        .split("\n\n")
        .filter_map(|block| {
            let lines: Vec<&str> = block
                .lines()
                .map(str::trim)
                .filter(|l| {
                    !l.is_empty() && !l.starts_with(['=', '*', '#', ':', ';', '|', '!', '{', '}'])
                })
                .collect();
            let p = lines.join(" ");
            (p.split_whitespace().count() >= 3).then_some(p)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wikitext_to_prose() {
        let p = paragraphs(
            "{{Infobox|a={{b}}}}\n'''Anarchism''' is a [[political philosophy|philosophy]] that \
             advocates [[self-governance]].<ref name=x>cite</ref> See [http://e.org the site].\n\n\
             == History ==\n* a list item\n[[Category:Anarchism]]\n\nSecond paragraph here &amp; now.",
        );
        assert_eq!(
            p,
            vec![
                "Anarchism is a philosophy that advocates self-governance. See the site.",
                "Second paragraph here &amp; now."
            ]
        );
    }

    /// 200,000 unclosed `<ref` (1.2 MB) and as many self-closed ones before one far
    /// `</ref>`: linear now; searching again after every tag took minutes.
    #[test]
    fn unclosed_refs_do_not_make_a_page_quadratic() {
        let bomb = format!(
            "Text before the references here.{}{} Text after.",
            "<ref".repeat(200_000),
            "<ref/>".repeat(200_000)
        );
        let started = std::time::Instant::now();
        let p = paragraphs(&bomb);
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
        let text = p.join(" ");
        assert!(
            text.starts_with("Text before the references here.") && text.ends_with("Text after."),
            "{text}"
        );
        let closed = format!("A.{}</ref> B is kept.", "<ref/><ref>".repeat(100_000));
        let started = std::time::Instant::now();
        let text = paragraphs(&closed).join(" ");
        assert!(
            text.contains("B is kept.") && !text.contains("ref"),
            "{text}"
        );
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    }
}
