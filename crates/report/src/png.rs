//! SVG to PNG with resvg, text set in the embedded DejaVu Sans: no system font or library needed.

use crate::ReportError;
use resvg::{tiny_skia, usvg};
use std::sync::OnceLock;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn options() -> &'static usvg::Options<'static> {
    static OPT: OnceLock<usvg::Options<'static>> = OnceLock::new();
    OPT.get_or_init(|| {
        let mut opt = usvg::Options {
            font_family: "DejaVu Sans".into(),
            ..usvg::Options::default()
        };
        opt.fontdb_mut().load_font_data(FONT.to_vec());
        opt
    })
}

/// The PNG of `svg` at `scale` times its size.
pub fn render(svg: &str, scale: f32) -> Result<Vec<u8>, ReportError> {
    let tree =
        usvg::Tree::from_str(svg, options()).map_err(|e| ReportError::Render(e.to_string()))?;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(scale)
        .ok_or_else(|| ReportError::Render("empty figure".into()))?;
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| ReportError::Render("figure too large".into()))?;
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| ReportError::Render(e.to_string()))
}
