//! The HTML look shared by every Cerebro page: one escaping function, one
//! page shell, small helpers for common pieces. The stylesheet and the one
//! script are served by the daemon itself ([`assets`], no CDN) rather than
//! inline, so that the Content-Security-Policy can refuse every inline
//! script and style (see [`crate::edge`]).

use std::fmt::Write;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { --bg:#f6f7f9; --fg:#1d232b; --muted:#667085; --card:#fff; --line:#e3e6ea; --accent:#2f6fde;
        --ok:#1f9d55; --warn:#c77c02; --bad:#d64545; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; background:var(--bg); color:var(--fg); }
header { background:#1d232b; color:#fff; padding:10px 20px; display:flex; gap:18px; align-items:center; }
header a { color:#cfd8e3; text-decoration:none; } header a:hover { color:#fff; }
header .brand { font-weight:700; color:#fff; letter-spacing:.5px; }
main { padding:18px 20px; max-width:1400px; }
h1 { font-size:20px; margin:0 0 12px; } h2 { font-size:16px; margin:22px 0 8px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 14px; margin-bottom:14px; }
table { border-collapse:collapse; width:100%; background:var(--card); }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-size:12px; text-transform:uppercase; color:var(--muted); font-weight:600; }
code, pre { font-family: ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:13px; }
pre.log { background:#0f1419; color:#d7dde5; padding:12px; border-radius:8px; overflow:auto; max-height:70vh; white-space:pre-wrap; }
.pill { display:inline-block; padding:1px 8px; border-radius:999px; font-size:12px; font-weight:600; color:#fff; background:var(--muted); }
.pill.running { background:var(--ok); } .pill.backoff, .pill.stopping { background:var(--warn); }
.pill.fatal, .pill.exited, .pill.unreachable { background:var(--bad); }
.pill.ready { background:var(--ok); } .pill.pending, .pill.provisioning, .pill.decommissioning { background:var(--warn); }
.health { display:inline-block; padding:1px 8px; border-radius:999px; font-size:12px; font-weight:600; color:#fff; background:var(--muted); white-space:nowrap; }
.health-running, .health-healthy { background:var(--ok); }
.health-starting, .health-pending, .health-stopping, .health-degraded { background:var(--warn); }
.health-crash_looping, .health-failed, .health-failing { background:var(--bad); }
.health-stopped, .health-unknown { background:var(--muted); }
h1 .health { vertical-align:middle; font-size:13px; margin-left:6px; }
.host { border-style:dashed; }
.muted { color:var(--muted); }
.kv { display:grid; grid-template-columns: max-content 1fr; gap:4px 16px; }
.bar { position:relative; width:140px; height:14px; background:#e9edf2; border-radius:4px; overflow:hidden; display:inline-block; vertical-align:middle; }
.bar > span { position:absolute; left:0; top:0; bottom:0; background:var(--accent); }
.bar.high > span { background:var(--warn); } .bar.full > span { background:var(--bad); }
.stats { display:flex; gap:14px; flex-wrap:wrap; margin-bottom:14px; }
.stat { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px 16px; min-width:150px; }
.stat b { display:block; font-size:22px; } .stat.bad b { color:var(--bad); }
button, .button { background:var(--accent); color:#fff; border:0; border-radius:6px; padding:4px 10px; font:inherit; cursor:pointer; }
button.danger { background:var(--bad); } form.inline { display:inline; margin:0; }
input, select { font:inherit; padding:3px 6px; border:1px solid var(--line); border-radius:6px; }
.notice { background:#fff7e6; border:1px solid #f0d9a8; padding:8px 12px; border-radius:8px; margin-bottom:12px; }
.notice.insecure { background:#fde8e8; border-color:#f3b4b4; }
header .who { margin-left:auto; }
input.wide { width:28em; } input.narrow { width:5em; }
"#;

/// Where every page finds the stylesheet and the script.
pub const STYLESHEET_PATH: &str = "/assets/cerebro.css";
/// See [`STYLESHEET_PATH`].
pub const SCRIPT_PATH: &str = "/assets/cerebro.js";

/// [`STYLE`] and the width classes `.w0` to `.w100` of [`bar`] (a style
/// attribute would be inline style).
fn stylesheet() -> &'static str {
    static SHEET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SHEET.get_or_init(|| {
        let mut sheet = String::from(STYLE);
        for percent in 0..=100 {
            let _ = writeln!(sheet, ".bar > span.w{percent} {{ width:{percent}%; }}");
        }
        sheet
    })
}

/// The routes of the stylesheet and the script, which
/// [`crate::daemon::spawn_server`] adds to every daemon.
pub fn assets() -> axum::Router {
    use axum::http::header;
    use axum::routing::get;
    const CACHE: &str = "max-age=300";
    axum::Router::new()
        .route(
            STYLESHEET_PATH,
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                        (header::CACHE_CONTROL, CACHE),
                    ],
                    stylesheet(),
                )
            }),
        )
        .route(
            SCRIPT_PATH,
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, CACHE),
                    ],
                    SCRIPT,
                )
            }),
        )
}

