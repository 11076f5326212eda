//! Edge coverage from LLVM's SanitizerCoverage, on the stable toolchain.
//!
//! `fuzz.sh` builds the fuzzer with `-Cpasses=sancov-module` and inline 8-bit
//! counters (what cargo-fuzz and cargo-afl pass to rustc, and plain stable rustc
//! accepts): every edge of every crate in the binary — realsyn's readers and
//! html5ever, parquet, image, safetensors, toml under them — gets a byte that counts
//! its executions. LLVM's start-up code hands the counters' range to
//! `__sanitizer_cov_8bit_counters_init`, defined here. After each execution the
//! counts are bucketed as AFL does (1, 2, 3, 4-7, 8-15, 16-31, 32-127, 128+); an input
//! that reaches a new bucket of any edge joins the corpus.
//!
//! A build without the flags never calls the hook: `Coverage::instrumented()` is
//! false and the fuzzer falls back to its behavioural signal alone.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The counters' range, as LLVM reports it (one range: the linker merges every
/// module's counters into one section, and each module's constructor reports it).
static START: AtomicUsize = AtomicUsize::new(0);
static STOP: AtomicUsize = AtomicUsize::new(0);

/// Called by LLVM's module constructors, before `main`.
///
/// # Safety
/// `start..stop` must be the live counter section LLVM allocated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __sanitizer_cov_8bit_counters_init(start: *mut u8, stop: *mut u8) {
    if START.load(Ordering::Relaxed) == 0 {
        START.store(start as usize, Ordering::Relaxed);
        STOP.store(stop as usize, Ordering::Relaxed);
    }
}

/// The bucket bits of every edge seen so far in a campaign.
pub struct Coverage {
    seen: Vec<u8>,
}

impl Default for Coverage {
    fn default() -> Self {
        Self::new()
    }
}

impl Coverage {
    pub fn new() -> Self {
        Coverage {
            seen: vec![0; edges()],
        }
    }

    /// Whether this binary was built with the counters (`fuzz.sh`).
    pub fn instrumented() -> bool {
        edges() > 0
    }

    /// Zero the counters (before an execution).
    pub fn reset(&self) {
        counters().fill(0);
    }

    /// Fold the counters of the execution that just ran into what was seen; true when
    /// some edge reached a bucket it never reached before.
    pub fn fold(&mut self) -> bool {
        self.fold_counts(counters())
    }

    fn fold_counts(&mut self, counts: &[u8]) -> bool {
        let mut new = false;
        // Whole zero words are the common case: skip them eight at a time.
        let words = counts.len() / 8;
        for w in 0..words {
            let chunk = &counts[w * 8..w * 8 + 8];
            if u64::from_ne_bytes(chunk.try_into().expect("8 bytes")) == 0 {
                continue;
            }
            for (i, &c) in chunk.iter().enumerate() {
                new |= self.note(w * 8 + i, c);
            }
        }
        for i in words * 8..counts.len() {
            new |= self.note(i, counts[i]);
        }
        new
    }

    fn note(&mut self, edge: usize, count: u8) -> bool {
        let bit = bucket(count);
        let fresh = bit & !self.seen[edge] != 0;
        self.seen[edge] |= bit;
        fresh
    }

    /// Edges reached at least once in the campaign.
    pub fn covered(&self) -> usize {
        self.seen.iter().filter(|&&b| b != 0).count()
    }
}

/// Instrumented edges in the binary (0 without instrumentation).
pub fn edges() -> usize {
    STOP.load(Ordering::Relaxed) - START.load(Ordering::Relaxed)
}

fn counters() -> &'static mut [u8] {
    let (start, len) = (START.load(Ordering::Relaxed), edges());
    if len == 0 {
        return &mut [];
    }
    // SAFETY: LLVM's counter section, alive for the whole process; the counters are
    // plain bytes other threads may bump concurrently (a lost count only blurs a
    // bucket, as in libFuzzer).
    unsafe { std::slice::from_raw_parts_mut(start as *mut u8, len) }
}

/// AFL's hit-count buckets, one bit each.
fn bucket(count: u8) -> u8 {
    match count {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 4,
        4..=7 => 8,
        8..=15 => 16,
        16..=31 => 32,
        32..=127 => 64,
        _ => 128,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_counts_fall_in_afl_buckets() {
        let buckets: Vec<u8> = [0u8, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 127, 128, 255]
            .iter()
            .map(|&c| bucket(c))
            .collect();
        assert_eq!(
            buckets,
            [0, 1, 2, 4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128]
        );
    }

    #[test]
    fn a_plain_build_reports_no_coverage() {
        // `cargo test` does not pass the sancov flags: the fuzzer must know it.
        assert!(!Coverage::instrumented());
        let mut c = Coverage::new();
        c.reset();
        assert!(!c.fold());
        assert_eq!(c.covered(), 0);
    }

    #[test]
    fn only_a_new_bucket_is_new_coverage() {
        let mut c = Coverage { seen: vec![0; 19] };
        let mut counts = vec![0u8; 19];
        counts[17] = 1; // past the whole words
        counts[3] = 5;
        assert!(c.fold_counts(&counts));
        assert!(!c.fold_counts(&counts), "the same counts again");
        counts[3] = 6; // same bucket (4-7)
        assert!(!c.fold_counts(&counts));
        counts[3] = 9; // bucket 8-15
        assert!(c.fold_counts(&counts));
        counts[9] = 1; // a new edge
        assert!(c.fold_counts(&counts));
        assert_eq!(c.covered(), 3);
    }
}
