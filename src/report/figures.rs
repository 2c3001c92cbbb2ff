//! Figures with plotters, as PNG and SVG. Text uses DejaVu Sans embedded in the binary (the
//! `dejavu` crate), so figures render the same on a machine without system fonts.

use crate::config::FigureFormat;
use crate::store::{self, StoreError};
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

const FONT: &str = "dejavu";
const SIZE: (u32, u32) = (900, 600);

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font shipped by the dejavu crate.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points `(x, y)`; non-finite points are dropped.
    pub points: Vec<(f64, f64)>,
    /// Published values to compare with, not ours: hollow squares without a line, in the
    /// colour of the series at `index` (the one they correspond to).
    pub published: Option<usize>,
}

/// A line chart with markers.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// Caption.
    pub title: String,
    /// x-axis description.
    pub x_label: String,
    /// y-axis description.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Draw markers only (a scatter plot, e.g. one point per method).
    pub markers_only: bool,
    /// What the x values are.
    pub x_axis: XAxis,
    /// What the y values are.
    pub y_axis: XAxis,
    /// Corner of the legend, where the data leaves room.
    pub legend: Corner,
}

/// How an axis's values are read and labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XAxis {
    /// Plain numbers; when every x is a whole number, only whole-number ticks are labelled.
    #[default]
    Linear,
    /// The value is log10 of milliseconds: a log axis, labelled in milliseconds.
    Log10Ms,
    /// The value is log10 of a count: a log axis, labelled 10k, 1M, ... at powers of ten.
    Log10Count,
}

/// The tick label of `v` on an axis of kind `axis` whose data are all whole numbers when
/// `integral` (an empty label skips a tick that would not be one).
pub fn tick_label(v: f64, axis: XAxis, integral: bool) -> String {
    match axis {
        XAxis::Log10Ms => {
            let ms = 10f64.powf(v);
            if ms >= 10.0 {
                format!("{ms:.0} ms")
            } else {
                // Two significant digits.
                let digits = (1.0 - ms.log10().floor()).max(0.0) as usize;
                format!("{ms:.digits$} ms")
            }
        }
        XAxis::Log10Count => {
            if (v - v.round()).abs() > 0.02 {
                return String::new();
            }
            match 10f64.powf(v.round()) as u64 {
                c if c >= 1_000_000_000 => format!("{}G", c / 1_000_000_000),
                c if c >= 1_000_000 => format!("{}M", c / 1_000_000),
                c if c >= 1_000 => format!("{}k", c / 1_000),
                c => c.to_string(),
            }
        }
        XAxis::Linear if integral => {
            if (v - v.round()).abs() < 1e-9 {
                format!("{}", v.round() as i64)
            } else {
                String::new()
            }
        }
        XAxis::Linear => format!("{v}"),
    }
}

/// The colour of series `label` (the `i`-th): each retrieval method keeps one colour in every
/// figure, other series take the palette in order.
pub fn series_color(label: &str, i: usize) -> RGBAColor {
    /// The IWAN series, which take the slots after the index methods.
    const IWAN: [&str; 2] = ["iwan", "iwan_db_labels"];
    let methods = crate::index::Method::ALL;
    let slot = crate::index::Method::parse(label)
        .and_then(|m| methods.iter().position(|x| *x == m))
        .or_else(|| {
            IWAN.iter()
                .position(|w| *w == label)
                .map(|p| methods.len() + p)
        })
        .unwrap_or(methods.len() + IWAN.len() + i);
    Palette99::pick(slot).to_rgba()
}

/// Series with at most this many points get markers on their line.
const MARKED_POINTS: usize = 25;

/// A corner of the plotting area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corner {
    /// Top left.
    UpperLeft,
    /// Top right.
    UpperRight,
    /// Bottom right.
    LowerRight,
    /// Bottom left.
    LowerLeft,
}

