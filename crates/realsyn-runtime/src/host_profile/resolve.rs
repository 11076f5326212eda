//! Raw sampled stacks -> frames with function and object names.

use std::collections::HashMap;
use std::ffi::CStr;

use super::{Frame, crate_of_file, rust_crate};

/// Resolves instruction addresses once each and interns the frames.
#[derive(Default)]
pub(super) struct Resolver {
    by_address: HashMap<usize, Vec<u32>>,
    ids: HashMap<Frame, u32>,
    frames: Vec<Frame>,
}

impl Resolver {
    /// One sample's addresses (innermost first, as the unwinder walks) -> frame ids,
    /// outermost first, without the profiler's own signal-handling frames.
    pub(super) fn stack(&mut self, ips: &[usize]) -> Vec<u32> {
        let resolved: Vec<Vec<u32>> = ips.iter().map(|&ip| self.resolve(ip)).collect();
        // The walk starts inside the sampler's signal handler; after it comes the
        // kernel's signal trampoline, then the interrupted code.
        let handler = resolved.iter().rposition(|ids| {
            ids.iter()
                .any(|&i| self.frames[i as usize].function.ends_with("on_sigprof"))
        });
        let first = handler.map_or(0, |h| h + 2).min(ips.len());
        let mut stack = Vec::new();
        for (k, ids) in resolved.iter().enumerate().skip(first) {
            if k == first && handler.is_some() {
                // The interrupted instruction's own address, not a return address:
                // resolve it as itself (the resolver steps back one byte).
                stack.extend(self.resolve(ips[k] + 1));
            } else {
                stack.extend(ids);
            }
        }
        stack.reverse();
        stack
    }

    pub(super) fn into_frames(self) -> Vec<Frame> {
        self.frames
    }

    /// An address's frames, innermost first (several where inlined calls are known).
    fn resolve(&mut self, ip: usize) -> Vec<u32> {
        if let Some(ids) = self.by_address.get(&ip) {
            return ids.clone();
        }
        let object = object_of(ip);
        let mut frames = Vec::new();
        backtrace::resolve(ip as *mut std::ffi::c_void, |symbol| {
            if let Some(name) = symbol.name() {
                // `{:#}`: demangled without the hash suffix.
                let function = format!("{name:#}");
                let krate = rust_crate(&function).map(str::to_string).or_else(|| {
                    symbol
                        .filename()
                        .and_then(|f| crate_of_file(&f.to_string_lossy()))
                });
                frames.push((function, krate));
            }
        });
        // No symbol in no object is the unwinder's end-of-stack marker, not code:
        // it gets no frame.
        if frames.is_empty() && object != UNKNOWN {
            frames.push((format!("[{object}]"), None));
        }
        let ids: Vec<u32> = frames
            .into_iter()
            .map(|(function, krate)| {
                self.intern(Frame {
                    function,
                    krate,
                    object: object.clone(),
                })
            })
            .collect();
        self.by_address.insert(ip, ids.clone());
        ids
    }

    fn intern(&mut self, frame: Frame) -> u32 {
        if let Some(&id) = self.ids.get(&frame) {
            return id;
        }
        let id = self.frames.len() as u32;
        self.frames.push(frame.clone());
        self.ids.insert(frame, id);
        id
    }
}

const UNKNOWN: &str = "unknown";

/// The file name of the loaded object an address lies in (`realsyn`, `libc.so.6`).
fn object_of(ip: usize) -> String {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only reads the loader's tables and fills `info`.
    let found = unsafe { libc::dladdr(ip as *const libc::c_void, info.as_mut_ptr()) };
    if found == 0 {
        return UNKNOWN.into();
    }
    // SAFETY: dladdr returned non-zero, so `info` is filled.
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return UNKNOWN.into();
    }
    // SAFETY: a NUL-terminated string owned by the loader.
    let path = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy();
    path.rsplit('/').next().unwrap_or(&path).to_string()
}
