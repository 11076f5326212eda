//! The caps on hostile input are defaults a user can raise (`realsyn_io::limits`): with
//! `REALSYN_MAX_NESTING` raised, a page nested 2,000 deep is read instead of skipped;
//! with `REALSYN_MAX_IMAGE_PIXELS` lowered, a small image is refused as a bomb. Its own
//! test binary, so the variables are set before any cap is read.

use realsyn_builder::extract::ingest::{Format, Input};
use realsyn_builder::store::shard::ShardSpec;

#[test]
fn caps_follow_the_environment() {
    // SAFETY: set before any thread starts or any cap is read in this process.
    unsafe {
        std::env::set_var("REALSYN_MAX_NESTING", "4096");
        std::env::set_var("REALSYN_MAX_IMAGE_PIXELS", "100");
    }
    let tmp = tempfile::tempdir().unwrap();
    let page = tmp.path().join("deep.html");
    std::fs::write(
        &page,
        format!(
            "<html><body>{}<p>Two thousand levels down.</p></body></html>",
            "<div>".repeat(2000)
        ),
    )
    .unwrap();
    let (mut docs, mut skips) = (Vec::new(), Vec::new());
    Input::list(Format::Html, &[page])
        .unwrap()
        .documents(
            ShardSpec { index: 0, count: 1 },
            &mut |d| docs.push(d),
            &mut |reason, _| skips.push(reason.to_string()),
        )
        .unwrap();
    assert!(skips.is_empty(), "{skips:?}");
    assert_eq!(docs.len(), 1);

    let mut png = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image::RgbImage::new(20, 20))
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    assert_eq!(
        realsyn_data::image::decode_checked(png.get_ref()).err(),
        Some("over the pixel limit (decompression bomb)")
    );
}
