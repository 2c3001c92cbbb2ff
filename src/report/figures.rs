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
    /// Corner of the legend, where the data leaves room.
    pub legend: Corner,
}

/// A corner of the plotting area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corner {
    /// Top left.
    UpperLeft,
    /// Top right.
    UpperRight,
    /// Bottom right.
    LowerRight,
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
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        for (i, s) in self.series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect();
            if !self.markers_only {
                chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?;
            }
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?
                .label(&s.label)
                .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(match self.legend {
                Corner::UpperLeft => SeriesLabelPosition::UpperLeft,
                Corner::UpperRight => SeriesLabelPosition::UpperRight,
                Corner::LowerRight => SeriesLabelPosition::LowerRight,
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
        })
        .collect();
    (!series.is_empty()).then(|| LineChart {
        title: format!("mean HP@k, protocol {protocol}"),
        x_label: "k".into(),
        y_label: "hierarchical precision HP@k".into(),
        series,
        markers_only: false,
        legend: Corner::UpperRight,
    })
}

/// Quality against time across methods for one protocol: `points` holds
/// `(method, median seconds per query, quality)`; time is drawn as log10 milliseconds.
pub fn pareto_chart(points: &[(String, f64, f64)], protocol: &str, quality: &str) -> LineChart {
    LineChart {
        title: format!("{quality} vs query time, protocol {protocol}"),
        x_label: "log10 of the median ms per query".into(),
        y_label: quality.into(),
        series: points
            .iter()
            .map(|(method, s, q)| Series {
                label: method.clone(),
                points: vec![((s * 1e3).log10(), *q)],
            })
            .collect(),
        markers_only: true,
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
    fn png_and_svg_are_written_with_text() {
        // hand-made points for a unit test of the renderer
        let chart = LineChart {
            title: "mP@k vs topIWK".into(),
            x_label: "topIWK".into(),
            y_label: "mP@k".into(),
            series: vec![Series {
                label: "k = 5".into(),
                points: vec![(1.0, 0.2), (2.0, 0.25), (3.0, f64::NAN)],
            }],
            markers_only: false,
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
