//! The job and machine pages' graphs of the last hour: CPU and RSS per
//! instance (or per machine), drawn as inline SVG from
//! [`crate::history`], with a marker at each restart. No script and no
//! CDN: the page's periodic refresh redraws them. Colors are presentation
//! attributes (`stroke`, `fill`), not `style`, which the pages'
//! Content-Security-Policy refuses.

use crate::cluster::Cluster;
use crate::history::MACHINE_SERIES;
use cerebro_types::health::trim;
use cerebro_types::history::{Series, HISTORY_WINDOW_MS};
use cerebro_types::time::now_ms;
use cerebro_web::html::escape;
use std::collections::HashMap;
use std::fmt::Write;

/// The graphs section of job `job`'s page (a heading and one SVG per
/// figure, one line per instance labelled `#N (ZONE)`), or nothing while
/// there is no sample yet (or no such job).
pub(super) fn job_graphs(cluster: &Cluster, job: &str) -> String {
    let Some(view) = cluster.job_history(job) else {
        return String::new();
    };
    let zones: HashMap<usize, String> = cluster
        .instances_of(job)
        .into_iter()
        .map(|i| (i.index, i.zone))
        .collect();
    let mut series: Vec<(usize, String, &Series)> = view
        .series
        .iter()
        .map(|(number, s)| {
            // Numerically, so #10 comes after #9.
            let index = number.parse().unwrap_or(usize::MAX);
            let label = match zones.get(&index) {
                Some(zone) => format!("#{number} ({zone})"),
                None => format!("#{number}"),
            };
            (index, label, s)
        })
        .collect();
    series.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let series: Vec<(String, &Series)> = series.into_iter().map(|(_, l, s)| (l, s)).collect();
    graphs(&series, view.window_ms, now_ms())
}

/// The graphs section of machine `id`'s page: the machine's sum first,
/// then each task it runs, labelled `JOB #N (ZONE)` (its task name when
/// the cluster no longer places it there); nothing while there is no
/// sample.
pub(super) fn machine_graphs(cluster: &Cluster, id: &str) -> String {
    let Some(view) = cluster.machine_history(id) else {
        return String::new();
    };
    let labels: HashMap<String, String> = cluster
        .machine(id)
        .map(|record| {
            cluster
                .machine_view(record)
                .instances
                .into_iter()
                .map(|i| (i.task_name, format!("{} #{} ({})", i.job, i.index, i.zone)))
                .collect()
        })
        .unwrap_or_default();
    let mut tasks: Vec<(String, &Series)> = view
        .series
        .iter()
        .filter(|(name, _)| name.as_str() != MACHINE_SERIES)
        .map(|(name, s)| (labels.get(name).unwrap_or(name).clone(), s))
        .collect();
    tasks.sort_by(|a, b| a.0.cmp(&b.0));
    let mut series: Vec<(String, &Series)> = Vec::with_capacity(tasks.len() + 1);
    if let Some(own) = view.series.get(MACHINE_SERIES) {
        series.push(("machine (sum)".to_string(), own));
    }
    series.extend(tasks);
    graphs(&series, view.window_ms, now_ms())
}

/// The drawing's coordinate system (the viewBox); the SVG scales to the
/// page's width.
const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 172.0;
/// The plotting area within it: room on the left for the value labels,
/// below for the time labels and the legend.
const LEFT: f64 = 60.0;
const RIGHT: f64 = 790.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 132.0;
/// Line colors, in the order of the series (the page's palette first).
const PALETTE: [&str; 10] = [
    "#2f6fde", "#1f9d55", "#c77c02", "#8e44ad", "#0097a7", "#e91e63", "#6d4c41", "#546e7a",
    "#7cb342", "#f4511e",
];
const MUTED: &str = "#667085";
const RESTART: &str = "#d64545";
/// Legend labels longer than this are cut (the line's tooltip has it whole).
const LEGEND_CHARS: usize = 24;

