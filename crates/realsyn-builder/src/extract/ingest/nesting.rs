//! How deep html5ever will nest a page's elements, measured before the page is parsed.
//!
//! html5ever's tree builder searches the stack of open elements for every start and
//! end tag (`in_scope_named`), so a page of many tags nested thousands deep parses in
//! time quadratic in its size (100,000 nested `<div>`s: 37 s). The page is first run
//! through html5ever's own tokenizer, which is linear, and the tree builder's stack is
//! followed on its tokens; a page deeper than the cap (`realsyn_io::limits::NESTING`,
//! 1,024 by default) is skipped unparsed.
//!
//! The tokens are exact (attributes, quotes, comments, raw text: a `<` inside an
//! attribute value or a script opens nothing). The stack follows the tree builder's
//! rules that make depth, and errs towards more depth where it simplifies them:
//! - void elements, raw text and elements whose end tag may be omitted (p, li, td, ...)
//!   do not nest; `<a>`, `<button>`, `<nobr>` and `<form>` do not nest in themselves;
//! - an end tag closes an element of its name (and everything above it) only when that
//!   element is in scope, that is, no table, object, applet, marquee or template lies
//!   above it: `<div><object></div>` closes nothing;
//! - `<x/>` opens `x` in HTML (the slash is ignored there) and closes in SVG/MathML.

use std::cell::RefCell;
use std::collections::HashMap;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer,
};

const NOT_NESTING: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr", "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "thead",
    "tbody", "tfoot", "colgroup", "rb", "rt", "rp", "caption", "html", "head", "body",
];
/// A start tag of these closes an open element of the same name first (the adoption
/// agency for `a`, scope rules for the others): `<a/><a/>` does not nest.
const REPLACES_ITSELF: &[&str] = &["a", "button", "nobr", "form"];
/// Elements that end the scope an end tag searches (HTML's "has an element in scope";
/// td, th, caption and html never enter this stack).
const SCOPE_BOUNDARY: &[&str] = &["table", "object", "applet", "marquee", "template"];

/// The deepest nesting of `html`, or the first depth past `stop_above` (the measure
/// stops there, so a hostile page costs no more than a cap's worth of work).
pub fn nesting_depth(html: &str, stop_above: usize) -> usize {
    let tokenizer = Tokenizer::new(
        Depth {
            stack: RefCell::new(Stack::default()),
            stop_above,
        },
        Default::default(),
    );
    let queue = BufferQueue::default();
    // Chunks of 64 KB, cut on character boundaries, so a page over the cap stops early.
    let mut rest = html;
    while !rest.is_empty() && !tokenizer.sink.stack.borrow().done {
        let mut cut = rest.len().min(1 << 16);
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        queue.push_back(StrTendril::from_slice(&rest[..cut]));
        rest = &rest[cut..];
        let _ = tokenizer.feed(&queue);
    }
    if !tokenizer.sink.stack.borrow().done {
        tokenizer.end();
    }
    tokenizer.sink.stack.borrow().max
}

struct Depth {
    stack: RefCell<Stack>,
    stop_above: usize,
}

#[derive(Default)]
struct Stack {
    /// Open elements, outermost first.
    names: Vec<String>,
    /// Where each name is open in `names`, innermost last.
    positions: HashMap<String, Vec<usize>>,
    /// Where scope boundaries are open in `names`, innermost last.
    boundaries: Vec<usize>,
    /// Open `svg`/`math` elements: inside them `<x/>` closes and nothing is raw text.
    foreign: usize,
    max: usize,
    /// Past the cap, or at `<plaintext>` (the rest of the page is text).
    done: bool,
}

impl Stack {
    fn open(&mut self, name: &str) {
        let at = self.names.len();
        self.positions.entry(name.to_string()).or_default().push(at);
        if SCOPE_BOUNDARY.contains(&name) {
            self.boundaries.push(at);
        }
        if name == "svg" || name == "math" {
            self.foreign += 1;
        }
        self.names.push(name.to_string());
        self.max = self.max.max(self.names.len());
    }

    fn is_open(&self, name: &str) -> bool {
        self.positions.get(name).is_some_and(|p| !p.is_empty())
    }

    /// Close the innermost `name` and everything above it, if it is in scope.
    fn close(&mut self, name: &str) {
        let Some(&at) = self.positions.get(name).and_then(|p| p.last()) else {
            return; // a stray end tag closes nothing
        };
        if self.boundaries.last().is_some_and(|&b| b > at) {
            return; // not in scope: the tree builder ignores the end tag
        }
        while self.names.len() > at {
            let top = self.names.pop().expect("not empty above `at`");
            let index = self.names.len();
            self.positions.get_mut(&top).expect("recorded").pop();
            if self.boundaries.last() == Some(&index) {
                self.boundaries.pop();
            }
            if top == "svg" || top == "math" {
                self.foreign -= 1;
            }
        }
    }

