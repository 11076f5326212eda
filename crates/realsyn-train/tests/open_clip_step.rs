//! One training step equals open_clip's (fixtures: tests/peer/train_parity.py):
//! same tiny model, batches and tokens; ClipLoss, open_clip's AdamW groups, the
//! OneCycle lr, the logit-scale clamp. Two steps, so the moments and bias
//! corrections of step 2 are covered too. The gradients are checked with and
//! without activation checkpointing (open_clip's gradients are the same either way).

use std::path::PathBuf;

use burn::tensor::{Int, Tensor, TensorData};
use realsyn_model::backend::CpuAutodiff as B;
use realsyn_model::clip::weights::read_safetensors;
use realsyn_model::common::state_dict::StateDict;
use realsyn_model::{Clip, ClipConfig};
use realsyn_train::optim::{AdamW, AdamWConfig, clamp_logit_scale, track_gradients};
use realsyn_train::schedule::{Schedule, ScheduleKind};
use realsyn_train::step::{StepPlan, forward_backward};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn step_fixture() -> StateDict {
    let bytes = std::fs::read(fixtures().join("train/step.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut sd = StateDict::default();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let data: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            safetensors::Dtype::F64 => view
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                .collect(),
            safetensors::Dtype::I64 => view
                .data()
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32)
                .collect(),
            d => panic!("{name}: {d:?}"),
        };
        sd.insert(
            name,
            realsyn_model::common::state_dict::HostTensor::new(shape, data),
        );
    }
    sd
}

/// Our gradient (Burn layout, flat) in PyTorch's layout: Linear weights transposed.
fn to_torch_layout(key: &str, torch_shape: &[usize], ours: Vec<f32>) -> Vec<f32> {
    let linear = torch_shape.len() == 2
        && (key.ends_with("proj_weight")
            || (key.ends_with(".weight") && !key.contains("embedding")));
    if linear {
        let h = realsyn_model::common::state_dict::HostTensor::new(
            vec![torch_shape[1], torch_shape[0]],
            ours,
        );
        h.transposed().unwrap().data
    } else {
        ours
    }
}

