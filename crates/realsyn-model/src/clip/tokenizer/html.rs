//! A port of Python's `html.unescape` (CPython 3.11 `Lib/html/__init__.py`), which
//! open_clip applies twice to every caption. Named references follow the HTML5
//! table, including the legacy prefix rule (`&ampx` -> `&x`) that Python implements.

use std::sync::LazyLock;

use regex::{Captures, Regex};

use super::tables::TABLES;

static CHARREF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\x0c <&#;]{1,32};?)").expect("valid regex")
});

/// `html.unescape(s)`.
pub fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    CHARREF
        .replace_all(s, |caps: &Captures| replace_charref(&caps[1]))
        .into_owned()
}

fn replace_charref(s: &str) -> String {
    let t = &*TABLES;
    if let Some(num) = s.strip_prefix('#') {
        let (digits, radix) = match num.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16),
            None => (num, 10),
        };
        let digits = digits.trim_end_matches(';');
        // Python ints are unbounded: anything that overflows u64 is simply "too large".
        let num = u64::from_str_radix(digits, radix).unwrap_or(u64::MAX);
        if let Ok(small) = u32::try_from(num) {
            if let Some(rep) = t.invalid_charrefs.get(&small) {
                return rep.clone();
            }
        }
        if (0xD800..=0xDFFF).contains(&num) || num > 0x10FFFF {
            return "\u{FFFD}".to_string();
        }
        if t.invalid_codepoints.contains(&(num as u32)) {
            return String::new();
        }
        return char::from_u32(num as u32)
            .map(String::from)
            .unwrap_or_default();
    }
    if let Some(rep) = t.html5_entities.get(s) {
        return rep.clone();
    }
    // Longest prefix (at least 2 characters) that names an entity.
    let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
    let nchars = bounds.len() - 1;
    for x in (2..nchars).rev() {
        let prefix = &s[..bounds[x]];
        if prefix.len() > t.html5_max_len {
            continue;
        }
        if let Some(rep) = t.html5_entities.get(prefix) {
            return format!("{rep}{}", &s[bounds[x]..]);
        }
    }
    format!("&{s}")
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn follows_python_semantics() {
        assert_eq!(unescape("a &amp; b"), "a & b");
        assert_eq!(unescape("&ampx"), "&x");
        assert_eq!(unescape("&#x41;&#66;&#0;"), "AB\u{FFFD}");
        assert_eq!(unescape("&#x80;"), "\u{20AC}");
        assert_eq!(unescape("&nosuch;"), "&nosuch;");
        assert_eq!(unescape("&#99999999999999999999999;"), "\u{FFFD}");
        assert_eq!(unescape("&notit;"), "\u{AC}it;");
    }
}
