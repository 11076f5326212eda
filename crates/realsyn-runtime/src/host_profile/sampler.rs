//! The sampler: a CPU-time timer per thread, each sending `SIGPROF` to its own
//! thread, whose handler records the thread's call stack into a preallocated buffer.
//!
//! Why per thread: a process-wide `ITIMER_PROF` (what pprof-rs and gperftools use)
//! is checked at each CPU's timer tick and signals whichever running thread's CPU
//! crosses the expiry first, which favours some of the threads that run at the same
//! time over others (measured here: a 75/25 split of CPU time between two threads
//! sampled as 84/16). With one timer on each thread's own CPU clock (as Go's
//! profiler since 1.18), each thread is sampled in proportion to its own CPU time.
//! And why not pprof-rs's handler: it drops a sample when another thread's handler
//! holds its lock, and timers that tick together make that common.
//!
//! The handler does nothing that can block: it unwinds (libgcc's unwinder, which
//! takes no lock it could already hold unless the thread was interrupted inside the
//! unwinder itself: such samples are skipped and counted) and claims a slot with an
//! atomic add. A thread is found by a watcher that lists `/proc/self/task` every
//! 10 ms, so threads that live shorter than that are not sampled; the watcher also
//! reads each thread's CPU clock, which tells the seconds a thread's samples stand
//! for, and the CPU time of threads that block SIGPROF and so give none.
//!
//! One thread (the profiled caller) also has a timer on the wall clock, whose
//! signals carry a tag: its samples say where that thread is while it waits as
//! well as while it runs (on the CPU backend, which op's parallel loop it waits on;
//! on a GPU, whether it waits for the device). A wall-clock signal can interrupt a
//! blocking call; the handler is installed with `SA_RESTART`, and calls that end
//! with `EINTR` all the same (a sleep, a timed wait) are retried by std and the
//! drivers, as under any other profiler that signals a waiting thread.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};

/// Frames kept per sample (innermost first), the signal-handling ones included.
const DEPTH: usize = 96;
/// Samples the buffer holds: 192 MiB reserved, of which only what samples fill is
/// ever touched (0.75 KiB each). A thread is sampled at most once per kernel
/// tick (100-1,000 per CPU second), so this is minutes of a busy process.
const CAPACITY: usize = 1 << 18;
const WATCH_EVERY: Duration = Duration::from_millis(10);
/// The value a wall-clock timer's signals carry (CPU-time timers carry 0).
const WALL_TAG: usize = 1;

/// What the handler writes into; shared with it through [`BUFFER`].
struct Buffer {
    next: AtomicUsize,
    full: AtomicUsize,
    in_unwinder: AtomicUsize,
    lens: Box<[AtomicUsize]>,
    tids: Box<[AtomicUsize]>,
    /// 1 where the sample came from the wall-clock timer.
    wall: Box<[AtomicUsize]>,
    ips: Box<[AtomicUsize]>,
    /// libgcc_s's executable ranges: a thread interrupted in there may hold the
    /// unwinder's lock.
    unwinder: Vec<(usize, usize)>,
}

static BUFFER: AtomicPtr<Buffer> = AtomicPtr::new(std::ptr::null_mut());
/// Handlers running now. Counted before a handler reads `BUFFER` and after it is
/// done with it, both sequentially consistent with `halt`'s unpublishing, so once
/// `halt` has cleared `BUFFER` and then read 0 here, no handler holds the buffer.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// One sample: the thread, its stack's addresses (innermost first), and which
/// clock's timer took it: the thread's CPU time, or (for the one thread sampled on
/// wall time too) the wall clock.
pub(super) struct Sample {
    pub tid: i32,
    pub ips: Vec<usize>,
    pub wall: bool,
}

/// What a stopped sampler hands back.
pub(super) struct Samples {
    pub samples: Vec<Sample>,
    /// Every thread the watcher saw, sampled or not (a thread that blocks SIGPROF,
    /// as Mesa's and some drivers' worker threads do, uses CPU time but gives no
    /// samples).
    pub threads: HashMap<i32, ThreadCpu>,
    /// Samples not taken: the buffer was full, or the thread was in the unwinder.
    pub lost: usize,
}

pub(super) struct Sampler {
    buffer: *mut Buffer,
    wall_timer: Option<libc::timer_t>,
    stop: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<Watched>>,
    threads: HashMap<i32, ThreadCpu>,
}

