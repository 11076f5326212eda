//! The update against torch's per-parameter AdamW formula, open_clip's decay groups,
//! and the saved state's keys and resume.

use super::*;
use burn::tensor::Distribution;
use realsyn_model::ClipConfig;
use realsyn_model::backend::{Cpu, CpuAutodiff};
use std::collections::BTreeMap;

#[test]
fn open_clip_decay_groups() {
    assert!(decays(
        "visual.transformer.resblocks.0.attn.in_proj_weight",
        2
    ));
    assert!(decays("token_embedding.weight", 2));
    assert!(decays("positional_embedding", 2));
    assert!(decays("visual.conv1.weight", 4));
    assert!(!decays("visual.class_embedding", 1));
    assert!(!decays("visual.ln_pre.weight", 1));
    assert!(!decays("transformer.resblocks.3.ln_2.weight", 1));
    assert!(!decays(
        "visual.transformer.resblocks.0.attn.in_proj_bias",
        1
    ));
    assert!(!decays("logit_scale", 0));
}

const TINY: &str = "fashion-mnist-tiny.json";
/// EVA02 with timm's separate q/k/v projections and SwiGLU's two input layers (one
/// stacked parameter each here).
const TINY_EVA02: &str = "fashion-mnist-eva02-tiny.json";

fn tiny(arch: &str) -> Clip<CpuAutodiff> {
    let path = format!("{}/../../recipes/models/{arch}", env!("CARGO_MANIFEST_DIR"));
    let cfg = ClipConfig::from_name_or_path(&path).unwrap();
    track_gradients(Clip::new(&cfg, &Default::default())).unwrap()
}

/// Every parameter by name, flat, on the host.
fn params(model: &Clip<CpuAutodiff>) -> BTreeMap<String, (Vec<f32>, usize)> {
    struct Read(BTreeMap<String, (Vec<f32>, usize)>);
    impl ParamVisitor<CpuAutodiff> for Read {
        fn visit<const D: usize>(
            &mut self,
            key: &str,
            layout: Layout,
            param: &mut Param<Tensor<CpuAutodiff, D>>,
        ) -> Result<()> {
            let v = param.val().into_data().into_vec::<f32>().unwrap();
            self.0.insert(key.into(), (v, group_of(key, layout, D)));
            Ok(())
        }
    }
    let mut r = Read(BTreeMap::new());
    visit_params(&mut model.clone(), &mut r).unwrap();
    r.0
}

/// Gradients for every parameter but `skip`, seeded.
fn grads(model: &Clip<CpuAutodiff>, seed: u64, skip: &str) -> NamedGrads<Cpu> {
    <Cpu as Backend>::seed(&Default::default(), seed);
    let mut g = BTreeMap::new();
    for (k, (v, _)) in params(model) {
        if k != skip {
            let t = Tensor::random(
                [v.len()],
                Distribution::Normal(0.0, 1.0),
                &Default::default(),
            );
            g.insert(k, t);
        }
    }
    NamedGrads::from_map(g)
}

/// torch's AdamW for one parameter, in f32 as the flat update computes it.
#[allow(clippy::too_many_arguments)]
fn reference(
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    g: &[f32],
    t: i32,
    lr: f64,
    wd: f64,
    c: AdamWConfig,
) {
    let bc1 = 1.0 - c.beta1.powi(t);
    let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
    for i in 0..p.len() {
        if wd > 0.0 {
            p[i] *= (1.0 - lr * wd) as f32;
        }
        m[i] += (g[i] - m[i]) * (1.0 - c.beta1) as f32;
        v[i] = v[i] * c.beta2 as f32 + g[i].powi(2) * (1.0 - c.beta2) as f32;
        let denom = v[i].sqrt() / bc2_sqrt as f32 + c.eps as f32;
        p[i] -= m[i] / denom * (lr / bc1) as f32;
    }
}

/// Both forms of the update (foreach on, off; foreach with gradients packed by
/// the step or not) are torch's per-parameter AdamW: four steps, one of them
/// with a parameter lacking its gradient (it keeps its value and moments), the
/// moments saved and restored into a fresh optimiser half-way, and the logit
/// scale changed from outside before the last (open_clip's clamp).
#[test]
fn both_update_forms_are_the_per_parameter_formula() {
    for (foreach, packed) in [(false, false), (true, false), (true, true)] {
        check_against_reference(TINY, foreach, packed);
    }
}

/// EVA02's q, k and v weights are one parameter here and three in PyTorch, and
/// its SwiGLU's two input layers one here: the saved moments are the parts under
/// timm's keys and shapes, and a resume from them continues as the formula does.
#[test]
fn eva02_stacked_params_update_and_resume_under_pytorch_keys() {
    for (foreach, packed) in [(false, false), (true, true)] {
        check_against_reference(TINY_EVA02, foreach, packed);
    }
}

