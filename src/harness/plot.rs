//! SVG plot of latency over time, one point per second, log scale, with fault windows shaded.
//!
//! The series come from the load generator's per-second time series: p50 and p99 of Add and of
//! Query (latency from the intended send time in an open loop), and the maximum of the second.
//! Seconds in which nothing completed have no point, so an outage shows as a gap inside a
//! shaded window.
//!
//! NOTE: the time series has one maximum per second for both operations together, so the plot
//! draws a single max line instead of one per operation.

use std::path::Path;

use plotters::prelude::*;
use ringraft_loadgen::SecondRow;

/// A plotted series: legend name, color and the value it takes from a row.
type Series = (&'static str, RGBColor, fn(&SecondRow) -> Option<f64>);

/// A shaded interval, in seconds after the start of the load.
#[derive(Clone, Debug)]
pub struct Window {
    pub start_s: f64,
    pub end_s: f64,
    pub label: String,
}

/// Writes the plot to `path`.
pub fn write_latency_svg(
    path: &Path,
    rows: &[SecondRow],
    windows: &[Window],
    title: &str,
) -> Result<(), String> {
    let series: [Series; 5] = [
        ("Add p50", RGBColor(31, 119, 180), |r| r.add_p50_ms),
        ("Add p99", RGBColor(174, 199, 232), |r| r.add_p99_ms),
        ("Query p50", RGBColor(44, 160, 44), |r| r.query_p50_ms),
        ("Query p99", RGBColor(152, 223, 138), |r| r.query_p99_ms),
        ("max (both)", RGBColor(214, 39, 40), |r| r.max_ms),
    ];

    let values: Vec<f64> = rows
        .iter()
        .flat_map(|row| series.iter().filter_map(move |(_, _, get)| get(row)))
        .filter(|v| *v > 0.0)
        .collect();
    // The y axis reaches down to 0.1 ms at least and never below 1 µs (log scale).
    let y_min = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .clamp(0.001, 0.1);
    let y_max = values.iter().copied().fold(0.0, f64::max).max(10.0) * 2.0;
    let x_max = rows
        .iter()
        .map(|row| row.second as f64 + 1.0)
        .chain(windows.iter().map(|w| w.end_s))
        .fold(1.0, f64::max);

    let root = SVGBackend::new(path, (1200, 600)).into_drawing_area();
    let draw_error =
        |e: DrawingAreaErrorKind<std::io::Error>| format!("failed to draw {}: {e}", path.display());
    root.fill(&WHITE).map_err(draw_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the start of the load")
        .y_desc("latency (ms, log scale)")
        .draw()
        .map_err(draw_error)?;

    let shade = RGBColor(255, 165, 0).mix(0.2);
    for window in windows {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(window.start_s, y_min), (window.end_s.min(x_max), y_max)],
                shade.filled(),
            )))
            .map_err(draw_error)?;
        chart
            .draw_series(std::iter::once(Text::new(
                window.label.clone(),
                (window.start_s, y_max / 1.5),
                ("sans-serif", 12),
            )))
            .map_err(draw_error)?;
    }

    for (name, color, get) in series {
        // One line segment per run of consecutive seconds with a value.
        let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        let mut previous: Option<u64> = None;
        for row in rows {
            match get(row).filter(|v| *v > 0.0) {
                Some(value) => {
                    if previous.is_some_and(|p| p + 1 != row.second) {
                        segments.push(Vec::new());
                    }
                    segments
                        .last_mut()
                        .unwrap()
                        .push((row.second as f64 + 0.5, value));
                    previous = Some(row.second);
                }
                None => previous = None,
            }
        }
        let mut first = true;
        for segment in segments.into_iter().filter(|s| !s.is_empty()) {
            let drawn = chart
                .draw_series(LineSeries::new(segment, color.stroke_width(2)))
                .map_err(draw_error)?;
            if first {
                drawn.label(name).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
                first = false;
            }
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(draw_error)?;
    root.present().map_err(draw_error)?;
    Ok(())
}