/// The corner for a legend of `rows` entries that covers the fewest of `points` (in the data
/// ranges `x` and `y`), `preferred` on a tie: a legend never hides data that has room.
pub fn legend_corner(
    points: &[(f64, f64)],
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    rows: usize,
    preferred: Corner,
) -> Corner {
    // The legend's share of the plotting area: about 30% of the width, and 4.5% of the height
    // per row plus its frame.
    let (w, h) = (0.3, (0.045 * rows as f64 + 0.03).min(0.9));
    let covered = |corner: Corner| {
        let (left, bottom) = match corner {
            Corner::UpperLeft => (true, false),
            Corner::UpperRight => (false, false),
            Corner::LowerRight => (false, true),
            Corner::LowerLeft => (true, true),
        };
        points
            .iter()
            .filter(|(x, y)| {
                let fx = (x - x0) / (x1 - x0);
                let fy = (y - y0) / (y1 - y0);
                let in_x = if left { fx <= w } else { fx >= 1.0 - w };
                let in_y = if bottom { fy <= h } else { fy >= 1.0 - h };
                in_x && in_y
            })
            .count()
    };
    let mut best = (covered(preferred), preferred);
    for c in [
        Corner::UpperRight,
        Corner::UpperLeft,
        Corner::LowerRight,
        Corner::LowerLeft,
    ] {
        let n = covered(c);
        if n < best.0 {
            best = (n, c);
        }
    }
    best.1
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(hi.abs() * 0.01).max(1e-9);
    (lo - pad, hi + pad)
}

/// Something drawable on any plotters backend.
pub trait Figure {
    /// Draws the figure onto `root`.
    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>;

    /// Writes `<dir>/<stem>.png` and/or `.svg` atomically; returns the paths written.
    fn write(
        &self,
        dir: &Path,
        stem: &str,
        formats: &[FigureFormat],
    ) -> Result<Vec<PathBuf>, StoreError>
    where
        Self: Sized,
    {
        write_figure(self, dir, stem, formats)
    }
}

impl Figure for LineChart {
    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let points = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter())
                .filter(|p| p.0.is_finite() && p.1.is_finite())
        };
        let (x0, x1) = bounds(points().map(|p| p.0));
        let (y0, y1) = bounds(points().map(|p| p.1));
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, (FONT, 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        let integral = points().all(|p| p.0 == p.0.round());
        let (axis, y_axis) = (self.x_axis, self.y_axis);
        let x_fmt = move |v: &f64| tick_label(*v, axis, integral);
        let y_fmt = move |v: &f64| tick_label(*v, y_axis, false);
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&x_fmt)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16));
        // Linear y values keep plotters' own labels.
        if y_axis != XAxis::Linear {
            mesh.y_label_formatter(&y_fmt);
        }
        mesh.draw()?;
        for (i, s) in self.series.iter().enumerate() {
            let color = match s.published {
                Some(of) => series_color(&self.series[of].label, of),
                None => series_color(&s.label, i),
            };
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect();
            if s.published.is_some() {
                let square = move |(x, y): (i32, i32)| {
                    Rectangle::new([(x - 6, y - 6), (x + 6, y + 6)], color.stroke_width(2))
                };
                chart
                    .draw_series(pts.iter().map(|&p| {
                        EmptyElement::at(p)
                            + Rectangle::new([(-6, -6), (6, 6)], color.stroke_width(2))
                    }))?
                    .label(&s.label)
                    .legend(move |(x, y)| square((x + 10, y)));
                continue;
            }
            if self.markers_only {
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 5, color.filled())))?
                    .label(&s.label)
                    .legend(move |(x, y)| Circle::new((x + 10, y), 5, color.filled()));
                continue;
            }
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(&s.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            // Markers only where they mark measured points, not on dense curves.
            if pts.len() <= MARKED_POINTS {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
        }
        let all: Vec<(f64, f64)> = points().copied().collect();
        let corner = legend_corner(&all, (x0, x1), (y0, y1), self.series.len(), self.legend);
        chart
            .configure_series_labels()
            .position(match corner {
                Corner::UpperLeft => SeriesLabelPosition::UpperLeft,
                Corner::UpperRight => SeriesLabelPosition::UpperRight,
                Corner::LowerRight => SeriesLabelPosition::LowerRight,
                Corner::LowerLeft => SeriesLabelPosition::LowerLeft,
            })
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 14))
            .draw()?;
        root.present()?;
        Ok(())
    }
}