/// What the watcher found: the timers it created (plain ids, used from the
/// watcher's thread and then from `halt`'s) and each thread's CPU time.
struct Watched {
    timers: Vec<libc::timer_t>,
    threads: HashMap<i32, ThreadCpu>,
}

unsafe impl Send for Watched {}

/// One thread's name and the CPU seconds it used while it was watched: from when
/// the watcher first saw it to its last reading (the stop, or the last scan before
/// the thread ended: at most `WATCH_EVERY` of it is missed).
#[derive(Clone, Debug)]
pub(super) struct ThreadCpu {
    pub name: String,
    pub cpu_s: f64,
    first: f64,
    /// Whether the name was read again after the thread's start, when threads
    /// name themselves.
    renamed: bool,
}

impl Sampler {
    /// Install the handler and start timing every thread, one sample per
    /// `1 / hz` s of its CPU time, and thread `tid` of `wall: Some((tid, wall_hz))`
    /// also every `1 / wall_hz` s of wall time, whether it runs or waits.
    pub(super) fn start(hz: i32, wall: Option<(i32, i32)>) -> Result<Self> {
        for rate in std::iter::once(hz).chain(wall.map(|w| w.1)) {
            if rate <= 0 || rate > 10_000 {
                bail!("a sampling rate of {rate} Hz: use 1-10,000");
            }
        }
        let buffer = Box::into_raw(Box::new(Buffer {
            next: AtomicUsize::new(0),
            full: AtomicUsize::new(0),
            in_unwinder: AtomicUsize::new(0),
            lens: zeroed(CAPACITY),
            tids: zeroed(CAPACITY),
            wall: zeroed(CAPACITY),
            ips: zeroed(CAPACITY * DEPTH),
            unwinder: executable_ranges("libgcc_s"),
        }));
        if BUFFER
            .compare_exchange(
                std::ptr::null_mut(),
                buffer,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            // SAFETY: never shared; it is ours to free.
            drop(unsafe { Box::from_raw(buffer) });
            bail!("a host profiler is already running in this process");
        }
        // SAFETY: a handler that only touches the buffer through atomics.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigprof
                as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGPROF, &action, std::ptr::null_mut()) != 0 {
                BUFFER.store(std::ptr::null_mut(), Ordering::Release);
                drop(Box::from_raw(buffer));
                bail!(
                    "cannot install a SIGPROF handler: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let interval_ns = 1_000_000_000 / hz as i64;
        let wall_timer = wall.and_then(|(tid, wall_hz)| {
            let every = 1_000_000_000 / wall_hz as i64;
            thread_timer(libc::CLOCK_MONOTONIC, tid, WALL_TAG, every)
        });
        let watcher = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("host-profiler".into())
                .spawn(move || watch(&stop, interval_ns))?
        };
        Ok(Self {
            buffer,
            wall_timer,
            stop,
            watcher: Some(watcher),
            threads: HashMap::new(),
        })
    }

    /// Stop every timer, wait for handlers still running, and collect the samples.
    pub(super) fn stop(mut self) -> Samples {
        self.halt();
        // SAFETY: `halt` unpublished the buffer and waited for every handler; it
        // is freed only when `self` drops.
        let buffer = unsafe { &*self.buffer };
        let taken = buffer.next.load(Ordering::Acquire).min(CAPACITY);
        let samples = (0..taken)
            .filter_map(|i| {
                let n = buffer.lens[i].load(Ordering::Acquire);
                (n > 0).then(|| Sample {
                    tid: buffer.tids[i].load(Ordering::Relaxed) as i32,
                    wall: buffer.wall[i].load(Ordering::Relaxed) == WALL_TAG,
                    ips: (0..n)
                        .map(|k| buffer.ips[i * DEPTH + k].load(Ordering::Relaxed))
                        .collect(),
                })
            })
            .collect();
        Samples {
            samples,
            threads: std::mem::take(&mut self.threads),
            lost: buffer.full.load(Ordering::Relaxed) + buffer.in_unwinder.load(Ordering::Relaxed),
        }
    }

