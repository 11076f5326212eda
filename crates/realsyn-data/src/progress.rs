//! Progress bars, one style for the whole tool. Hidden when stderr is not a terminal
//! unless REALSYN_PROGRESS=1.

pub use indicatif::ProgressBar;
use indicatif::{ProgressDrawTarget, ProgressStyle};

pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    if std::env::var_os("REALSYN_PROGRESS").is_none()
        && !std::io::IsTerminal::is_terminal(&std::io::stderr())
    {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb
}
