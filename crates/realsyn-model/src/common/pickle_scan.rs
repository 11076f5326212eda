//! A pass over pickle opcodes that checks every length prefix against the bytes left,
//! before burn-store's reader runs: that reader allocates a string's or a byte
//! string's declared length before reading it, so a 20 KB file declaring a 4 GB
//! string took 4 GB (found by `realsyn-fuzz --target pickle`). Nothing is decoded
//! and nothing is allocated here; opcodes this pass does not know end it (the reader
//! reports them).

use std::io::{BufRead, Seek, SeekFrom};

/// Check up to `pickles` consecutive pickles from the reader's position; `end` is
/// the stream's length. `Err` names the first length that runs past `end`.
pub fn check_lengths<R: BufRead + Seek>(r: &mut R, end: u64, pickles: usize) -> Result<(), String> {
    for _ in 0..pickles {
        match check_one(r, end)? {
            Scan::Stopped => {}
            Scan::Unknown | Scan::Truncated => return Ok(()),
        }
    }
    Ok(())
}

enum Scan {
    /// Reached STOP.
    Stopped,
    /// An opcode this pass does not know: leave the verdict to the reader.
    Unknown,
    /// The stream ended: the reader reports the truncation.
    Truncated,
}

fn check_one<R: BufRead + Seek>(r: &mut R, end: u64) -> Result<Scan, String> {
    loop {
        let Some(op) = byte(r) else {
            return Ok(Scan::Truncated);
        };
        // (bytes of a little-endian length prefix, or of a fixed argument)
        let arg = match op {
            b'.' => return Ok(Scan::Stopped),
            // No argument.
            b'(' | b'0' | b'1' | b'2' | b'N' | 0x88 | 0x89 | b'a' | b'e' | b'b' | b'd' | b'}'
            | b'l' | b']' | b'o' | b'R' | b's' | b'u' | b't' | b')' | 0x85 | 0x86 | 0x87 | 0x81
            | 0x92 | 0x93 | b'Q' | 0x8f | 0x90 | 0x91 | 0x94 | 0x97 | 0x98 => Arg::Fixed(0),
            0x80 | b'K' | b'h' | b'q' | 0x82 => Arg::Fixed(1),
            b'M' | 0x83 => Arg::Fixed(2),
            b'J' | b'j' | b'r' | 0x84 => Arg::Fixed(4),
            b'G' | 0x95 => Arg::Fixed(8),
            // Length-prefixed: LONG1, SHORT_BINSTRING, SHORT_BINBYTES, SHORT_BINUNICODE.
            0x8a | b'U' | b'C' | 0x8c => Arg::Counted(1),
            // LONG4, BINSTRING, BINBYTES, BINUNICODE.
            0x8b | b'T' | b'B' | b'X' => Arg::Counted(4),
            // BINBYTES8, BINUNICODE8, BYTEARRAY8.
            0x8e | 0x8d | 0x96 => Arg::Counted(8),
            // Newline-terminated: INT, LONG, FLOAT, STRING, UNICODE, GET, PUT, PERSID.
            b'I' | b'L' | b'F' | b'S' | b'V' | b'g' | b'p' | b'P' => Arg::Lines(1),
            // GLOBAL, INST: module and name.
            b'c' | b'i' => Arg::Lines(2),
            _ => return Ok(Scan::Unknown),
        };
        match arg {
            Arg::Fixed(n) => {
                if !skip(r, n as u64, end) {
                    return Ok(Scan::Truncated);
                }
            }
            Arg::Counted(width) => {
                let mut le = [0u8; 8];
                for b in le.iter_mut().take(width) {
                    match byte(r) {
                        Some(v) => *b = v,
                        None => return Ok(Scan::Truncated),
                    }
                }
                let len = u64::from_le_bytes(le);
                let at = r.stream_position().map_err(|e| e.to_string())?;
                let left = end.saturating_sub(at);
                if len > left {
                    return Err(format!(
                        "pickle opcode {op:#04x} at byte {} declares {len} bytes, {left} are left: truncated or corrupt",
                        at - 1 - width as u64
                    ));
                }
                if !skip(r, len, end) {
                    return Ok(Scan::Truncated);
                }
            }
            Arg::Lines(n) => {
                for _ in 0..n {
                    if !skip_line(r) {
                        return Ok(Scan::Truncated);
                    }
                }
            }
        }
    }
}

enum Arg {
    Fixed(usize),
    Counted(usize),
    Lines(usize),
}

fn byte<R: BufRead>(r: &mut R) -> Option<u8> {
    let b = *r.fill_buf().ok()?.first()?;
    r.consume(1);
    Some(b)
}

/// Skip `n` bytes; false when fewer are left.
fn skip<R: BufRead + Seek>(r: &mut R, n: u64, end: u64) -> bool {
    let Ok(at) = r.stream_position() else {
        return false;
    };
    if n > end.saturating_sub(at) {
        return false;
    }
    r.seek(SeekFrom::Current(n as i64)).is_ok()
}

/// Skip past the next newline without keeping the line; false at the end.
fn skip_line<R: BufRead>(r: &mut R) -> bool {
    loop {
        let Ok(buf) = r.fill_buf() else {
            return false;
        };
        if buf.is_empty() {
            return false;
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                return true;
            }
            None => {
                let n = buf.len();
                r.consume(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn check(bytes: &[u8]) -> Result<(), String> {
        check_lengths(&mut Cursor::new(bytes), bytes.len() as u64, 5)
    }

    #[test]
    fn lengths_past_the_end_are_refused_and_honest_pickles_pass() {
        // pickle.dumps({"a": "xyz", "b": b"12"}, protocol=2), then protocol 4 framing.
        let p2 = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01X\x03\x00\x00\x00xyzq\x02X\x01\x00\x00\x00bq\x03c_codecs\nencode\nq\x04X\x02\x00\x00\x0012q\x05X\x06\x00\x00\x00latin1q\x06\x86q\x07Rq\x08u.";
        assert_eq!(check(p2), Ok(()));
        let p4 = b"\x80\x04\x95\x12\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94\x8c\x03xyz\x94s.";
        assert_eq!(check(p4), Ok(()));
        // Two pickles in a row (the legacy torch layout), the second one lying.
        let mut two = p2.to_vec();
        two.extend_from_slice(b"\x80\x02X\xff\xff\xff\xffabc.");
        let err = check(&two).unwrap_err();
        assert!(
            err.contains("declares 4294967295 bytes, 4 are left"),
            "{err}"
        );
        // BINUNICODE8, BINBYTES and a long line: the first lies, the others pass.
        assert!(check(b"\x80\x04\x8d\x00\x00\x00\x00\x01\x00\x00\x00ab.").is_err());
        assert_eq!(check(b"\x80\x02B\x02\x00\x00\x00ab."), Ok(()));
        assert_eq!(check(b"\x80\x02cmodule\nname\n."), Ok(()));
        // Truncated or unknown: left to the reader.
        assert_eq!(check(b"\x80\x02X\x03\x00"), Ok(()));
        assert_eq!(check(b"\x80\x02\xff\xff"), Ok(()));
    }
}