fn f64_exact(key: &str) -> f64 {
    let bytes = std::fs::read(fixtures().join("train/step.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let v = st.tensor(key).unwrap();
    f64::from_le_bytes(v.data()[..8].try_into().unwrap())
}

#[test]
fn two_adamw_steps_match_open_clip() {
    let device = Default::default();
    let config =
        ClipConfig::from_name_or_path(fixtures().join("parity/tiny-gelu.json").to_str().unwrap())
            .unwrap();
    let (weights, _) = read_safetensors(&fixtures().join("parity/tiny-gelu.safetensors")).unwrap();
    let mut model =
        track_gradients(Clip::<B>::from_open_clip(&config, weights, &device).unwrap()).unwrap();
    let fx = step_fixture();
    let sched = Schedule {
        kind: ScheduleKind::Onecycle,
        max_lr: 1e-3,
        total_steps: 20,
        pct_start: 0.1,
        div_factor: 25.0,
        final_div_factor: 1e4,
        warmup_steps: 0,
        cycle_momentum: false,
        base_momentum: 0.85,
        max_momentum: 0.95,
    };
    let mut opt = AdamW::new(AdamWConfig {
        weight_decay: 0.2,
        beta1: 0.9,
        beta2: 0.98,
        eps: 1e-6,
    });
    let mut worst = 0.0f64;
    let mut worst_grad = 0.0f64;
    let mut noise_elements = 0usize;
    let mut noisy: std::collections::HashMap<String, Vec<bool>> = Default::default();
    let mut lr_sum = 0.0;
    for s in 1..=2u64 {
        let img = fx.get(&format!("step{s}.images")).unwrap();
        let tok = fx.get(&format!("step{s}.tokens")).unwrap();
        let images = Tensor::<B, 4>::from_data(
            TensorData::new(
                img.data.clone(),
                [img.shape[0], 3, img.shape[2], img.shape[3]],
            ),
            &device,
        );
        let ids: Vec<i32> = tok.data.iter().map(|&x| x as i32).collect();
        let tokens = Tensor::<B, 2, Int>::from_data(
            TensorData::new(ids, [tok.shape[0], tok.shape[1]]),
            &device,
        );
        let lr = sched.lr(s - 1);
        let torch_lr = f64_exact(&format!("step{s}.lr"));
        assert!(
            (lr - torch_lr).abs() <= 1e-15 * torch_lr,
            "lr {lr} vs torch {torch_lr}"
        );

        lr_sum += lr;
        let checkpointed = StepPlan {
            grad_checkpointing: true,
            ..StepPlan::accumulating(1)
        };
        let recomputed = forward_backward(&model, images.clone(), tokens.clone(), checkpointed);
        let recomputed = recomputed.unwrap();
        let out = forward_backward(&model, images, tokens, StepPlan::accumulating(1)).unwrap();
        assert_eq!(recomputed.grads.len(), out.grads.len());
        // Gradients first: they must agree before Adam can.
        let mut our_grads: std::collections::HashMap<String, Vec<f32>> = Default::default();
        let both = (out.grads.gradients().into_iter())
            .map(|(k, g)| (k, g, ""))
            .chain(
                (recomputed.grads.gradients().into_iter()).map(|(k, g)| (k, g, " (checkpointed)")),
            );
        for (k, g, how) in both {
            let ours: Vec<f32> = g.into_data().into_vec().unwrap();
            let t = fx.get(&format!("step{s}.grad.{k}")).unwrap();
            let ours = to_torch_layout(&k, &t.shape, ours);
            if how.is_empty() {
                our_grads.insert(k.clone(), ours.clone());
            }
            let (d, n) = ours
                .iter()
                .zip(&t.data)
                .fold((0f64, 0f64), |(d, n), (x, y)| {
                    (d + ((x - y) as f64).powi(2), n + (*y as f64).powi(2))
                });
            let rel = (d / n.max(1e-30)).sqrt();
            worst_grad = worst_grad.max(rel);
            assert!(
                rel <= 1e-5,
                "step {s} gradient of {k}{how}: relative difference {rel:e}"
            );
        }
        let torch_loss = f64_exact(&format!("step{s}.loss"));
        assert!(
            (out.loss - torch_loss).abs() < 1e-5,
            "step {s}: loss {} vs open_clip {torch_loss}",
            out.loss
        );
        opt.update(&mut model, &out.grads, lr, 0.9).unwrap();
        model = clamp_logit_scale(model);

        let ours = model.to_open_clip().unwrap();
        let mut n = 0;
        for key in ours.keys() {
            let a = ours.get(key).unwrap();
            let b = fx
                .get(&format!("step{s}.param.{key}"))
                .unwrap_or_else(|| panic!("fixture lacks {key}"));
            assert_eq!(a.shape, b.shape, "{key}");
            // Where a gradient is at the level of float rounding (|g| < 10 eps; e.g.
            // the attention key bias, whose exact gradient is 0), Adam's
            // g / (|g| + eps) turns each framework's rounding noise into a step of
            // up to lr. Those elements are only bounded by that; all others must match.
            // An element flagged at step 1 carries that step's difference into step 2.
            let grad = fx.get(&format!("step{s}.grad.{key}"));
            let flags = noisy
                .entry(key.clone())
                .or_insert_with(|| vec![false; a.data.len()]);
            let (mut diff2, mut norm2) = (0.0f64, 0.0f64);
            for (i, (x, y)) in a.data.iter().zip(&b.data).enumerate() {
                let err = (x - y).abs() as f64;
                // (Rows both frameworks leave at exactly 0, such as unused token
                // embeddings, are deterministic and stay compared.)
                let ours_zero = our_grads.get(key).is_none_or(|g| g[i] == 0.0);
                flags[i] |= grad
                    .is_some_and(|g| g.data[i].abs() < 1e-5 && !(g.data[i] == 0.0 && ours_zero));
                if flags[i] {
                    noise_elements += 1;
                    assert!(err <= 2.0 * lr_sum, "step {s} {key}[{i}]: {x} vs {y}");
                    continue;
                }
                // Elementwise: torch.testing.assert_close's float32 tolerance.
                assert!(
                    err <= 1e-5 + 1.3e-6 * y.abs() as f64,
                    "step {s} {key}[{i}]: {x} vs open_clip {y}"
                );
                diff2 += err * err;
                norm2 += (*y as f64).powi(2);
            }
            // Per tensor: ||ours - open_clip|| / ||open_clip|| <= 1e-5.
            let rel = (diff2 / norm2.max(1e-30)).sqrt();
            worst = worst.max(rel);
            assert!(rel <= 1e-5, "step {s} {key}: relative difference {rel:e}");
            n += 1;
        }
        let expected = fx
            .keys()
            .filter(|k| k.starts_with(&format!("step{s}.param.")))
            .count();
        assert_eq!(n, expected, "every parameter compared");
    }
    eprintln!(
        "over 2 steps: worst gradient difference {worst_grad:e}, worst parameter difference {worst:e} \
         (per tensor, relative); {noise_elements} element-steps had 0 < |g| < 1e-5 and were bounded by lr"
    );
}
