//! A port of `ftfy.fix_text` (ftfy 6.3, default configuration), the first thing
//! open_clip's tokenizer does to every caption. Each function mirrors the ftfy
//! function of the same name; the character tables come from ftfy itself
//! (see `tables.rs`).
//!
//! Not ported: `decode_inconsistent_utf8` (mojibake mixed with correct UTF-8 in one
//! segment) and segment splitting beyond 1M characters. Everything else, including
//! the mojibake repair through ftfy's single-byte codecs, follows ftfy.

use std::sync::LazyLock;

use regex::bytes::Regex as BytesRegex;
use unicode_normalization::UnicodeNormalization;

use super::html;
use super::tables::{SingleByteCodec, TABLES};

/// `ftfy.fix_text(text)`: fix each line independently.
pub fn fix_text(text: &str) -> String {
    if is_plain_ascii(text) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    // ftfy's `unescape_html="auto"` turns itself off for good once a segment holds '<'.
    let mut unescape = true;
    for segment in text.split_inclusive('\n') {
        if segment.contains('<') {
            unescape = false;
        }
        out.push_str(&fix_segment(segment, unescape));
    }
    out
}

/// Printable ASCII (plus tab, newline, form feed) without `&` is a fixed point of
/// every ftfy step: no entities, no mojibake, no controls, no wide forms, NFC already.
fn is_plain_ascii(text: &str) -> bool {
    text.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'&' || matches!(b, b'\t' | b'\n' | 0x0c))
}

fn fix_segment(text: &str, unescape: bool) -> String {
    let mut text = text.to_string();
    loop {
        let orig = text.clone();
        if unescape {
            text = unescape_html(&text);
        }
        text = fix_encoding(&text);
        text = fix_c1_controls(&text);
        text = translate(&text, |c| TABLES.ligatures.get(&c).map(String::as_str));
        text = translate(&text, |c| TABLES.width_map.get(&c).map(String::as_str));
        text = uncurl_quotes(&text);
        text = fix_line_breaks(&text);
        // fix_surrogates: a Rust String cannot hold surrogates.
        text = remove_terminal_escapes(&text);
        text = text
            .chars()
            .filter(|c| !TABLES.control_chars.contains(c))
            .collect();
        text = text.nfc().collect();
        if text == orig {
            return text;
        }
    }
}

fn translate<'a>(text: &str, map: impl Fn(char) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match map(c) {
            Some(rep) => out.push_str(rep),
            None => out.push(c),
        }
    }
    out
}

static HTML_ENTITY_RE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new("&#?[0-9A-Za-z]{1,24};").expect("valid regex"));

/// ftfy's conservative entity decoding: only complete `&name;` / `&#n;` forms.
fn unescape_html(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    HTML_ENTITY_RE
        .replace_all(text, |caps: &regex::Captures| {
            let m = &caps[0];
            if let Some(rep) = TABLES.ftfy_html_entities.get(m) {
                rep.clone()
            } else if m.starts_with("&#") {
                let un = html::unescape(m);
                if un.contains(';') { m.to_string() } else { un }
            } else {
                m.to_string()
            }
        })
        .into_owned()
}

fn uncurl_quotes(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{201c}'..='\u{201f}' => '"',
            '\u{02bc}' | '\u{2018}'..='\u{201b}' => '\'',
            c => c,
        })
        .collect()
}

fn fix_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace(['\r', '\u{2028}', '\u{2029}', '\u{0085}'], "\n")
}

static ANSI_RE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new("\x1b\\[((?:\\d|;)*)([a-zA-Z])").expect("valid regex"));

fn remove_terminal_escapes(text: &str) -> String {
    if !text.contains('\x1b') {
        return text.to_string();
    }
    ANSI_RE.replace_all(text, "").into_owned()
}

/// C1 controls (U+0080..U+009F) are decoded as the Windows-1252 byte they stand for.
fn fix_c1_controls(text: &str) -> String {
    let sloppy_1252 = &TABLES.charmaps[1];
    text.chars()
        .map(|c| match c as u32 {
            cp @ 0x80..=0x9f => sloppy_1252.decode[cp as usize].unwrap_or(c),
            _ => c,
        })
        .collect()
}

// ---- mojibake repair (ftfy.fix_encoding) -----------------------------------------

fn fix_encoding(text: &str) -> String {
    let mut text = text.to_string();
    loop {
        let next = fix_encoding_one_step(&text);
        if next == text {
            return text;
        }
        text = next;
    }
}

fn possible_encoding(text: &str, codec: &SingleByteCodec) -> bool {
    text.chars().all(|c| {
        (c < '\u{80}' && c != '\x1a') || {
            let b = codec.encode.get(&c);
            matches!(b, Some(&b) if b >= 0x80 || b == 0x1a)
        }
    })
}

fn encode(text: &str, codec: &SingleByteCodec) -> Vec<u8> {
    text.chars()
        .map(|c| {
            if c < '\u{80}' && c != '\x1a' {
                c as u8
            } else {
                codec.encode[&c]
            }
        })
        .collect()
}

