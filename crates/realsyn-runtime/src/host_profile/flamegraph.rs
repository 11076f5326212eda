//! The profile as a flame graph (SVG): one box per function on a call path, as wide
//! as its share of the samples, callers below callees, one colour per crate or
//! library; hovering a box shows its name, seconds and share.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::report::shorten;
use super::{HostProfile, Stack};
use realsyn_data::plot::xml_escape as escape;

const WIDTH: f64 = 1200.0;
const MARGIN: f64 = 10.0;
const ROW: f64 = 16.0;
const HEADER: f64 = 40.0;
/// Boxes narrower than this are left out, with everything above them.
const MIN_BOX_PX: f64 = 0.3;
/// Average glyph width at the 11 px font, for cutting labels to their box.
const GLYPH_PX: f64 = 6.6;

#[derive(Default)]
struct Node {
    seconds: f64,
    group: String,
    children: BTreeMap<String, Node>,
}

impl HostProfile {
    /// The flame graph of the CPU-time samples as an SVG document.
    pub fn flamegraph_svg(&self) -> String {
        let title = format!(
            "Host CPU time: {:.2} s over {:.2} s wall; {:.2} s of it in sampled threads, shown",
            self.cpu_s,
            self.wall_s,
            self.sampled_cpu_s()
        );
        let note = "callers below callees; a box's width is its CPU time; colour: crate or library";
        self.flamegraph(&self.stacks, &title, note)
    }

    /// The flame graph of the profiled caller's wall-clock samples.
    pub fn wall_flamegraph_svg(&self) -> String {
        let title = format!(
            "The profiled caller's wall time: {:.2} s, waiting included",
            self.wall_s
        );
        let note = "callers below callees; a box's width is the wall time the thread spent \
                    there; colour: crate or library";
        self.flamegraph(&self.caller_wall, &title, note)
    }

    fn flamegraph(&self, stacks: &[Stack], title: &str, note: &str) -> String {
        let mut root = Node {
            group: "all".into(),
            ..Node::default()
        };
        for s in stacks {
            let seconds = s.seconds;
            root.seconds += seconds;
            let mut node = root
                .children
                .entry(s.thread.clone())
                .or_insert_with(|| Node {
                    group: "thread".into(),
                    ..Node::default()
                });
            node.seconds += seconds;
            for &f in &s.frames {
                let frame = &self.frames[f as usize];
                node = node.children.entry(frame.function.clone()).or_default();
                node.group = frame.group().to_string();
                node.seconds += seconds;
            }
        }
        let depth = stacks.iter().map(|s| s.frames.len()).max().unwrap_or(0) + 2;
        let height = HEADER + depth as f64 * ROW + MARGIN;
        let mut svg = String::new();
        let _ = write!(
            svg,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
             viewBox=\"0 0 {WIDTH} {height}\" font-family=\"Verdana, sans-serif\" font-size=\"11\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"#fdfdf6\"/>\n\
             <text x=\"{MARGIN}\" y=\"18\" font-size=\"14\">{}</text>\n\
             <text x=\"{MARGIN}\" y=\"33\" fill=\"#555\">{}</text>\n",
            escape(title),
            escape(note),
        );
        let total = root.seconds.max(1e-9);
        let mut draw = Draw {
            svg: &mut svg,
            scale: (WIDTH - 2.0 * MARGIN) / total,
            total,
            bottom: height - MARGIN,
        };
        draw.node("all", &root, MARGIN, 0);
        svg.push_str("</svg>\n");
        svg
    }
}

struct Draw<'a> {
    svg: &'a mut String,
    scale: f64,
    total: f64,
    bottom: f64,
}

impl Draw<'_> {
    fn node(&mut self, name: &str, node: &Node, x: f64, depth: usize) {
        let w = node.seconds * self.scale;
        if w < MIN_BOX_PX {
            return;
        }
        let y = self.bottom - (depth + 1) as f64 * ROW;
        let title = format!(
            "{name} ({}): {:.3} s, {:.1}%",
            node.group,
            node.seconds,
            100.0 * node.seconds / self.total
        );
        let _ = write!(
            self.svg,
            "<g><title>{}</title><rect x=\"{x:.2}\" y=\"{y:.1}\" width=\"{w:.2}\" height=\"{:.1}\" \
             fill=\"{}\" rx=\"2\"/>",
            escape(&title),
            ROW - 1.0,
            colour(&node.group)
        );
        if let Some(label) = label(name, ((w - 6.0) / GLYPH_PX).floor() as usize) {
            let _ = write!(
                self.svg,
                "<text x=\"{:.2}\" y=\"{:.1}\">{}</text>",
                x + 3.0,
                y + ROW - 4.5,
                escape(&label)
            );
        }
        self.svg.push_str("</g>\n");
        let mut cx = x;
        for (child_name, child) in &node.children {
            self.node(child_name, child, cx, depth + 1);
            cx += child.seconds * self.scale;
        }
    }
}

/// A box's label in `fits` characters: the whole name, else its last two path
/// segments without generic arguments (`fill_rows::v4` for
/// `burn_flex::par::fill_rows::v4`, `float_add` for `<Autodiff<B> as Ops>::float_add`),
/// cut if need be; none in a box too narrow to say anything.
fn label(name: &str, fits: usize) -> Option<String> {
    if name.chars().count() <= fits {
        return Some(name.to_string());
    }
    if fits < 6 {
        return None;
    }
    let mut plain = String::new();
    let mut depth = 0usize;
    for c in name.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let segments: Vec<&str> = plain.split("::").filter(|s| !s.is_empty()).collect();
    let short = segments[segments.len().saturating_sub(2)..].join("::");
    Some(shorten(&short, fits))
}

/// A warm colour per group, the same in every graph (an FNV hash of the name).
fn colour(group: &str) -> String {
    let h = group.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    let hue = (h % 60) as f64; // red .. yellow
    let light = 62 + (h >> 8) % 16;
    format!("hsl({hue:.0},85%,{light}%)")
}

#[cfg(test)]
mod tests {

    #[test]
    fn boxes_are_as_wide_as_their_cpu_time_and_names_are_escaped() {
        let mut p = super::super::report::tests::profile();
        p.frames[1].function = "<b::T as c::Op>::inner".into();
        let svg = p.flamegraph_svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // 0.65 s sampled over 1180 px: all; main (0.45 s) 816.92 px; worker- (0.20
        // s: 5 samples at 0.04 s each) 363.08 px.
        assert!(svg.contains("width=\"1180.00\""), "{svg}");
        assert!(svg.contains("width=\"816.92\""), "{svg}");
        assert!(svg.contains("width=\"363.08\""), "{svg}");
        assert!(
            svg.contains("&lt;b::T as c::Op&gt;::inner (burn_autodiff): 0.450 s, 69.2%"),
            "{svg}"
        );
        assert!(!svg.contains("<b::"));
    }

    #[test]
    fn labels_fall_back_to_the_last_path_segments() {
        use super::label;
        assert_eq!(label("a::b", 10).as_deref(), Some("a::b"));
        assert_eq!(
            label("burn_flex::par::fill_rows::v4", 16).as_deref(),
            Some("fill_rows::v4")
        );
        assert_eq!(
            label(
                "<burn_autodiff::Autodiff<B> as burn_backend::Ops>::float_add",
                12
            )
            .as_deref(),
            Some("float_add")
        );
        assert_eq!(label("burn_flex::par::fill_rows::v4", 5), None);
    }
}
