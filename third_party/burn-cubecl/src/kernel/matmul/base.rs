use super::init_matmul_output;
use crate::{CubeRuntime, kernel::quantization::dequantize, tensor::CubeTensor};
use burn_backend::{DType, QTensorPrimitive};
use burn_std::QuantLevel;
use cubek::{
    matmul::{
        definition::{MatmulElems, MatmulGlobalElems, MatmulSetupError},
        launch::Strategy,
    },
    std::InputBinding,
};

use super::matmul_autotune;
use cubek::matmul::{
    components::tile::TileMatmulKind,
    routines::{
        BlueprintStrategy, double_buffering::DoubleBufferingArgs,
        ordered_double_buffering::OrderedSelectionArgs, simple::SimpleArgs,
    },
};
use std::sync::OnceLock;

/// The strategy to be used when launching a matmul kernel.
#[derive(Clone)]
pub enum MatmulStrategy {
    /// Using autotune to choose the best kernel based on runtime information.
    Autotune,
    /// Cube implementation of matmul.
    Cube,
    /// realsyn: one kernel family for every product (`REALSYN_MATMUL`), `Cube`'s
    /// choice where it cannot run (no tensor cores, no TMA, a layout it refuses).
    Named(Strategy),
}

impl Default for MatmulStrategy {
    fn default() -> Self {
        // if autotune is enabled, default to autotune
        #[cfg(feature = "autotune")]
        return MatmulStrategy::Autotune;

        #[cfg(not(feature = "autotune"))]
        MatmulStrategy::from_env()
    }
}

/// realsyn: the kernel families `REALSYN_MATMUL` can name, with the arguments the
/// autotuner (`tune/base.rs`) tries them with.
pub const MATMUL_FAMILIES: &[&str] = &[
    "simple_cyclic_cmma",
    "simple_cyclic_mma",
    "ordered_double_cmma",
    "ordered_double_mma",
    "double_cyclic_cmma",
    "double_cyclic_mma",
    "specialized_cyclic_cmma",
    "specialized_cyclic_mma",
    "simple_tma_mma",
    "specialized_tma_cmma",
    "specialized_tma_mma",
    "simple_unit",
    "double_unit",
];

fn named_family(name: &str) -> Option<Strategy> {
    let simple = |tile_matmul| {
        BlueprintStrategy::Inferred(SimpleArgs {
            multi_rows: false,
            tile_matmul,
        })
    };
    let ordered = |tile_matmul| {
        BlueprintStrategy::Inferred(OrderedSelectionArgs {
            partition_k: Some(2),
            row_count: Some(8),
            rows_per_plane: Some(2),
            tile_matmul,
        })
    };
    let double = |tile_matmul| {
        BlueprintStrategy::Inferred(DoubleBufferingArgs {
            specialized: false,
            tile_matmul,
        })
    };
    use TileMatmulKind::{Cmma, Mma};
    Some(match name {
        "simple_cyclic_cmma" => Strategy::SimpleCyclicCmma(simple(Cmma)),
        "simple_cyclic_mma" => Strategy::SimpleCyclicMma(simple(Mma)),
        "ordered_double_cmma" => Strategy::OrderedDoubleCmma(ordered(Cmma)),
        "ordered_double_mma" => Strategy::OrderedDoubleMma(ordered(Mma)),
        "double_cyclic_cmma" => Strategy::DoubleCyclicCmma(double(Cmma)),
        "double_cyclic_mma" => Strategy::DoubleCyclicMma(double(Mma)),
        "specialized_cyclic_cmma" => {
            Strategy::SpecializedCyclicCmma(BlueprintStrategy::Inferred(().into()))
        }
        "specialized_cyclic_mma" => {
            Strategy::SpecializedCyclicMma(BlueprintStrategy::Inferred(().into()))
        }
        "simple_tma_mma" => Strategy::SimpleTmaMma(BlueprintStrategy::Inferred(SimpleArgs {
            multi_rows: false,
            tile_matmul: Mma,
        })),
        "specialized_tma_cmma" => {
            Strategy::SpecializedTmaCmma(BlueprintStrategy::Inferred(().into()))
        }
        "specialized_tma_mma" => {
            Strategy::SpecializedTmaMma(BlueprintStrategy::Inferred(().into()))
        }
        "simple_unit" => Strategy::SimpleUnit(BlueprintStrategy::Inferred(Default::default())),
        "double_unit" => Strategy::DoubleUnit(BlueprintStrategy::Inferred(Default::default())),
        _ => return None,
    })
}

impl MatmulStrategy {
    /// realsyn: `REALSYN_MATMUL` read once: unset, empty or `auto` is `Cube`
    /// (tensor cores' simple cyclic kernel, else the unit kernel), `autotune` times
    /// the candidates once per new shape and keeps the fastest, and a name from
    /// [`MATMUL_FAMILIES`] runs that family. Without Burn's `autotune` feature the
    /// build otherwise has no choice but `Cube`'s, whatever the GPU.
    pub fn from_env() -> Self {
        static CHOICE: OnceLock<Result<MatmulStrategy, String>> = OnceLock::new();
        let choice = CHOICE.get_or_init(|| {
            let name = std::env::var("REALSYN_MATMUL").unwrap_or_default();
            match name.as_str() {
                "" | "auto" => Ok(MatmulStrategy::Cube),
                "autotune" => Ok(MatmulStrategy::Autotune),
                family => named_family(family).map(MatmulStrategy::Named).ok_or(name),
            }
        });
        match choice {
            Ok(strategy) => strategy.clone(),
            Err(name) => panic!(
                "REALSYN_MATMUL={name}: not a matmul kernel family; use auto, autotune or one of {}",
                MATMUL_FAMILIES.join(", ")
            ),
        }
    }
}

