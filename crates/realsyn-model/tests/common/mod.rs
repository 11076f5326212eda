//! Helpers shared by the parity tests.

use realsyn_model::common::state_dict::HostTensor;

/// `generated` of `tests/peer/generated_weights.py`: splitmix64 of fnv1a64(key) + index,
/// uniform in [-1, 1), with a centre and half-width per kind of tensor.
pub fn generated(key: &str, shape: &[usize]) -> HostTensor {
    let n: usize = shape.iter().product();
    let (center, half) = if key == "logit_scale" {
        ((1.0f64 / 0.07).ln(), 0.0)
    } else if shape.len() == 1 && key.ends_with(".weight") {
        (1.0, 0.1)
    } else if shape.len() <= 1 {
        (0.0, 0.02)
    } else {
        (
            0.0,
            (3.0 / shape[1..].iter().product::<usize>() as f64).sqrt(),
        )
    };
    let seed = realsyn_io::hash::fnv1a(key.as_bytes());
    let data = (0..n as u64)
        .map(|i| {
            let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let s = (z >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0;
            (center + s * half) as f32
        })
        .collect();
    HostTensor::new(shape.to_vec(), data)
}
