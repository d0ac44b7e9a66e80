//! SVG plot of latency over time, one point per second, log scale, with fault windows shaded.
//!
//! The series come from the load generator's output: p50 and p99 of Add and of Query from its
//! per-second time series, and the maximum of each operation per second from the
//! `Interval_Max` column of its interval log (`latency.hlog`). All are latencies from the
//! intended send time in an open loop. Seconds in which nothing completed have no point, so an
//! outage shows as a gap inside a shaded window.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

use plotters::prelude::*;
use ringraft_loadgen::SecondRow;

/// One line of the plot: a legend name, a color and (second, milliseconds) points.
pub struct Series {
    pub name: String,
    pub color: RGBColor,
    pub points: Vec<(u64, f64)>,
}

/// Builds the plotted series from the time series rows and the interval log's text.
///
/// Without a readable interval log, one combined max line from the time series replaces the
/// per-operation max lines.
pub fn latency_series(rows: &[SecondRow], hlog: Option<&[u8]>) -> Vec<Series> {
    let from_rows = |name: &str, color: RGBColor, get: fn(&SecondRow) -> Option<f64>| Series {
        name: name.to_string(),
        color,
        points: rows
            .iter()
            .filter_map(|row| get(row).map(|value| (row.second, value)))
            .collect(),
    };
    let mut series = vec![
        from_rows("Add p50", RGBColor(31, 119, 180), |r| r.add_p50_ms),
        from_rows("Add p99", RGBColor(255, 127, 14), |r| r.add_p99_ms),
        from_rows("Query p50", RGBColor(44, 160, 44), |r| r.query_p50_ms),
        from_rows("Query p99", RGBColor(148, 103, 189), |r| r.query_p99_ms),
    ];

    let maxima = hlog.map(interval_maxima).unwrap_or_default();
    if maxima.is_empty() {
        series.push(from_rows("max (both)", RGBColor(214, 39, 40), |r| r.max_ms));
    } else {
        for (tag, name, color) in [
            ("add", "Add max", RGBColor(214, 39, 40)),
            ("query", "Query max", RGBColor(140, 86, 75)),
        ] {
            let points = maxima
                .iter()
                .filter(|((t, _), _)| t == tag)
                .map(|((_, second), max)| (*second, *max))
                .collect();
            series.push(Series {
                name: name.to_string(),
                color,
                points,
            });
        }
    }
    series
}

/// Reads the per-second maximum of each tag from an interval log, in the log's unit after its
/// max value divisor (milliseconds for the load generator's log). Empty intervals are left out.
fn interval_maxima(text: &[u8]) -> BTreeMap<(String, u64), f64> {
    let mut maxima = BTreeMap::new();
    for entry in IntervalLogIterator::new(text) {
        let Ok(LogEntry::Interval(interval)) = entry else {
            continue;
        };
        let Some(tag) = interval.tag() else { continue };
        if interval.max() > 0.0 {
            let second = interval.start_timestamp().as_secs();
            maxima.insert((tag.as_str().to_string(), second), interval.max());
        }
    }
    maxima
}

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
    series: &[Series],
    windows: &[Window],
    title: &str,
) -> Result<(), String> {
    let values: Vec<f64> = series
        .iter()
        .flat_map(|line| line.points.iter().map(|&(_, value)| value))
        .filter(|v| *v > 0.0)
        .collect();
    // The y axis reaches down to 0.1 ms at least and never below 1 µs (log scale).
    let y_min = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .clamp(0.001, 0.1);
    let y_max = values.iter().copied().fold(0.0, f64::max).max(10.0) * 2.0;
    let x_max = series
        .iter()
        .flat_map(|line| line.points.iter().map(|&(second, _)| second as f64 + 1.0))
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

    for line in series {
        // One line segment per run of consecutive seconds with a value.
        let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        let mut previous: Option<u64> = None;
        for &(second, value) in line.points.iter().filter(|(_, value)| *value > 0.0) {
            if previous.is_some_and(|p| p + 1 != second) {
                segments.push(Vec::new());
            }
            if let Some(segment) = segments.last_mut() {
                segment.push((second as f64 + 0.5, value));
            }
            previous = Some(second);
        }
        let color = line.color;
        let mut first = true;
        for segment in segments.into_iter().filter(|s| !s.is_empty()) {
            let drawn = chart
                .draw_series(LineSeries::new(segment, color.stroke_width(2)))
                .map_err(draw_error)?;
            if first {
                drawn.label(line.name.clone()).legend(move |(x, y)| {
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

#[cfg(test)]
mod tests {
    use super::*;

    const HLOG: &str = "#[StartTime: 1764878400.000 (seconds since epoch)]\n\
\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n\
Tag=add,0.000,1.000,2.500,HISTFAAAABx4nJNpmSzMwMDAxAABzFCaEUKLMdgBAB9BAkE=\n\
Tag=query,0.000,1.000,0.000,HISTFAAAABx4nJNpmSzMwMDAxAABzFCaEUKLMdgBAB9BAkE=\n\
Tag=add,1.000,1.000,3.750,HISTFAAAABx4nJNpmSzMwMDAxAABzFCaEUKLMdgBAB9BAkE=\n";

    #[test]
    fn maxima_read_per_tag_and_second() {
        let maxima = interval_maxima(HLOG.as_bytes());
        assert_eq!(maxima.get(&("add".to_string(), 0)), Some(&2.5));
        assert_eq!(maxima.get(&("add".to_string(), 1)), Some(&3.75));
        assert_eq!(
            maxima.get(&("query".to_string(), 0)),
            None,
            "empty intervals are left out"
        );
    }

    #[test]
    fn plot_written_with_fault_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latency.svg");
        let series = vec![Series {
            name: "Add p50".into(),
            color: RGBColor(0, 0, 255),
            points: vec![(0, 1.0), (1, 1.2), (4, 0.9)],
        }];
        let windows = vec![Window {
            start_s: 2.0,
            end_s: 3.5,
            label: "pause:leader@2s+1.5s".into(),
        }];
        write_latency_svg(&path, &series, &windows, "test").unwrap();

        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("pause:leader@2s+1.5s"));
        assert!(svg.contains("Add p50"));
    }
}