fn write_figure<F: Figure>(
    figure: &F,
    dir: &Path,
    stem: &str,
    formats: &[FigureFormat],
) -> Result<Vec<PathBuf>, StoreError> {
    register_font();
    let fail = |path: &Path, e: String| StoreError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    };
    let mut written = Vec::new();
    for format in formats {
        match format {
            FigureFormat::Svg => {
                let path = dir.join(format!("{stem}.svg"));
                let mut svg = String::new();
                figure
                    .draw(SVGBackend::with_string(&mut svg, SIZE).into_drawing_area())
                    .map_err(|e| fail(&path, e.to_string()))?;
                store::write_bytes_atomic(&path, svg.as_bytes())?;
                written.push(path);
            }
            FigureFormat::Png => {
                let path = dir.join(format!("{stem}.png"));
                let mut rgb = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
                figure
                    .draw(BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area())
                    .map_err(|e| fail(&path, e.to_string()))?;
                let png = encode_png(&rgb, SIZE).map_err(|e| fail(&path, e.to_string()))?;
                store::write_bytes_atomic(&path, &png)?;
                written.push(path);
            }
        }
    }
    Ok(written)
}

/// A square matrix as a heat map (e.g. the class similarity `S`), values in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct HeatMap {
    /// Caption.
    pub title: String,
    /// Row-major `n x n` values.
    pub values: Vec<f64>,
    /// Side `n`.
    pub n: usize,
}

impl Figure for HeatMap {
    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let n = self.n as i32;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, (FONT, 22))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(48)
            .build_cartesian_2d(0..n, n..0)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("class v")
            .y_desc("class u")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        chart.draw_series((0..self.n).flat_map(|u| {
            (0..self.n).map(move |v| {
                let x = self.values[u * self.n + v].clamp(0.0, 1.0);
                // White (0) to dark blue (1).
                let shade = |lo: f64, hi: f64| (lo + (hi - lo) * x).round() as u8;
                let color = RGBColor(shade(255.0, 8.0), shade(255.0, 48.0), shade(255.0, 107.0));
                Rectangle::new(
                    [(v as i32, u as i32), (v as i32 + 1, u as i32 + 1)],
                    color.filled(),
                )
            })
        }))?;
        root.present()?;
        Ok(())
    }
}

/// HP@k against k, one line per method, for one protocol; `curves` holds
/// `(method, protocol, HP@1..HP@K)`.
pub fn hp_chart(curves: &[(String, String, Vec<f64>)], protocol: &str) -> Option<LineChart> {
    let series: Vec<Series> = curves
        .iter()
        .filter(|c| c.1 == protocol)
        .map(|(method, _, hp)| Series {
            label: method.clone(),
            points: hp
                .iter()
                .enumerate()
                .map(|(i, &v)| ((i + 1) as f64, v))
                .collect(),
            published: None,
        })
        .collect();
    (!series.is_empty()).then(|| LineChart {
        title: format!("mean HP@k, protocol {protocol}"),
        x_label: "k".into(),
        y_label: "hierarchical precision HP@k".into(),
        series,
        markers_only: false,
        x_axis: XAxis::Linear,
        y_axis: XAxis::Linear,
        legend: Corner::UpperRight,
    })
}