/// One figure drawn: which and how it reads.
struct Metric {
    /// `data-metric`.
    key: &'static str,
    title: &'static str,
    unit: &'static str,
    value: fn(&cerebro_types::history::Sample) -> f64,
    /// The top of the scale when every value is 0 (a flat line at the
    /// bottom rather than a division by zero).
    floor: f64,
}

const METRICS: [Metric; 2] = [
    Metric {
        key: "cpu",
        title: "CPU, cores",
        unit: "cores",
        value: |s| s.cpu_cores,
        floor: 0.1,
    },
    Metric {
        key: "rss",
        title: "Memory (RSS), MB",
        unit: "MB",
        value: |s| s.rss_mb,
        floor: 1.0,
    },
];

/// The section for `series` (legend label, samples), in that order, over
/// the `window_ms` before `now_ms`; empty when no series has a sample.
fn graphs(series: &[(String, &Series)], window_ms: u64, now_ms: u64) -> String {
    if series.iter().all(|(_, s)| s.samples.is_empty()) {
        return String::new();
    }
    let window_ms = if window_ms == 0 {
        HISTORY_WINDOW_MS
    } else {
        window_ms
    };
    let mut out = String::from(r#"<section class="graphs"><h2>Last hour</h2>"#);
    for metric in &METRICS {
        draw(&mut out, metric, series, window_ms, now_ms);
    }
    out.push_str("</section>");
    out
}

/// The smallest of 1, 2, 2.5 and 5 times a power of ten at or above
/// `value` (at least `floor`), so the top label reads as a round figure.
fn scale_top(value: f64, floor: f64) -> f64 {
    let value = if value.is_finite() {
        value.max(floor)
    } else {
        floor
    };
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|top| *top >= value * (1.0 - 1e-9))
        .unwrap_or(value)
}

/// A figure for a label: fewer decimals as it grows.
fn figure(value: f64) -> String {
    let decimals = if value >= 10.0 {
        0
    } else if value >= 1.0 {
        1
    } else {
        2
    };
    trim(value, decimals)
}

/// `how long` before now, for a tooltip.
fn ago(ms: u64) -> String {
    if ms < 60_000 {
        format!("{} s ago", ms / 1000)
    } else {
        format!("{} min ago", ms / 60_000)
    }
}

fn draw(
    out: &mut String,
    metric: &Metric,
    series: &[(String, &Series)],
    window_ms: u64,
    now_ms: u64,
) {
    let start = now_ms.saturating_sub(window_ms);
    let x_of = |at_ms: u64| {
        let fraction = at_ms.saturating_sub(start) as f64 / window_ms as f64;
        LEFT + fraction.clamp(0.0, 1.0) * (RIGHT - LEFT)
    };
    let highest = series
        .iter()
        .flat_map(|(_, s)| s.samples.iter().map(metric.value))
        .fold(0.0, f64::max);
    let top = scale_top(highest, metric.floor);
    let y_of = |value: f64| {
        let fraction = if value.is_finite() { value / top } else { 0.0 };
        BOTTOM - fraction.clamp(0.0, 1.0) * (BOTTOM - TOP)
    };
    let _ = write!(
        out,
        r#"<svg class="graph" data-metric="{key}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" font-family="sans-serif" font-size="11"><title>{title} over the last hour</title>"#,
        key = metric.key,
        title = escape(metric.title),
    );
    // The frame, the figure's name, its scale and the time axis.
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{w}" height="{h}" fill="none" stroke="#e3e6ea"/><text x="{LEFT}" y="14" fill="#1d232b" font-weight="600">{title}</text><text x="{ix}" y="{iy}" fill="{MUTED}">{top} {unit}</text><text x="{lx}" y="{BOTTOM}" fill="{MUTED}" text-anchor="end">0</text><text x="{LEFT}" y="{tx}" fill="{MUTED}">1 h ago</text><text x="{RIGHT}" y="{tx}" fill="{MUTED}" text-anchor="end">now</text>"##,
        w = RIGHT - LEFT,
        h = BOTTOM - TOP,
        title = escape(metric.title),
        lx = LEFT - 4.0,
        // Inside the frame's top-left corner: beside the axis, a scale
        // with its unit (`0.10 cores`) would run off the picture.
        ix = LEFT + 4.0,
        iy = TOP + 12.0,
        top = escape(&figure(top)),
        unit = escape(metric.unit),
        tx = BOTTOM + 14.0,
    );
    for (i, (label, s)) in series.iter().enumerate() {
        if s.samples.is_empty() {
            continue;
        }
        let color = PALETTE[i % PALETTE.len()];
        let mut points = String::with_capacity(s.samples.len() * 12);
        for sample in &s.samples {
            let _ = write!(
                points,
                "{:.1},{:.1} ",
                x_of(sample.at_ms),
                y_of((metric.value)(sample))
            );
        }
        if s.samples.len() == 1 {
            // One point draws nothing; the same point twice with round
            // caps draws a dot.
            let again = points.clone();
            points.push_str(&again);
        }
        let _ = write!(
            out,
            r#"<polyline data-series="{label}" points="{points}" fill="none" stroke="{color}" stroke-width="1.5" stroke-linejoin="round" stroke-linecap="round"><title>{label}</title></polyline>"#,
            label = escape(label),
            points = points.trim_end(),
        );
    }
    for (label, s) in series {
        for &at in &s.restarts_ms {
            let x = x_of(at);
            let _ = write!(
                out,
                r#"<line class="restart" x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{BOTTOM}" stroke="{RESTART}" stroke-width="1" stroke-dasharray="4 3"><title>{label} restarted {ago}</title></line>"#,
                label = escape(label),
                ago = ago(now_ms.saturating_sub(at)),
            );
        }
    }
    legend(out, series);
    out.push_str("</svg>");
}

