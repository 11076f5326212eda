//! A counting global allocator with a cap: a reader that makes the process hold more
//! than the cap aborts it (the culprit is the campaign's `current` input), so "no
//! memory runaway" is checked on every execution, not sampled. Binaries opt in with
//! `#[global_allocator] static A: CappedAlloc = CappedAlloc;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// 0 = no cap.
static CAP: AtomicUsize = AtomicUsize::new(0);

pub struct CappedAlloc;

pub fn set_cap(bytes: usize) {
    CAP.store(bytes, Ordering::Relaxed);
}

pub fn reset_peak() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Highest live bytes since `reset_peak` (0 when this allocator is not installed).
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
    let cap = CAP.load(Ordering::Relaxed);
    if cap != 0 && now > cap {
        // No allocation from here on: a static message, then abort.
        let _ = std::io::stderr().write_all(
            b"realsyn-fuzz: MEMORY: live allocations passed --mem-cap-mb; the input is artifacts/TARGET/current.*\n",
        );
        std::process::abort();
    }
}

unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            grew(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
