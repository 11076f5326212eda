//! The CI smoke run of every fuzz target (a few hundred mutations each on the committed
//! seeds: no panic, no hang, no memory runaway), and a check that the harness does
//! catch a panicking reader. The long campaigns are `realsyn-fuzz --execs 1000000`.

use std::path::Path;
use std::time::Duration;

use realsyn_fuzz::alloc::{CappedAlloc, set_cap};
use realsyn_fuzz::targets::{Outcome, Target};
use realsyn_fuzz::{Limits, fuzz, seeds, targets};

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

fn limits(execs: u64) -> Limits {
    Limits {
        execs,
        max_time: Duration::from_secs(60),
        exec_timeout: Duration::from_secs(60),
        seed: 7,
        keep: None,
    }
}

#[test]
fn every_reader_survives_a_smoke_run() {
    set_cap(4 << 30);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    for t in targets() {
        let seeds = seeds(&t, &repo).unwrap();
        let r = fuzz(&t, seeds, &limits(300), tmp.path()).unwrap();
        eprintln!(
            "{}: {} execs in {:.1} s, {} refused, {} behaviours, peak {:.0} MB",
            r.target,
            r.execs,
            r.seconds,
            r.refused,
            r.behaviours,
            r.peak_bytes as f64 / (1 << 20) as f64
        );
        assert!(r.crashes.is_empty(), "{}: {:?}", t.name, r.crashes);
        // The seeds are real inputs: at least one is read, and mutations reach
        // more than one behaviour.
        assert!(r.refused < r.execs, "{}: every input refused", t.name);
        assert!(r.behaviours >= 2, "{}: one behaviour only", t.name);
    }
}

fn panics_on_bang(_: &Path, bytes: &[u8]) -> Outcome {
    if bytes.contains(&b'!') {
        panic!("reader panicked on '!'");
    }
    Outcome {
        refused: false,
        signature: format!("len {}", bytes.len().min(4)),
    }
}

#[test]
fn a_panicking_reader_is_caught_and_its_input_kept() {
    let t = Target {
        name: "planted",
        ext: "txt",
        reader: "a reader with a planted bug",
        fixtures: &[],
        dictionary: &[b"!"],
        made_seeds: Vec::new,
        run: panics_on_bang,
    };
    let tmp = tempfile::tempdir().unwrap();
    let r = fuzz(&t, vec![b"hello".to_vec()], &limits(2000), tmp.path()).unwrap();
    assert!(!r.crashes.is_empty(), "the planted panic was never found");
    let (msg, input) = &r.crashes[0];
    assert!(msg.contains("panicked on '!'"));
    assert!(std::fs::read(input).unwrap().contains(&b'!'));
}