/// Launch a matmul kernel using the given strategy.
pub fn matmul<R: CubeRuntime>(
    lhs: CubeTensor<R>,
    rhs: CubeTensor<R>,
    out: Option<CubeTensor<R>>,
    strategy: MatmulStrategy,
    out_dtype: DType,
) -> Result<CubeTensor<R>, MatmulSetupError> {
    match strategy {
        MatmulStrategy::Cube => {
            let out = out.unwrap_or_else(|| init_matmul_output(&lhs, &rhs, out_dtype));
            launch_matmul(&Default::default(), lhs, rhs, out.clone())?;
            Ok(out)
        }
        MatmulStrategy::Named(family) => {
            let out = out.unwrap_or_else(|| init_matmul_output(&lhs, &rhs, out_dtype));
            // A setup error is raised before anything is launched.
            if let Err(err) = launch_matmul(&family, lhs.clone(), rhs.clone(), out.clone()) {
                // Formatted only when said: a fallback may recur at every product.
                let why = || {
                    format!(
                        "REALSYN_MATMUL: {family} cannot run a {:?} x {:?} product here ({err:?})",
                        lhs.meta.shape(),
                        rhs.meta.shape()
                    )
                };
                if crate::kernel::strict_kernels() {
                    panic!("{} and REALSYN_KERNELS_STRICT is set", why())
                }
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| eprintln!("{}; the default kernel runs it (said once)", why()));
                launch_matmul(&Default::default(), lhs, rhs, out.clone())?;
            }
            Ok(out)
        }
        MatmulStrategy::Autotune => Ok(matmul_autotune(lhs, rhs, out, out_dtype)),
    }
}

pub(crate) fn launch_matmul_naive<R: CubeRuntime>(
    strategy: &Strategy,
    mut lhs: CubeTensor<R>,
    mut rhs: CubeTensor<R>,
    out: CubeTensor<R>,
) -> Result<(), MatmulSetupError> {
    // Naive has very specific layout requirements for block scaled tensors, so we need to manually
    // dequantize if it fails to launch normally. This is because naive is assumed to always work.
    if lhs.qparams.is_some() || rhs.qparams.is_some() {
        match launch_matmul(strategy, lhs.clone(), rhs.clone(), out.clone()) {
            Err(_) => {
                if lhs.qparams.is_some() {
                    lhs = dequantize(lhs, out.dtype);
                }
                if rhs.qparams.is_some() {
                    rhs = dequantize(rhs, out.dtype);
                }
                launch_matmul(strategy, lhs, rhs, out)
            }
            Ok(_) => Ok(()),
        }
    } else {
        launch_matmul(strategy, lhs, rhs, out)
    }
}

pub(crate) fn launch_matmul<R: CubeRuntime>(
    strategy: &Strategy,
    lhs: CubeTensor<R>,
    mut rhs: CubeTensor<R>,
    out: CubeTensor<R>,
) -> Result<(), MatmulSetupError> {
    let client = &out.client;

    let lhs_quant_handles = lhs.quantized_handles();
    let out_dtype: DType = out.dtype;

    let (lhs_dtype, lhs_handle) = match lhs_quant_handles {
        None => {
            let lhs_dtype = lhs.dtype;
            (
                lhs_dtype,
                InputBinding::new(lhs.binding(), lhs_dtype.into()),
            )
        }
        Some((data, scale)) => {
            let scheme = *lhs.scheme();
            let data_dtype = data.dtype;
            let scale_dtype = scale.dtype;
            (
                out_dtype,
                InputBinding::quantized(
                    data.binding(),
                    scale.binding(),
                    lhs.meta.shape().clone(),
                    scheme,
                    data_dtype.into(),
                    scale_dtype.into(),
                ),
            )
        }
    };

    let rhs_quant_handles = rhs.quantized_handles();

    let (rhs_dtype, rhs_handle) = match rhs_quant_handles {
        None => (
            lhs_dtype,
            InputBinding::new(rhs.binding(), lhs_dtype.into()),
        ),
        Some((data, scale)) => {
            // Extremely hacky fix to ensure naive can run in every case
            if matches!(strategy, Strategy::Naive)
                && matches!(rhs.scheme().level, QuantLevel::Block(_))
            {
                rhs = dequantize(rhs.clone(), lhs_dtype);
                let rhs_dtype = rhs.dtype;
                (
                    lhs_dtype,
                    InputBinding::new(rhs.binding(), rhs_dtype.into()),
                )
            } else {
                let scheme = *rhs.scheme();
                let data_dtype = data.dtype;
                let scale_dtype = scale.dtype;
                (
                    out_dtype,
                    InputBinding::quantized(
                        data.binding(),
                        scale.binding(),
                        rhs.meta.shape().clone(),
                        scheme,
                        data_dtype.into(),
                        scale_dtype.into(),
                    ),
                )
            }
        }
    };

    let mut dtypes = MatmulElems::from_globals(&MatmulGlobalElems {
        lhs: lhs_dtype.into(),
        rhs: rhs_dtype.into(),
        out: out_dtype.into(),
    });

    cubek::matmul::launch::launch_ref(
        strategy,
        client,
        lhs_handle,
        rhs_handle,
        out.clone().binding(),
        &mut dtypes,
    )?;

    Ok(())
}
