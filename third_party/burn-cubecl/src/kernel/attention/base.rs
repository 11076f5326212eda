use crate::{
    CubeBackend, CubeRuntime, kernel::attention::attention_autotune,
    ops::numeric::empty_device_dtype, tensor::CubeTensor,
};
use burn_backend::{
    DType, Shape,
    ops::{AttentionModuleOptions, attention::attention_fallback},
};
use cubek::attention::launch;
use cubek::attention::{
    definition::{
        AccumulatorPrecision, AttentionGlobalTypes, AttentionOptions, AttentionSetupError,
    },
    routines::blackbox_accelerated::BlackboxAcceleratedStrategy,
};
use std::sync::OnceLock;

#[derive(Debug, Clone)]
/// Strategy used to select which attention implementation to run.
pub enum AttentionStrategy {
    /// Flash Attention using accelerated inner matmuls.
    FlashBlackboxAccelerated(BlackboxAcceleratedStrategy),

    /// Flash Attention using unit inner matmuls.
    FlashUnit,

    /// Fallback implementation using multiple separate kernels.
    Fallback,

    /// Automatically benchmark and select the best strategy at runtime.
    /// realsyn: compiled without Burn's `autotune` feature too, for `REALSYN_ATTENTION`.
    Autotune,
}

impl Default for AttentionStrategy {
    fn default() -> Self {
        // if autotune is enabled, default to autotune
        #[cfg(feature = "autotune")]
        return AttentionStrategy::Autotune;

        // realsyn: otherwise what `REALSYN_ATTENTION` names, the fallback by default.
        #[cfg(not(feature = "autotune"))]
        AttentionStrategy::from_env()
    }
}

/// realsyn: the names `REALSYN_ATTENTION` takes besides `auto`/`fallback` and
/// `autotune`: cubek's flash kernels, with the arguments the autotuner (`tune.rs`)
/// tries them with.
pub const ATTENTION_KERNELS: &[&str] = &[
    "flash_unit",
    "flash_accelerated_2",
    "flash_accelerated_4",
    "flash_accelerated_8",
];

impl AttentionStrategy {
    /// realsyn: `REALSYN_ATTENTION` read once. Unset, empty, `auto` or `fallback` is
    /// Burn's decomposition (scores, softmax, weighted sum: each a kernel, the scores
    /// written out); `autotune` times the candidates once per new shape; a name from
    /// [`ATTENTION_KERNELS`] runs that flash kernel (one kernel, nothing of score size
    /// written), the decomposition where it cannot run. Without Burn's `autotune`
    /// feature the build otherwise has no choice but the decomposition.
    pub fn from_env() -> Self {
        static CHOICE: OnceLock<Result<AttentionStrategy, String>> = OnceLock::new();
        let choice = CHOICE.get_or_init(|| {
            let name = std::env::var("REALSYN_ATTENTION").unwrap_or_default();
            let accelerated = |num_planes| {
                AttentionStrategy::FlashBlackboxAccelerated(BlackboxAcceleratedStrategy {
                    num_planes,
                    seq_q: 1,
                    seq_kv: 1,
                })
            };
            match name.as_str() {
                "" | "auto" | "fallback" => Ok(AttentionStrategy::Fallback),
                "autotune" => Ok(AttentionStrategy::Autotune),
                "flash_unit" => Ok(AttentionStrategy::FlashUnit),
                "flash_accelerated_2" => Ok(accelerated(2)),
                "flash_accelerated_4" => Ok(accelerated(4)),
                "flash_accelerated_8" => Ok(accelerated(8)),
                _ => Err(name),
            }
        });
        match choice {
            Ok(strategy) => strategy.clone(),
            Err(name) => panic!(
                "REALSYN_ATTENTION={name}: not an attention kernel; use auto, fallback, autotune or one of {}",
                ATTENTION_KERNELS.join(", ")
            ),
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// Launch an attention kernel with given strategy
pub fn attention<R: CubeRuntime>(
    query: CubeTensor<R>,
    key: CubeTensor<R>,
    value: CubeTensor<R>,
    mask: Option<CubeTensor<R>>,
    attn_bias: Option<CubeTensor<R>>,
    options: AttentionModuleOptions,
    strategy: AttentionStrategy,
) -> Result<CubeTensor<R>, AttentionSetupError> {
    match strategy {
        AttentionStrategy::FlashBlackboxAccelerated(strategy) => flash_attention(
            query,
            key,
            value,
            mask,
            attn_bias,
            options,
            launch::Strategy::BlackboxAccelerated(
                cubek::attention::launch::BlueprintStrategy::Inferred(strategy),
            ),
        ),
        AttentionStrategy::FlashUnit => flash_attention(
            query,
            key,
            value,
            mask,
            attn_bias,
            options,
            launch::Strategy::Unit(cubek::attention::launch::BlueprintStrategy::Inferred(())),
        ),
        AttentionStrategy::Fallback => Ok(attention_fallback::<CubeBackend<R, f32, i32, u8>>(
            query, key, value, mask, attn_bias, options,
        )),
        AttentionStrategy::Autotune => Ok(attention_autotune(
            query, key, value, mask, attn_bias, options,
        )),
    }
}

#[allow(clippy::too_many_arguments)]
/// Launch a flash attention kernel
pub fn flash_attention<R: CubeRuntime>(
    query: CubeTensor<R>,
    key: CubeTensor<R>,
    value: CubeTensor<R>,
    mask: Option<CubeTensor<R>>,
    _attn_bias: Option<CubeTensor<R>>,
    options: AttentionModuleOptions,
    strategy: launch::Strategy,
) -> Result<CubeTensor<R>, AttentionSetupError> {
    let client = query.client.clone();
    let out = init_attention_output(&query, &value);

    let dtypes = AttentionGlobalTypes {
        query: query.dtype.into(),
        key: key.dtype.into(),
        value: value.dtype.into(),
        mask: mask.as_ref().map(|m| m.dtype).unwrap_or(DType::U8).into(),
        out: out.dtype.into(),
    };

    cubek::attention::launch::launch_ref::<R>(
        strategy,
        &client,
        query.binding(),
        key.binding(),
        value.binding(),
        mask.map(|mask| mask.binding()),
        out.clone().binding(),
        &dtypes,
        AttentionOptions {
            causal: options.is_causal,
            accumulator_precision: AccumulatorPrecision::Strict(cubecl::ir::StorageType::Scalar(
                cubecl::ir::ElemType::Float(cubecl::ir::FloatKind::F32),
            )),
        },
    )?;

    Ok(out)
}

pub(crate) fn init_attention_output<R: CubeRuntime>(
    query: &CubeTensor<R>,
    value: &CubeTensor<R>,
) -> CubeTensor<R> {
    let num_batches = query.meta.shape[0];
    let num_heads = query.meta.shape[1];
    let seq_q = query.meta.shape[2];
    let val_dim = value.meta.shape[3];
    let out_shape = Shape::new([num_batches, num_heads, seq_q, val_dim]);

    empty_device_dtype::<R>(
        query.client.clone(),
        query.device.clone(),
        out_shape,
        query.dtype,
    )
}