/// Quality against time across methods for one protocol: `points` holds
/// `(method, median seconds per query, quality)`; time is drawn as log10 milliseconds.
pub fn pareto_chart(points: &[(String, f64, f64)], protocol: &str, quality: &str) -> LineChart {
    LineChart {
        title: format!("{quality} vs query time, protocol {protocol}"),
        x_label: "median time per query (log scale)".into(),
        y_label: quality.into(),
        series: points
            .iter()
            .map(|(method, s, q)| Series {
                label: method.clone(),
                points: vec![((s * 1e3).log10(), *q)],
                published: None,
            })
            .collect(),
        markers_only: true,
        x_axis: XAxis::Log10Ms,
        y_axis: XAxis::Linear,
        legend: Corner::UpperLeft,
    }
}

/// An RGB buffer as PNG bytes.
pub fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Best);
    enc.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    let mut writer = enc.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_axes_label_only_whole_numbers_and_log_axes_label_milliseconds() {
        assert_eq!(tick_label(3.0, XAxis::Linear, true), "3");
        assert_eq!(tick_label(2.5, XAxis::Linear, true), "");
        assert_eq!(tick_label(2.5, XAxis::Linear, false), "2.5");
        assert_eq!(tick_label(0.0, XAxis::Log10Ms, false), "1.0 ms");
        assert_eq!(tick_label(-1.0, XAxis::Log10Ms, false), "0.10 ms");
        assert_eq!(tick_label(2.0, XAxis::Log10Ms, false), "100 ms");
        assert_eq!(tick_label(0.5, XAxis::Log10Ms, false), "3.2 ms");
    }

    #[test]
    fn the_legend_goes_where_no_data_is() {
        // hand-made points for a pure-function unit test: data fill the upper right; the first
        // free corner in the order upper right, upper left, lower right, lower left is taken.
        let pts: Vec<(f64, f64)> = (0..50).map(|i| (0.5 + i as f64 / 100.0, 0.9)).collect();
        let c = legend_corner(&pts, (0.0, 1.0), (0.0, 1.0), 3, Corner::UpperRight);
        assert_eq!(c, Corner::UpperLeft);
        // With room in the preferred corner, it stays there.
        let c = legend_corner(&pts, (0.0, 1.0), (0.0, 1.0), 3, Corner::LowerLeft);
        assert_eq!(c, Corner::LowerLeft);
    }

    #[test]
    fn a_method_keeps_its_colour_in_every_figure() {
        // Whatever its position among a figure's series.
        assert_eq!(series_color("iwan", 0), series_color("iwan", 4));
        assert_ne!(series_color("exact", 0), series_color("hamming_rerank", 0));
        // Other series take the palette after the methods' colours, so a peer's line (FAISS)
        // never wears a method's colour.
        assert_eq!(series_color("k = 5", 2), Palette99::pick(9 + 2).to_rgba());
        assert_ne!(
            series_color("FAISS IndexFlatIP", 7),
            series_color("exact_bounded", 0)
        );
    }

    #[test]
    fn png_and_svg_are_written_with_text() {
        // hand-made points for a unit test of the renderer
        let chart = LineChart {
            title: "mP@k vs topIWK".into(),
            x_label: "topIWK".into(),
            y_label: "mP@k".into(),
            series: vec![Series {
                label: "k = 5".into(),
                points: vec![(1.0, 0.2), (2.0, 0.25), (3.0, f64::NAN)],
                published: None,
            }],
            markers_only: false,
            x_axis: XAxis::Linear,
            y_axis: XAxis::Linear,
            legend: Corner::LowerRight,
        };
        let dir = tempfile::tempdir().unwrap();
        let paths = chart
            .write(dir.path(), "fig", &[FigureFormat::Png, FigureFormat::Svg])
            .unwrap();
        let png = std::fs::read(&paths[0]).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let svg = std::fs::read_to_string(&paths[1]).unwrap();
        assert!(svg.contains("mP@k vs topIWK") && svg.contains("k = 5"));
        // Text was rasterised: the PNG has dark pixels beyond the axes' lines.
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        reader.next_frame(&mut buf).unwrap();
        let dark = buf.chunks(3).filter(|p| p.iter().all(|&c| c < 100)).count();
        assert!(dark > 500, "{dark} dark pixels");
    }
}
