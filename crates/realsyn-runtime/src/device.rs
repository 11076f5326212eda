//! `--device cpu|cuda[:N]|wgpu` (or a comma-separated list for data-parallel training):
//! runs a backend-generic job on the chosen backend.

use anyhow::{Result, bail};
use burn::tensor::backend::Backend;

/// A job that can run on any Burn backend, on one device.
pub trait BackendJob {
    type Output;
    fn run<B: Backend>(self, device: B::Device) -> Result<Self::Output>;
}

/// A job that runs on several devices of one backend (`cuda:0,cuda:1`).
pub trait MultiDeviceJob {
    type Output;
    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Result<Self::Output>;
}

struct One<J>(J);

impl<J: BackendJob> MultiDeviceJob for One<J> {
    type Output = J::Output;
    fn run<B: Backend>(self, mut devices: Vec<B::Device>) -> Result<J::Output> {
        self.0.run::<B>(devices.remove(0))
    }
}

/// Whether `--device` names an accelerator (anything but the CPU backends).
pub fn is_accelerator(device: &str) -> bool {
    let kind = device.split([':', ',']).next().unwrap_or("").trim();
    !matches!(kind, "" | "cpu" | "flex" | "ndarray")
}

pub fn dispatch<J: BackendJob>(device: &str, job: J) -> Result<J::Output> {
    if device.contains(',') {
        bail!("this command runs on one device; got {device:?}");
    }
    dispatch_devices(device, One(job))
}

/// `spec`: one device or a comma-separated list, all of one backend.
pub fn dispatch_devices<J: MultiDeviceJob>(spec: &str, job: J) -> Result<J::Output> {
    let names: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let kind = |d: &str| d.split(':').next().unwrap_or("").to_string();
    let Some(first) = names.first() else {
        bail!("no device given");
    };
    if names.iter().any(|d| kind(d) != kind(first)) {
        bail!("devices {spec:?} mix backends: use one kind (e.g. cuda:0,cuda:1)");
    }
    match kind(first).as_str() {
        "cpu" | "flex" => {
            job.run::<realsyn_model::backend::Cpu>(vec![Default::default(); names.len()])
        }
        #[cfg(feature = "ndarray")]
        "ndarray" => job.run::<burn::backend::NdArray>(vec![Default::default(); names.len()]),
        #[cfg(feature = "wgpu")]
        "wgpu" => {
            let devices = names
                .iter()
                .map(|d| {
                    use burn::backend::wgpu::WgpuDevice;
                    // `wgpu` is the default adapter (lavapipe where it is the only one).
                    Ok(match d.strip_prefix("wgpu:") {
                        Some(i) => WgpuDevice::DiscreteGpu(i.parse()?),
                        None => WgpuDevice::DefaultDevice,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            job.run::<realsyn_model::backend::Wgpu>(devices)
        }
        #[cfg(feature = "cuda")]
        "cuda" => {
            let devices = names
                .iter()
                .map(|d| {
                    let index = d
                        .strip_prefix("cuda:")
                        .map(str::parse)
                        .transpose()?
                        .unwrap_or(0);
                    Ok(burn::backend::cuda::CudaDevice::new(index))
                })
                .collect::<Result<Vec<_>>>()?;
            job.run::<realsyn_model::backend::Cuda>(devices)
        }
        other => bail!(
            "unknown device {other:?}: this build supports cpu{}{}{}",
            if cfg!(feature = "ndarray") {
                ", ndarray"
            } else {
                ""
            },
            if cfg!(feature = "wgpu") { ", wgpu" } else { "" },
            if cfg!(feature = "cuda") {
                ", cuda[:N]"
            } else {
                " (rebuild with --features cuda for GPUs)"
            }
        ),
    }
}
