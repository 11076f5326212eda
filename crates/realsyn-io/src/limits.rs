//! The caps every reader of hostile input applies, in one place, each with a default a
//! user can raise through the environment (read once per process), as PIL lets one
//! raise `Image.MAX_IMAGE_PIXELS`:
//!
//! | cap | default | variable |
//! |---|---|---|
//! | HTML page size | 16 MiB | `REALSYN_MAX_PAGE_BYTES` |
//! | HTML element nesting | 1,024 | `REALSYN_MAX_NESTING` |
//! | image pixels (decompression bombs) | 178,956,970 (PIL's) | `REALSYN_MAX_IMAGE_PIXELS` |
//! | chat template instructions | 1,000,000 | `REALSYN_CHAT_TEMPLATE_FUEL` |
//!
//! Downloads and local image reads have their own flag (`--fetch-max-bytes`).

use std::sync::OnceLock;

/// One cap: its default and the variable that overrides it.
pub struct Cap {
    pub env: &'static str,
    pub default: u64,
    value: OnceLock<u64>,
}

impl Cap {
    const fn new(env: &'static str, default: u64) -> Self {
        Cap {
            env,
            default,
            value: OnceLock::new(),
        }
    }

    /// The cap in force: the variable when set to a positive integer (`_` separators
    /// allowed), else the default. A malformed value is reported once and ignored.
    pub fn get(&self) -> u64 {
        *self.value.get_or_init(|| {
            let raw = std::env::var(self.env).ok();
            parse(raw.as_deref()).unwrap_or_else(|bad| {
                if let Some(bad) = bad {
                    eprintln!(
                        "warning: {}={bad:?} is not a positive integer; using the default {}",
                        self.env, self.default
                    );
                }
                self.default
            })
        })
    }
}

/// `Ok(cap)`, or `Err(the malformed value)`; `Err(None)` when unset.
fn parse(raw: Option<&str>) -> Result<u64, Option<String>> {
    let raw = raw.ok_or(None)?;
    match raw.trim().replace('_', "").parse::<u64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(Some(raw.to_string())),
    }
}

/// HTML pages larger than this are skipped ("page too large"): web pages are a few
/// hundred KB; a bigger one is a dump or an attack.
pub static PAGE_BYTES: Cap = Cap::new("REALSYN_MAX_PAGE_BYTES", 16 << 20);
/// Element nesting deeper than this skips a page ("nesting too deep"): html5ever's
/// scope search makes deep pages quadratic; real pages stay under a few hundred (Blink
/// caps its DOM at 512).
pub static NESTING: Cap = Cap::new("REALSYN_MAX_NESTING", 1024);
/// Images of more pixels are refused ("over the pixel limit (decompression bomb)"):
/// PIL's `DecompressionBombError` threshold, 2 x `Image.MAX_IMAGE_PIXELS`.
pub static IMAGE_PIXELS: Cap = Cap::new("REALSYN_MAX_IMAGE_PIXELS", 2 * 89_478_485);
/// Most template instructions one chat rendering may run (minijinja's fuel): a
/// template ships with the weights, and real ones need a few thousand.
pub static CHAT_TEMPLATE_FUEL: Cap = Cap::new("REALSYN_CHAT_TEMPLATE_FUEL", 1_000_000);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_and_bad_ones_fall_back() {
        assert_eq!(parse(Some("4096")), Ok(4096));
        assert_eq!(parse(Some(" 1_000_000 ")), Ok(1_000_000));
        assert_eq!(parse(None), Err(None));
        assert_eq!(parse(Some("0")), Err(Some("0".into())));
        assert_eq!(parse(Some("lots")), Err(Some("lots".into())));
        assert_eq!(parse(Some("-5")), Err(Some("-5".into())));
    }
}
