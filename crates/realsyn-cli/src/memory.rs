//! How the process's allocator treats freed memory, set once before a tensor-heavy
//! command runs.
//!
//! glibc's malloc serves each block above its mmap threshold (dynamic, from 128 KiB
//! up to 32 MiB) with a fresh mapping and unmaps it on free, and gives the heap's top
//! back to the OS past its trim threshold. A training step allocates and frees the
//! same activation and gradient buffers every step, so the kernel faulted in and
//! zeroed about 94,000 pages per ViT-B/32 step (batch 32), many of them on the thread
//! that drives the step while the pool's threads waited. Keeping freed memory in the
//! heap for reuse takes that to 5,000-10,000 (`perf stat -e page-faults`, 1 against
//! 3 steps) and the step 5-8% faster in two alternated runs of 4 steps
//! (docs/performance.md); the resident size stays near its peak instead of falling
//! between steps. jemalloc and mimalloc (LD_PRELOAD) made it worse here: 2.6x and
//! 1.7x the faults of glibc's defaults, and slower steps.
//!
//! Nothing is changed when the user set any of glibc's own `MALLOC_*_` variables or
//! `GLIBC_TUNABLES`, or `REALSYN_KEEP_FREED_MEMORY=0`.

/// glibc's largest accepted mmap threshold on 64-bit (`HEAP_MAX_SIZE / 2`); blocks
/// above it (a ViT-L/14 batch's largest activations) are still mapped per use.
const MMAP_THRESHOLD: i32 = 32 << 20;
/// The heap's top is returned to the OS only past 2 GiB free.
const TRIM_THRESHOLD: i32 = i32::MAX;
/// Heap growth in steps of 64 MiB, so one step's activations do not grow it block by block.
const TOP_PAD: i32 = 64 << 20;

/// Keep freed memory for reuse (see the module doc); a no-op off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_chose = std::env::vars_os().any(|(k, _)| {
            let k = k.to_string_lossy();
            (k.starts_with("MALLOC_") && k.ends_with('_')) || k == "GLIBC_TUNABLES"
        });
        let off = std::env::var("REALSYN_KEEP_FREED_MEMORY").is_ok_and(|v| v == "0");
        if user_chose || off {
            return;
        }
        // SAFETY: mallopt only changes malloc's parameters; called before the
        // command starts its threads.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
            libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
        }
    }
}