    /// Stop the watcher and the timers, ignore SIGPROF from here on, unpublish the
    /// buffer and wait for handlers still running. Once.
    fn halt(&mut self) {
        let Some(watcher) = self.watcher.take() else {
            return;
        };
        self.stop.store(true, Ordering::Release);
        if let Some(timer) = self.wall_timer.take() {
            // SAFETY: created by timer_create, deleted once.
            unsafe { libc::timer_delete(timer) };
        }
        let watched = watcher.join().unwrap_or(Watched {
            timers: Vec::new(),
            threads: HashMap::new(),
        });
        self.threads = watched.threads;
        for timer in &watched.timers {
            // SAFETY: created by timer_create, deleted once.
            unsafe { libc::timer_delete(*timer) };
        }
        // A signal already pending is ignored (SIGPROF's default action would end
        // the process).
        // SAFETY: setting a disposition.
        unsafe { libc::signal(libc::SIGPROF, libc::SIG_IGN) };
        BUFFER.store(std::ptr::null_mut(), Ordering::SeqCst);
        while IN_FLIGHT.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.halt();
        // SAFETY: unpublished, and no handler holds it any more.
        drop(unsafe { Box::from_raw(self.buffer) });
    }
}

/// `n` zeroed atomics, from zeroed memory the allocator maps lazily: pages that no
/// sample reaches are never touched.
fn zeroed(n: usize) -> Box<[AtomicUsize]> {
    let raw = Box::into_raw(vec![0usize; n].into_boxed_slice());
    // SAFETY: AtomicUsize has usize's size, alignment and bit validity.
    unsafe { Box::from_raw(raw as *mut [AtomicUsize]) }
}

/// The watcher: a timer for each thread of the process not yet timed, and each
/// thread's CPU time read, every `WATCH_EVERY` until told to stop (then once more).
fn watch(stop: &AtomicBool, interval_ns: i64) -> Watched {
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() };
    let mut watched = Watched {
        timers: Vec::new(),
        threads: HashMap::new(),
    };
    let mut seen = HashSet::from([me]);
    loop {
        let last = stop.load(Ordering::Acquire);
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            break;
        };
        for tid in tasks
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
        {
            let Some(now) = thread_cpu_s(tid) else {
                continue; // ended since the listing
            };
            if seen.insert(tid) {
                let clock = thread_clock(tid);
                watched
                    .timers
                    .extend(thread_timer(clock, tid, 0, interval_ns));
                let name = thread_name(tid).unwrap_or_default();
                watched.threads.insert(
                    tid,
                    ThreadCpu {
                        name,
                        cpu_s: 0.0,
                        first: now,
                        renamed: false,
                    },
                );
            } else if let Some(t) = watched.threads.get_mut(&tid) {
                t.cpu_s = now - t.first;
                if !t.renamed || last {
                    // Threads name themselves after they start.
                    t.name = thread_name(tid).unwrap_or(std::mem::take(&mut t.name));
                    t.renamed = true;
                }
            }
        }
        if last {
            break;
        }
        std::thread::sleep(WATCH_EVERY);
    }
    watched
}

/// Linux's clock id for a thread's CPU time (MAKE_THREAD_CPUCLOCK(tid,
/// CPUCLOCK_SCHED) in the kernel's posix-timers.h).
fn thread_clock(tid: i32) -> libc::clockid_t {
    ((!tid) << 3) | 6
}

/// Thread `tid`'s CPU seconds so far; `None` once it has ended.
fn thread_cpu_s(tid: i32) -> Option<f64> {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the timespec it is given; a stale id gives an error.
    let ok = unsafe { libc::clock_gettime(thread_clock(tid), &mut t) } == 0;
    ok.then(|| t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9)
}

fn thread_name(tid: i32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
    Some(comm.trim_end().to_string())
}

/// A timer on `clock` (a thread's CPU clock, or the wall clock) that sends thread
/// `tid` SIGPROF carrying `tag` every `interval_ns` of that clock; `None` if the
/// thread has exited.
fn thread_timer(
    clock: libc::clockid_t,
    tid: i32,
    tag: usize,
    interval_ns: i64,
) -> Option<libc::timer_t> {
    // SAFETY: plain C structs filled before use; the kernel validates the ids.
    unsafe {
        let mut event: libc::sigevent = std::mem::zeroed();
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = libc::SIGPROF;
        event.sigev_notify_thread_id = tid;
        event.sigev_value.sival_ptr = tag as *mut libc::c_void;
        let mut timer: libc::timer_t = std::mem::zeroed();
        if libc::timer_create(clock, &mut event, &mut timer) != 0 {
            return None;
        }
        let every = libc::timespec {
            tv_sec: interval_ns / 1_000_000_000,
            tv_nsec: interval_ns % 1_000_000_000,
        };
        let spec = libc::itimerspec {
            it_interval: every,
            it_value: every,
        };
        if libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) != 0 {
            libc::timer_delete(timer);
            return None;
        }
        Some(timer)
    }
}