fn check_against_reference(arch: &str, foreach: bool, packed: bool) {
    let c = AdamWConfig {
        weight_decay: 0.2,
        beta1: 0.9,
        beta2: 0.98,
        eps: 1e-6,
    };
    let mut model = tiny(arch);
    let mut expected = params(&model);
    let mut moments: BTreeMap<String, (Vec<f32>, Vec<f32>)> = expected
        .iter()
        .map(|(k, (v, _))| (k.clone(), (vec![0.0; v.len()], vec![0.0; v.len()])))
        .collect();
    let mut steps: BTreeMap<String, i32> = BTreeMap::new();
    let fresh = || AdamW::<Cpu> {
        foreach,
        ..AdamW::new(c)
    };
    let mut opt = fresh();
    // A parameter without a gradient at step 2 (EVA02's: the stacked q/k/v).
    let skip = match arch {
        TINY_EVA02 => "visual.trunk.blocks.0.attn.qkv.weight",
        _ => "visual.ln_pre.weight",
    };
    for (step, lr) in [(1u64, 1e-2), (2, 5e-3), (3, 2e-3), (4, 1e-3)] {
        let mut g = grads(&model, step, if step == 2 { skip } else { "" });
        if packed {
            assert!(g.pack(opt.layout(&model, &g).unwrap()));
        }
        if step == 3 {
            // Resume: a fresh optimiser from the saved moments.
            let sd = opt.state_dict(&model).unwrap();
            if arch == TINY_EVA02 {
                let attn = "visual.trunk.blocks.0.attn";
                let w = sd
                    .get(&format!("exp_avg.{attn}.q_proj.bias"))
                    .unwrap()
                    .shape[0];
                for part in ["q", "k", "v"] {
                    let key = format!("exp_avg_sq.{attn}.{part}_proj.weight");
                    let t = sd.get(&key).unwrap_or_else(|| panic!("{key} saved"));
                    assert_eq!(t.shape, [w, w], "{key}");
                }
                assert!(!sd.contains(&format!("exp_avg.{attn}.qkv.weight")));
                // SwiGLU's packed input layer: timm's two layers, biases included.
                let mlp = "visual.trunk.blocks.0.mlp";
                let h = sd.get(&format!("exp_avg.{mlp}.fc2.weight")).unwrap().shape[1];
                for part in ["g", "x"] {
                    let key = format!("exp_avg.{mlp}.fc1_{part}");
                    let shape = |p: &str| sd.get(&format!("{key}.{p}")).map(|t| t.shape.clone());
                    assert_eq!(shape("weight"), Some(vec![h, w]), "{key}.weight");
                    assert_eq!(shape("bias"), Some(vec![h]), "{key}.bias");
                }
                assert!(!sd.contains(&format!("exp_avg.{mlp}.fc1.bias")));
            }
            opt = fresh();
            opt.load_state_dict(&model, sd, 2, &Default::default())
                .unwrap();
        }
        opt.update(&mut model, &g, lr, c.beta1).unwrap();
        for (k, (p, group)) in expected.iter_mut() {
            let Some(gk) = g.get(k) else { continue };
            let gv = gk.clone().into_data().into_vec::<f32>().unwrap();
            let (m, v) = moments.get_mut(k).unwrap();
            let t = steps.entry(k.clone()).or_insert(0);
            *t += 1;
            // The shared step counter is what bias-corrects (PyTorch's per-parameter
            // `step` equals it while every parameter has a gradient each step).
            let wd = if *group == 0 { c.weight_decay } else { 0.0 };
            reference(p, m, v, &gv, step as i32, lr, wd, c);
        }
        if step == 3 {
            // A change from outside, as open_clip's clamp makes: the next update
            // (the same layout as this one's, so a group of many keeps its
            // values) starts from it.
            let v = Tensor::from_floats([1.5], &Default::default());
            model.logit_scale = Param::initialized(model.logit_scale.id, v.require_grad());
            expected.get_mut("logit_scale").unwrap().0 = vec![1.5];
        }
    }
    let got = params(&model);
    for (k, (want, _)) in &expected {
        let (have, _) = &got[k];
        for (a, b) in have.iter().zip(want) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "foreach {foreach}, packed {packed}, {k}: {a} vs {b}"
            );
        }
    }
    assert_eq!(steps[skip], 3);
}

/// Where every parameter's values lie in memory.
fn buffers(model: &Clip<CpuAutodiff>) -> BTreeMap<String, usize> {
    struct Read(BTreeMap<String, usize>);
    impl ParamVisitor<CpuAutodiff> for Read {
        fn visit<const D: usize>(
            &mut self,
            key: &str,
            _: Layout,
            param: &mut Param<Tensor<CpuAutodiff, D>>,
        ) -> Result<()> {
            let t = param.val().inner().into_primitive().tensor();
            self.0.insert(key.into(), t.bytes().as_ptr() as usize);
            Ok(())
        }
    }
    let mut r = Read(BTreeMap::new());
    visit_params(&mut model.clone(), &mut r).unwrap();
    r.0
}

/// On the CPU backend the per-parameter update writes each parameter where it lies
/// (no new buffer filled per parameter per step: 0.6 GB for ViT-B/32), while a copy
/// of the model taken before the step keeps the old values.
#[test]
fn the_cpu_update_writes_parameters_in_place() {
    let mut model = tiny(TINY);
    let mut opt = AdamW::<Cpu> {
        foreach: false,
        ..AdamW::new(AdamWConfig {
            weight_decay: 0.2,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
        })
    };
    let g = grads(&model, 1, "");
    let before = buffers(&model);
    opt.update(&mut model, &g, 1e-2, 0.9).unwrap();
    assert_eq!(buffers(&model), before, "every parameter updated in place");
    // A copy held elsewhere is not written through.
    let copy = model.clone();
    let held = params(&copy);
    opt.update(&mut model, &g, 1e-2, 0.9).unwrap();
    assert_eq!(params(&copy), held, "the copy keeps its values");
    assert_ne!(params(&model), held, "the model moved");
}
