//! The one Prometheus exporter of the three daemons: each `/metrics` answer
//! is a snapshot built from the daemon's state at scrape time, written in
//! the text exposition format 0.0.4 (`# HELP`, `# TYPE`, then one sample a
//! line with escaped label values).
//!
//! Written here rather than through a metrics registry crate: nothing is
//! counted between scrapes (every value is read from state that already
//! exists), so a registry of long-lived metric objects would only be
//! rebuilt and thrown away on every request.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::fmt::Write;

/// The content type of the text exposition format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a metric family is, as its `# TYPE` line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Gauge,
    /// Only ever grows while its process lives; the name ends in `_total`.
    Counter,
}

impl MetricKind {
    fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
        }
    }
}

/// A scrape's text, built family by family.
///
/// ```
/// use cerebro_web::metrics::{Exposition, MetricKind};
/// let mut out = Exposition::default();
/// out.family("cerebro_task_up", MetricKind::Gauge, "1 while the workload runs");
/// out.sample("cerebro_task_up", &[("task", "say \"hi\"")], 1.0);
/// assert_eq!(
///     out.text(),
///     "# HELP cerebro_task_up 1 while the workload runs\n# TYPE cerebro_task_up gauge\n\
///      cerebro_task_up{task=\"say \\\"hi\\\"\"} 1\n"
/// );
/// ```
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts a family: its `# HELP` and `# TYPE` lines. Its samples follow.
    pub fn family(&mut self, name: &str, kind: MetricKind, help: &str) {
        let _ = writeln!(
            self.text,
            "# HELP {name} {help}\n# TYPE {name} {}",
            kind.as_str()
        );
    }

    /// One sample of `name` with `labels` in the given order. Values print
    /// as Rust does (`1`, `0.25`, `67108864`), which the format accepts.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A family with a single sample.
    pub fn single(
        &mut self,
        name: &str,
        kind: MetricKind,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.family(name, kind, help);
        self.sample(name, labels, value);
    }

    /// The exposition text.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl IntoResponse for Exposition {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, CONTENT_TYPE)], self.text).into_response()
    }
}

/// A label value as the text format wants it: backslash, double quote and
/// newline escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_escape_labels_and_print_plain_numbers() {
        let mut out = Exposition::default();
        out.family("x_total", MetricKind::Counter, "things");
        out.sample("x_total", &[("a", "back\\slash"), ("b", "two\nlines")], 3.0);
        out.sample("x_total", &[], 0.5);
        assert_eq!(
            out.text(),
            "# HELP x_total things\n# TYPE x_total counter\n\
             x_total{a=\"back\\\\slash\",b=\"two\\nlines\"} 3\nx_total 0.5\n"
        );
    }
}