/// The SIGPROF handler: the interrupted thread's stack into the next free slot.
extern "C" fn on_sigprof(_: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    let buffer = BUFFER.load(Ordering::SeqCst);
    if buffer.is_null() {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    // SAFETY: the buffer is freed only after `halt` cleared `BUFFER` and then saw
    // `IN_FLIGHT` at 0; this handler counted itself before it read `BUFFER`.
    let buffer = unsafe { &*buffer };
    // Signal handlers must leave errno as they found it.
    // SAFETY: errno's address is valid for the thread's life.
    let errno = unsafe { *libc::__errno_location() };
    if interrupted_in(context, &buffer.unwinder) {
        buffer.in_unwinder.fetch_add(1, Ordering::Relaxed);
    } else {
        let i = buffer.next.fetch_add(1, Ordering::AcqRel);
        if i < CAPACITY {
            let slot = &buffer.ips[i * DEPTH..(i + 1) * DEPTH];
            let mut n = 0;
            // SAFETY: the unwinder is re-entrant across threads; this thread is
            // not inside it (checked above), and SIGPROF is blocked while we run.
            unsafe {
                backtrace::trace_unsynchronized(|frame| {
                    slot[n].store(frame.ip() as usize, Ordering::Relaxed);
                    n += 1;
                    n < DEPTH
                })
            };
            // SAFETY: gettid has no preconditions.
            buffer.tids[i].store(unsafe { libc::gettid() } as usize, Ordering::Relaxed);
            buffer.wall[i].store(timer_tag(info), Ordering::Relaxed);
            buffer.lens[i].store(n, Ordering::Release);
        } else {
            buffer.full.fetch_add(1, Ordering::Relaxed);
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
}

/// The tag of the timer that sent this signal (0 for a CPU-time timer, or a
/// SIGPROF not sent by a timer).
fn timer_tag(info: *mut libc::siginfo_t) -> usize {
    if info.is_null() {
        return 0;
    }
    // SAFETY: the kernel passes a filled siginfo_t to an SA_SIGINFO handler; a
    // timer's carries the sigevent's value.
    unsafe {
        if (*info).si_code != libc::SI_TIMER {
            return 0;
        }
        (*info).si_value().sival_ptr as usize
    }
}

/// Whether the interrupted instruction lies in one of `ranges`.
fn interrupted_in(context: *mut libc::c_void, ranges: &[(usize, usize)]) -> bool {
    let Some(pc) = interrupted_pc(context) else {
        return false;
    };
    ranges
        .iter()
        .any(|&(start, end)| (start..end).contains(&pc))
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn interrupted_pc(context: *mut libc::c_void) -> Option<usize> {
    // SAFETY: the kernel passes a ucontext_t to an SA_SIGINFO handler.
    let context = unsafe { &*(context as *const libc::ucontext_t) };
    Some(context.uc_mcontext.gregs[libc::REG_RIP as usize] as usize)
}

#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
fn interrupted_pc(context: *mut libc::c_void) -> Option<usize> {
    // SAFETY: the kernel passes a ucontext_t to an SA_SIGINFO handler.
    let context = unsafe { &*(context as *const libc::ucontext_t) };
    Some(context.uc_mcontext.pc as usize)
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn interrupted_pc(_: *mut libc::c_void) -> Option<usize> {
    None
}

/// The executable segments of the loaded objects whose path contains `name`.
fn executable_ranges(name: &str) -> Vec<(usize, usize)> {
    struct Search<'a> {
        name: &'a str,
        found: Vec<(usize, usize)>,
    }
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid info; `data` is our Search.
        let (info, search) = unsafe { (&*info, &mut *(data as *mut Search)) };
        if info.dlpi_name.is_null() {
            return 0;
        }
        // SAFETY: a NUL-terminated path owned by the loader.
        let path = unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) };
        if !path.to_string_lossy().contains(search.name) {
            return 0;
        }
        for k in 0..info.dlpi_phnum as usize {
            // SAFETY: dlpi_phdr holds dlpi_phnum headers.
            let header = unsafe { &*info.dlpi_phdr.add(k) };
            if header.p_type == libc::PT_LOAD && header.p_flags & libc::PF_X != 0 {
                let start = info.dlpi_addr as usize + header.p_vaddr as usize;
                search.found.push((start, start + header.p_memsz as usize));
            }
        }
        0
    }
    let mut search = Search {
        name,
        found: Vec::new(),
    };
    // SAFETY: the callback only reads what the loader gives it.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut search as *mut Search as *mut libc::c_void) };
    search.found
}
