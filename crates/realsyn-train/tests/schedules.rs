//! Learning-rate schedules equal PyTorch's OneCycleLR and open_clip_train's
//! cosine_lr / const_lr step by step (fixtures: tests/peer/train_parity.py).

use std::path::PathBuf;

use realsyn_train::schedule::{Schedule, ScheduleKind};

#[test]
fn schedules_match_torch_and_open_clip_train() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/train/schedules.json");
    let cases: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(cases.len(), 4);
    for c in &cases {
        let kind: ScheduleKind = serde_json::from_value(c["kind"].clone()).unwrap();
        let s = Schedule {
            kind,
            max_lr: c["max_lr"].as_f64().unwrap(),
            total_steps: c["total_steps"].as_u64().unwrap(),
            pct_start: c["pct_start"].as_f64().unwrap_or(0.1),
            div_factor: c["div_factor"].as_f64().unwrap_or(25.0),
            final_div_factor: c["final_div_factor"].as_f64().unwrap_or(1e4),
            warmup_steps: c["warmup_steps"].as_u64().unwrap_or(0),
            cycle_momentum: c["cycle_momentum"].as_bool().unwrap_or(false),
            base_momentum: 0.85,
            max_momentum: 0.95,
        };
        let lrs = c["lr"].as_array().unwrap();
        assert_eq!(lrs.len() as u64, s.total_steps);
        for (step, expected) in lrs.iter().enumerate() {
            let expected = expected.as_f64().unwrap();
            let ours = s.lr(step as u64);
            assert!(
                (ours - expected).abs() <= 1e-12 * expected.abs().max(1e-12),
                "{kind:?} step {step}: {ours} vs {expected}"
            );
        }
        if let Some(b1) = c["beta1"].as_array() {
            for (step, expected) in b1.iter().enumerate() {
                let ours = s.beta1(step as u64, 0.9);
                assert!(
                    (ours - expected.as_f64().unwrap()).abs() < 1e-12,
                    "beta1 step {step}"
                );
            }
        }
    }
}
