//! `--device cpu|cuda[:N]`: runs a backend-generic job on the chosen backend.

use anyhow::{Result, bail};
use burn::tensor::backend::Backend;

/// A job that can run on any Burn backend.
pub trait BackendJob {
    type Output;
    fn run<B: Backend>(self, device: B::Device) -> Result<Self::Output>;
}

pub fn dispatch<J: BackendJob>(device: &str, job: J) -> Result<J::Output> {
    match device {
        "cpu" | "flex" => job.run::<realsyn_model::backend::Cpu>(Default::default()),
        #[cfg(feature = "ndarray")]
        "ndarray" => job.run::<burn::backend::NdArray>(Default::default()),
        #[cfg(feature = "cuda")]
        d if d.starts_with("cuda") => {
            let index = d
                .strip_prefix("cuda:")
                .map(str::parse)
                .transpose()?
                .unwrap_or(0);
            job.run::<realsyn_model::backend::Cuda>(burn::backend::cuda::CudaDevice::new(index))
        }
        other => bail!(
            "unknown device {other:?}: this build supports cpu{}{}",
            if cfg!(feature = "ndarray") {
                ", ndarray"
            } else {
                ""
            },
            if cfg!(feature = "cuda") {
                ", cuda[:N]"
            } else {
                " (rebuild with --features cuda for GPUs)"
            }
        ),
    }
}