fn fix_encoding_one_step(text: &str) -> String {
    if text.is_empty() || text.is_ascii() || !TABLES.badness_re.is_match(text) {
        return text.to_string();
    }
    let mut latin1_possible = false;
    for codec in &TABLES.charmaps {
        if !possible_encoding(text, codec) {
            continue;
        }
        latin1_possible |= codec.name == "latin-1";
        let mut bytes = encode(text, codec);
        if codec.name != "macroman" && ALTERED_UTF8_RE.is_match(&bytes) {
            bytes = restore_byte_a0(&bytes);
        }
        if codec.name.starts_with("sloppy") {
            bytes = LOSSY_UTF8_RE
                .replace_all(&bytes, "\u{FFFD}".as_bytes())
                .into_owned();
        }
        let decoded = if bytes.contains(&0xED) || bytes.contains(&0xC0) {
            decode_utf8_variants(&bytes)
        } else {
            String::from_utf8(bytes).ok()
        };
        if let Some(fixed) = decoded {
            return fixed;
        }
    }
    if latin1_possible {
        // ftfy: Latin-1 text that is really Windows-1252 (strict decode).
        let decoded: Option<String> = text
            .chars()
            .map(|c| TABLES.windows_1252.decode[c as usize])
            .collect();
        if let Some(fixed) = decoded {
            if fixed != text {
                return fixed;
            }
        }
    }
    if text.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)) {
        return fix_c1_controls(text);
    }
    text.to_string()
}

static ALTERED_UTF8_RE: LazyLock<BytesRegex> = LazyLock::new(|| {
    BytesRegex::new(
        r"(?-u)[\xc2\xc3\xc5\xce\xd0\xd9][ ]|[\xe2\xe3][ ][\x80-\x84\x86-\x9f\xa1-\xbf]|[\xe0-\xe3][\x80-\x84\x86-\x9f\xa1-\xbf][ ]|[\xf0][ ][\x80-\xbf][\x80-\xbf]|[\xf0][\x80-\xbf][ ][\x80-\xbf]|[\xf0][\x80-\xbf][\x80-\xbf][ ]",
    )
    .expect("valid regex")
});

static LOSSY_UTF8_RE: LazyLock<BytesRegex> = LazyLock::new(|| {
    BytesRegex::new(
        r"(?-u)[\xc2-\xdf][\x1a]|[\xc2-\xc3][?]|\xed[\xa0-\xaf][\x1a?]\xed[\xb0-\xbf][\x1a?\x80-\xbf]|\xed[\xa0-\xaf][\x1a?\x80-\xbf]\xed[\xb0-\xbf][\x1a?]|[\xe0-\xef][\x1a?][\x1a\x80-\xbf]|[\xe0-\xef][\x1a\x80-\xbf][\x1a?]|[\xf0-\xf4][\x1a?][\x1a\x80-\xbf][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a?][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a\x80-\xbf][\x1a?]|\x1a",
    )
    .expect("valid regex")
});

/// `fixes.restore_byte_a0`: put back the 0xA0 bytes that became spaces.
fn restore_byte_a0(bytes: &[u8]) -> Vec<u8> {
    // A_GRAVE_WORD_RE = b"\xc3 (?! |quele|quela|quilo|s )" (no look-ahead in Rust regex).
    let mut fixed = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0xC3 && bytes.get(i + 1) == Some(&b' ') {
            let rest = &bytes[i + 2..];
            let excluded = [&b" "[..], b"quele", b"quela", b"quilo", b"s "]
                .iter()
                .any(|p| rest.starts_with(p));
            if !excluded {
                fixed.extend_from_slice(b"\xc3\xa0 ");
                i += 2;
                continue;
            }
        }
        fixed.push(bytes[i]);
        i += 1;
    }
    ALTERED_UTF8_RE
        .replace_all(&fixed, |caps: &regex::bytes::Captures| {
            caps[0]
                .iter()
                .map(|&b| if b == 0x20 { 0xA0 } else { b })
                .collect::<Vec<u8>>()
        })
        .into_owned()
}

/// ftfy's `utf-8-variants` codec: UTF-8 that also accepts CESU-8 surrogate pairs and
/// Java's `C0 80` null.
fn decode_utf8_variants(bytes: &[u8]) -> Option<String> {
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0xC0 && bytes.get(i + 1) == Some(&0x80) {
            out.push('\0');
            i += 2;
            continue;
        }
        if bytes[i] == 0xED && i + 5 < bytes.len() + 0 && i + 6 <= bytes.len() {
            let s = &bytes[i..i + 6];
            if (0xA0..=0xAF).contains(&s[1])
                && (0x80..=0xBF).contains(&s[2])
                && s[3] == 0xED
                && (0xB0..=0xBF).contains(&s[4])
                && (0x80..=0xBF).contains(&s[5])
            {
                let hi = 0xD000 | ((s[1] as u32 & 0x3F) << 6) | (s[2] as u32 & 0x3F);
                let lo = 0xD000 | ((s[4] as u32 & 0x3F) << 6) | (s[5] as u32 & 0x3F);
                let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                out.push(char::from_u32(cp)?);
                i += 6;
                continue;
            }
        }
        // Decode one ordinary UTF-8 sequence.
        let len = match bytes[i] {
            0x00..=0x7F => 1,
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return None,
        };
        let chunk = bytes.get(i..i + len)?;
        out.push_str(std::str::from_utf8(chunk).ok()?);
        i += len;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::fix_text;

    #[test]
    fn ftfy_docstring_examples() {
        assert_eq!(
            fix_text("Broken text&hellip; it&#x2019;s ﬂubberiﬁc!"),
            "Broken text… it's flubberific!"
        );
        assert_eq!(fix_text("ＬＯＵＤ　ＮＯＩＳＥＳ"), "LOUD NOISES");
        assert_eq!(
            fix_text("\u{201c}here\u{2019}s a test\u{201d}"),
            "\"here's a test\""
        );
        assert_eq!(fix_text("sÃ³"), "só");
        assert_eq!(fix_text("voilÃ le travail"), "voilà le travail");
        assert_eq!(fix_text("&lt;tag&gt; <b>"), "&lt;tag&gt; <b>");
        assert_eq!(fix_text("\x1b[36;44mblue\x1b[0m"), "blue");
    }
}