    fn start(&mut self, tag: &Tag, stop_above: usize) -> TokenSinkResult<()> {
        let name: &str = &tag.name;
        if NOT_NESTING.contains(&name)
            || (REPLACES_ITSELF.contains(&name) && self.is_open(name))
            || (self.foreign > 0 && tag.self_closing)
        {
            return TokenSinkResult::Continue;
        }
        self.open(name);
        if self.names.len() > stop_above {
            self.done = true;
        }
        if self.foreign > 0 {
            return TokenSinkResult::Continue;
        }
        // The tokenizer states the tree builder switches to for these elements.
        match name {
            "plaintext" => {
                self.done = true;
                TokenSinkResult::Plaintext
            }
            "script" => TokenSinkResult::RawData(RawKind::ScriptData),
            "title" | "textarea" => TokenSinkResult::RawData(RawKind::Rcdata),
            "style" | "xmp" | "iframe" | "noembed" | "noframes" | "noscript" => {
                TokenSinkResult::RawData(RawKind::Rawtext)
            }
            _ => TokenSinkResult::Continue,
        }
    }
}

impl TokenSink for Depth {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut stack = self.stack.borrow_mut();
        match token {
            _ if stack.done => TokenSinkResult::Continue,
            Token::TagToken(tag) if tag.kind == TagKind::StartTag => {
                stack.start(&tag, self.stop_above)
            }
            Token::TagToken(tag) => {
                stack.close(&tag.name);
                TokenSinkResult::Continue
            }
            _ => TokenSinkResult::Continue,
        }
    }

    /// CDATA sections are text in SVG/MathML, bogus comments in HTML.
    fn adjusted_current_node_present_but_not_in_html_namespace(&self) -> bool {
        self.stack.borrow().foreign > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(html: &str) -> usize {
        nesting_depth(html, usize::MAX)
    }

    #[test]
    fn deep_nesting_is_measured_and_unclosed_paragraphs_are_not() {
        let deep = format!(
            "<html><body>{}x{}</body></html>",
            "<div>".repeat(100_000),
            "</div>".repeat(100_000)
        );
        let t = std::time::Instant::now();
        assert_eq!(depth(&deep), 100_000);
        assert!(t.elapsed().as_secs_f64() < 2.0);
        // Past the cap the measure stops: a cap's worth of work, not the page's.
        assert_eq!(nesting_depth(&deep, 1024), 1025);
        let flat = format!(
            "<div>{}</div>",
            "<p>text <b>bold</b> <img src=a.png><br>".repeat(5000)
        );
        assert_eq!(depth(&flat), 2);
        let script =
            "<div><script>if (a<b) { x = '<div><div>'; }</script><!-- <div><div> --></div>";
        assert_eq!(depth(script), 2);
    }

    #[test]
    fn tags_are_read_as_html5ever_reads_them() {
        // Names run to whitespace, `/` or `>`: `<div<img ...>` opens `div<img`.
        let glued = "<div<img src=a.png>".repeat(3000) + &"</div<x>".repeat(3000);
        assert_eq!(depth(&glued), 3000);
        let slashed = "<div/>".repeat(3000);
        assert_eq!(depth(&slashed), 3000);
        let svg = format!("<div><svg>{}</svg></div>", "<path d='M0 0'/>".repeat(3000));
        assert_eq!(depth(&svg), 2);
        let anchors = "<a name=x/>".repeat(3000);
        assert_eq!(depth(&anchors), 1);
        let stray = format!("{}{}", "<section>".repeat(10), "</div>".repeat(3000));
        assert_eq!(depth(&stray), 10);
        // Found by fuzzing (a 30 s parse): a `<` inside a tag opens nothing, so
        // `"<script>` in a meta tag's attributes does not start raw text and hide the
        // divs after it.
        let in_attribute = format!(
            "<meta content=\"text/html\"<script>><p>x</p>{}",
            "<div>".repeat(3000)
        );
        assert_eq!(depth(&in_attribute), 3000);
        let quoted = format!("<img alt='<div><div>'>{}", "<div>".repeat(5));
        assert_eq!(depth(&quoted), 5);
        let cdata = "<svg><![CDATA[ <g><g><g> ]]></svg>";
        assert_eq!(depth(cdata), 1);
    }

    #[test]
    fn an_end_tag_out_of_scope_closes_nothing() {
        // html5ever ignores `</div>` when an object (or table, ...) is open above the
        // div, so this nests two elements per repetition.
        let object = "<div><object></div>".repeat(2000);
        assert_eq!(depth(&object), 4000);
        let closed = "<div><object></object></div>".repeat(2000);
        assert_eq!(depth(&closed), 2);
    }
}
