//! Byte-level mutations, stacked 1 to 8 per input: bit flips, interesting bytes and
//! integers, deletions, duplications, truncation, splices with another corpus input,
//! and the target's dictionary tokens, once or repeated thousands of times (depth and
//! size bombs: `<div>` x 100,000).

use rand::Rng;
use rand::rngs::StdRng;

/// Inputs never grow past this: AFL++'s `MAX_FILE`. Bigger inputs reach no new code
/// (a bomb of 100,000 tags is 500 KB) and cost time: html5ever's tokenizer on a 4 MB
/// mutant ran campaigns at 85 executions per second.
pub const MAX_LEN: usize = 1 << 20;

const INTERESTING_U32: [u32; 8] = [
    0,
    1,
    0x7f,
    0xff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];

pub fn mutate(mut data: Vec<u8>, other: &[u8], dict: &[&[u8]], rng: &mut StdRng) -> Vec<u8> {
    let n = rng.random_range(1..=8);
    for _ in 0..n {
        mutate_once(&mut data, other, dict, rng);
    }
    data.truncate(MAX_LEN);
    data
}

fn pos(len: usize, rng: &mut StdRng) -> usize {
    if len == 0 {
        0
    } else {
        rng.random_range(0..=len)
    }
}

fn mutate_once(d: &mut Vec<u8>, other: &[u8], dict: &[&[u8]], rng: &mut StdRng) {
    match rng.random_range(0..10) {
        0 if !d.is_empty() => {
            let i = rng.random_range(0..d.len());
            d[i] ^= 1 << rng.random_range(0..8);
        }
        1 if !d.is_empty() => {
            let i = rng.random_range(0..d.len());
            d[i] = [0u8, 0xff, 0x7f, 0x80, b'"', b'<', b'\n'][rng.random_range(0..7)];
        }
        2 if d.len() >= 4 => {
            let i = rng.random_range(0..=d.len() - 4);
            let v = INTERESTING_U32[rng.random_range(0..INTERESTING_U32.len())];
            let bytes = if rng.random_bool(0.5) {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            d[i..i + 4].copy_from_slice(&bytes);
        }
        3 if !d.is_empty() => {
            let a = rng.random_range(0..d.len());
            let len = rng.random_range(1..=64.min(d.len() - a));
            d.drain(a..a + len);
        }
        4 if !d.is_empty() => {
            let a = rng.random_range(0..d.len());
            let len = rng.random_range(1..=256.min(d.len() - a));
            let chunk = d[a..a + len].to_vec();
            let at = pos(d.len(), rng);
            d.splice(at..at, chunk);
        }
        5 if !d.is_empty() => {
            let at = rng.random_range(0..d.len());
            d.truncate(at);
        }
        6 if !other.is_empty() => {
            let cut = pos(d.len(), rng);
            let from = rng.random_range(0..other.len());
            d.truncate(cut);
            d.extend_from_slice(&other[from..]);
        }
        7 | 8 if !dict.is_empty() => {
            let tok = dict[rng.random_range(0..dict.len())];
            let at = pos(d.len(), rng);
            d.splice(at..at, tok.iter().copied());
        }
        9 if !dict.is_empty() => {
            // A bomb: one token repeated up to 100,000 times; the big ones rarer, as
            // they cost the most per execution (10^5 in 1 bomb of 10).
            let tok = dict[rng.random_range(0..dict.len())];
            const EXPONENTS: [u32; 10] = [1, 1, 1, 2, 2, 2, 3, 3, 4, 5];
            let times = 10usize.pow(EXPONENTS[rng.random_range(0..EXPONENTS.len())]);
            // Built by doubling copies and no longer than the input may grow: a
            // byte-by-byte cycle().collect() of megabytes and a splice of it were most
            // of an execution's time (mmc4 campaigns at 240 executions/s).
            let times = times.min(MAX_LEN / tok.len().max(1) + 1);
            let at = pos(d.len(), rng);
            let tail = d.split_off(at);
            d.extend_from_slice(&tok.repeat(times));
            d.extend_from_slice(&tail);
        }
        _ => {
            let at = pos(d.len(), rng);
            d.insert(at, rng.random());
        }
    }
}