/// One colored label per series along the bottom, as many as fit, then
/// how many more there are, and what a restart marker looks like.
fn legend(out: &mut String, series: &[(String, &Series)]) {
    const CHAR_WIDTH: f64 = 6.5;
    let y = HEIGHT - 6.0;
    let mut x = LEFT;
    let drawn: Vec<(usize, &String)> = series
        .iter()
        .enumerate()
        .filter(|(_, (_, s))| !s.samples.is_empty())
        .map(|(i, (label, _))| (i, label))
        .collect();
    for (shown, (i, label)) in drawn.iter().enumerate() {
        let text: String = if label.chars().count() > LEGEND_CHARS {
            label.chars().take(LEGEND_CHARS - 1).chain(['…']).collect()
        } else {
            label.to_string()
        };
        let width = (text.chars().count() as f64 + 2.0) * CHAR_WIDTH + 12.0;
        if x + width > RIGHT {
            let _ = write!(
                out,
                r#"<text x="{x:.1}" y="{y}" fill="{MUTED}">+{} more</text>"#,
                drawn.len() - shown
            );
            return;
        }
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="{ry}" width="10" height="3" fill="{color}"/><text x="{tx:.1}" y="{y}" fill="{color}">{text}</text>"#,
            ry = y - 5.0,
            color = PALETTE[i % PALETTE.len()],
            tx = x + 14.0,
            text = escape(&text),
        );
        x += width;
    }
    // What the dashed red lines are, when there are any and room is left.
    if series.iter().any(|(_, s)| !s.restarts_ms.is_empty()) && x + 70.0 <= RIGHT {
        let _ = write!(
            out,
            r#"<line x1="{x:.1}" y1="{y1}" x2="{x:.1}" y2="{y}" stroke="{RESTART}" stroke-dasharray="4 3"/><text x="{tx:.1}" y="{y}" fill="{RESTART}">restart</text>"#,
            y1 = y - 10.0,
            tx = x + 6.0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cerebro_types::history::{Sample, BUCKET_MS, MAX_SAMPLES};

    const NOW: u64 = 1_800_000_000_000;

    fn series(samples: &[(u64, f64, f64)], restarts_ms: &[u64]) -> Series {
        Series {
            samples: samples
                .iter()
                .map(|&(at_ms, cpu_cores, rss_mb)| Sample {
                    at_ms,
                    cpu_cores,
                    rss_mb,
                })
                .collect(),
            restarts_ms: restarts_ms.to_vec(),
        }
    }

    /// A full hour, one sample per bucket, of a series wavering around `level`.
    fn full_hour(level: f64, restarts_ms: &[u64]) -> Series {
        let samples: Vec<(u64, f64, f64)> = (0..MAX_SAMPLES as u64)
            .map(|i| {
                let wave = (i % 7) as f64 / 7.0;
                (
                    NOW - HISTORY_WINDOW_MS + (i + 1) * BUCKET_MS,
                    level * (0.5 + wave),
                    123.4 * level + 10.0 * wave,
                )
            })
            .collect();
        series(&samples, restarts_ms)
    }

    fn render(series: &[(&str, &Series)]) -> String {
        let owned: Vec<(String, &Series)> =
            series.iter().map(|(l, s)| (l.to_string(), *s)).collect();
        graphs(&owned, HISTORY_WINDOW_MS, NOW)
    }

    /// Every value of attribute `name` in `html`.
    fn attributes<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
        let needle = format!(" {name}=\"");
        html.match_indices(&needle)
            .map(|(at, _)| {
                let rest = &html[at + needle.len()..];
                &rest[..rest.find('"').unwrap()]
            })
            .collect()
    }

    /// Every coordinate drawn (polyline points, line and text positions)
    /// is a number within the viewBox.
    fn assert_within_view_box(html: &str) {
        assert!(!html.contains("NaN") && !html.contains("inf"), "{html}");
        let mut checked = 0;
        for points in attributes(html, "points") {
            for point in points.split(' ') {
                let (x, y) = point.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!((LEFT..=RIGHT).contains(&x), "x {x} in {points}");
                assert!((TOP..=BOTTOM).contains(&y), "y {y} in {points}");
                checked += 1;
            }
        }
        for name in ["x", "x1", "x2", "y", "y1", "y2"] {
            for value in attributes(html, name) {
                let value: f64 = value.parse().unwrap();
                let limit = if name.starts_with('x') { WIDTH } else { HEIGHT };
                assert!((0.0..=limit).contains(&value), "{name}={value}");
            }
        }
        assert!(checked > 0, "no point drawn: {html}");
    }

    #[test]
    fn a_job_of_three_instances_over_an_hour_draws_one_line_each_within_the_box() {
        let restarted = [NOW - 30 * 60_000, NOW - 5 * 60_000];
        let (a, b, c) = (
            full_hour(0.2, &[]),
            full_hour(1.3, &restarted),
            full_hour(0.05, &[]),
        );
        let html = render(&[("#0", &a), ("#1", &b), ("#2", &c)]);
        assert!(html.starts_with(r#"<section class="graphs"><h2>Last hour</h2>"#));
        assert!(html.ends_with("</section>"));
        assert_eq!(html.matches("<svg ").count(), 2);
        assert_eq!(
            html.matches(r#"<svg class="graph" data-metric="cpu""#)
                .count(),
            1
        );
        assert_eq!(
            html.matches(r#"<svg class="graph" data-metric="rss""#)
                .count(),
            1
        );
        assert_eq!(html.matches("</svg><svg").count(), 1);
        // Each SVG: a title, one line per instance, one marker per restart.
        for svg in html.split("<svg ").skip(1) {
            assert!(svg.contains("><title>"), "{svg}");
            assert_eq!(svg.matches("<polyline ").count(), 3);
            assert_eq!(svg.matches(r#"<line class="restart""#).count(), 2);
            for label in ["1 h ago", "now", ">#0<", ">#1<", ">#2<", ">restart</text>"] {
                assert!(svg.contains(label), "{label}");
            }
        }
        // The scale's top is a round figure at or above the highest value.
        assert!(html.contains(">2.0 cores</text>"), "{html}");
        assert!(html.contains(">200 MB</text>"), "{html}");
        assert_within_view_box(&html);
        // Restart 5 min ago: at 55/60 of the width.
        let x = LEFT + (RIGHT - LEFT) * 55.0 / 60.0;
        assert!(html.contains(&format!(r#"x1="{x:.1}""#)), "{html}");
        assert!(html.contains("#1 restarted 5 min ago"));
        // Self-contained: nothing fetched, nothing run, no inline style.
        for banned in [
            "<script",
            "style=",
            "href",
            "url(",
            "<image",
            "<foreignObject",
        ] {
            assert!(!html.contains(banned), "{banned}");
        }
        eprintln!(
            "a job of 3 instances over a full hour: {} bytes of SVG",
            html.len()
        );
        assert!(html.len() < 64 * 1024, "{}", html.len());
    }

    #[test]
    fn a_hostile_task_name_is_escaped_everywhere() {
        let hostile = r#"<script>alert("x")</script>&'#0"#;
        let s = series(&[(NOW - 60_000, 0.5, 10.0)], &[NOW - 30_000]);
        let html = render(&[("machine (sum)", &s), (hostile, &s)]);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("alert(\"x\")"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;#0"));
        // A long name is cut in the legend, whole in the tooltip.
        let long = "a-very-long-job-name-indeed#1234";
        let html = render(&[(long, &s)]);
        assert!(html.contains(&format!("<title>{long}</title>")));
        assert!(html.contains(">a-very-long-job-name-in…</text>"), "{html}");
    }

    #[test]
    fn nothing_is_drawn_without_a_sample() {
        assert_eq!(render(&[]), "");
        let restarts_only = series(&[], &[NOW - 1000]);
        assert_eq!(render(&[("#0", &restarts_only)]), "");
    }

    #[test]
    fn zeros_and_a_single_sample_draw_at_the_bottom_without_nan() {
        let zeros = series(&[(NOW - 20_000, 0.0, 0.0), (NOW - 10_000, 0.0, 0.0)], &[]);
        let html = render(&[("#0", &zeros)]);
        assert_within_view_box(&html);
        assert!(html.contains(&format!(",{BOTTOM:.1}")), "{html}");
        assert!(html.contains(">0.10 cores</text>"), "{html}");
        assert!(!html.contains("restart"), "{html}");

        let single = series(&[(NOW, 0.0, 0.0)], &[]);
        let html = render(&[("#0", &single)]);
        assert_within_view_box(&html);
        let points = attributes(&html, "points");
        assert_eq!(points.len(), 2);
        assert_eq!(
            points[0],
            format!("{RIGHT:.1},{BOTTOM:.1} {RIGHT:.1},{BOTTOM:.1}")
        );

        // Samples or markers from before the window or a clock ahead stay in the box.
        let stray = series(
            &[(0, f64::NAN, -5.0), (NOW + 60_000, 1.0, 1.0)],
            &[0, NOW + 1],
        );
        assert_within_view_box(&render(&[("#0", &stray)]));
    }

    #[test]
    fn many_series_end_the_legend_with_a_count() {
        let s = series(&[(NOW, 0.1, 1.0)], &[]);
        let labels: Vec<String> = (0..60).map(|i| format!("#{i}")).collect();
        let owned: Vec<(String, &Series)> = labels.iter().map(|l| (l.clone(), &s)).collect();
        let html = graphs(&owned, HISTORY_WINDOW_MS, NOW);
        assert_eq!(html.matches("<polyline ").count(), 120);
        assert!(html.contains(" more</text>"), "{html}");
        assert_within_view_box(&html);
    }

    #[test]
    fn scale_tops_are_round() {
        assert_eq!(scale_top(0.0, 0.1), 0.1);
        assert_eq!(scale_top(0.11, 0.1), 0.2);
        assert_eq!(scale_top(1.3, 0.1), 2.0);
        assert_eq!(scale_top(2.0, 0.1), 2.0);
        assert_eq!(scale_top(2.1, 0.1), 2.5);
        assert_eq!(scale_top(170.0, 1.0), 200.0);
        assert_eq!(scale_top(f64::NAN, 1.0), 1.0);
    }
}