/// The one script of every page:
/// - keeps `<div id="live" data-refresh="MS">` current: every few seconds
///   the page is fetched again and only that element is swapped, so
///   nothing reloads and scroll position and open forms elsewhere stay;
/// - follows a log: `<pre id="log" data-url="..." data-offset="N">` opens
///   scrolled to its newest line, then gets what the log's JSON API
///   returns from that offset on, every second, and stays at the newest
///   line unless the reader scrolled up;
/// - submits the form of a `<select data-autosubmit>` when it changes.
const SCRIPT: &str = r#"
(function () {
  var live = document.getElementById('live');
  if (live && live.dataset.refresh) {
    setInterval(function () {
      fetch(location.href, {credentials: 'same-origin'}).then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) return;
          var fresh = new DOMParser().parseFromString(html, 'text/html').getElementById('live');
          if (fresh) live.innerHTML = fresh.innerHTML;
        }).catch(function () {});
    }, Number(live.dataset.refresh));
  }
  var pre = document.getElementById('log');
  if (pre && pre.dataset.url) {
    var url = pre.dataset.url, offset = Number(pre.dataset.offset);
    // A log is read from its end: open at the newest line.
    pre.scrollTop = pre.scrollHeight;
    var poll = function () {
      fetch(url + '?offset=' + offset, {credentials: 'same-origin'}).then(function (r) { return r.ok ? r.json() : null; })
        .then(function (chunk) {
          if (chunk) {
            if (chunk.data) {
              var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
              pre.appendChild(document.createTextNode(chunk.data));
              if (atEnd) pre.scrollTop = pre.scrollHeight;
            }
            offset = chunk.next_offset;
          }
        }).catch(function () {}).then(function () { setTimeout(poll, 1000); });
    };
    setTimeout(poll, 1000);
  }
  document.querySelectorAll('select[data-autosubmit]').forEach(function (select) {
    select.addEventListener('change', function () { select.form.submit(); });
  });
})();
"#;

/// A whole page: `title` is escaped here, `body` must already be safe HTML.
pub fn page(title: &str, nav: &[(&str, &str)], body: &str) -> String {
    page_with_header(title, nav, "", body)
}

/// A page with extra (already safe) HTML at the right of the header, such as who is logged in.
pub fn page_with_header(
    title: &str,
    nav: &[(&str, &str)],
    header_extra: &str,
    body: &str,
) -> String {
    let mut links = String::new();
    for (href, label) in nav {
        let _ = write!(links, r#"<a href="{}">{}</a>"#, escape(href), escape(label));
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Cerebro</title><link rel=\"stylesheet\" href=\"{STYLESHEET_PATH}\">\
         <script src=\"{SCRIPT_PATH}\" defer></script></head>\
         <body><header><span class=\"brand\">Cerebro</span>{links}<span class=\"who\">{header_extra}</span></header>\
         <main>{body}</main></body></html>",
        title = escape(title),
    )
}

/// A horizontal bar of `used` out of `total`, with the numbers as its title.
pub fn bar(used: f64, total: f64, label: &str) -> String {
    let fraction = if total > 0.0 {
        (used / total).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let class = if fraction >= 0.95 {
        "bar full"
    } else if fraction >= 0.8 {
        "bar high"
    } else {
        "bar"
    };
    format!(
        r#"<span class="{class}" title="{label}"><span class="w{}"></span></span> <span class="muted">{label}</span>"#,
        (fraction * 100.0).round() as u32,
        label = escape(label)
    )
}

/// A state pill (`running`, `fatal`, ...); the class and text are escaped.
pub fn state_pill(state: &str) -> String {
    let state = escape(state);
    format!(r#"<span class="pill {state}">{state}</span>"#)
}

/// A health badge: `wire` is the state's JSON word (the class
/// `health-{wire}` colours it: green for running and healthy, amber on the
/// way, red in trouble, grey for stopped), `label` the word people read.
/// Both are escaped.
pub fn health_badge(wire: &str, label: &str) -> String {
    format!(
        r#"<span class="health health-{}">{}</span>"#,
        escape(wire),
        escape(label)
    )
}

/// A two-column list of already-escaped values.
pub fn key_values(rows: &[(&str, String)]) -> String {
    let mut out = String::from(r#"<div class="kv">"#);
    for (key, value) in rows {
        let _ = write!(
            out,
            r#"<div class="muted">{}</div><div>{value}</div>"#,
            escape(key)
        );
    }
    out.push_str("</div>");
    out
}

/// `1.5 GiB`-style rendering of a byte count.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
        let html = page("<b>", &[("/a?b=<c>", "<nav>")], "");
        assert!(!html.contains("<b>"));
        assert!(!html.contains("<nav>"));
    }

    #[test]
    fn pages_carry_no_inline_script_or_style() {
        let html = page("t", &[], &bar(1.0, 3.0, "1 of 3"));
        assert!(!html.contains("<style"), "{html}");
        assert!(!html.contains("style="), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains(r#"class="w33""#), "{html}");
        assert!(stylesheet().contains(".bar > span.w33 { width:33%; }"));
    }

    #[test]
    fn health_badges_have_a_colour_for_every_word() {
        assert_eq!(
            health_badge("crash_looping", "crash-looping"),
            r#"<span class="health health-crash_looping">crash-looping</span>"#
        );
        for word in [
            "running",
            "healthy",
            "starting",
            "pending",
            "stopping",
            "degraded",
            "crash_looping",
            "failed",
            "failing",
            "stopped",
        ] {
            assert!(
                stylesheet().contains(&format!(".health-{word}")),
                "{word} has no colour"
            );
        }
    }

    #[test]
    fn formats_bytes() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 << 30), "3.0 GiB");
    }
}
