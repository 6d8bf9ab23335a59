//! `--format html`: one self-contained page from the same findings as the other formats: the
//! incident summary, a chart of failing connections over capture time by class, the table of
//! failing connections (sortable and filterable by a small inline script), and a ladder
//! diagram of each failing connection drawn as inline SVG.
//!
//! The page fetches nothing: no scripts, styles, fonts or images from anywhere, and a
//! Content-Security-Policy that forbids them. Everything taken from a capture (hostnames,
//! paths, header values, TLS names, debug data) is HTML-escaped. Without the script the table
//! reads in time order and every ladder opens from its `<details>`.
//!
//! Size: the table lists the first [`TABLE_CAP`] reported connections in time order, and
//! ladders are drawn for the first [`LADDER_CAP`] failing ones, each with at most
//! [`RUNG_CAP`] events; the page says when it left some out. A capture with a million
//! failing connections still gives a page a browser opens (csv and json list every one).

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::classify::{Class, Verdict};
use crate::detect::Detector;
use crate::flow::{ConnectionRecord, Side};
use crate::timefmt::rfc3339_ns;

use super::clip;
use super::explain::{Rung, Tone, relative, rungs};
use super::verdicts::{
    Findings, Judged, closed_short, in_time_order, key_timing, short, time_of_day,
};

/// Failing connections drawn as ladders, the first in time order.
pub const LADDER_CAP: usize = 500;
/// Connections listed in the table, the first in time order.
pub const TABLE_CAP: usize = 10_000;
/// Events drawn per ladder: the first and last halves of this, with the count left out
/// between them (a long HTTP/2 connection can carry thousands of streams).
pub const RUNG_CAP: usize = 200;

/// At most this many bars in the chart of failures over capture time.
const CHART_BARS: i64 = 60;

/// One failing connection's ladder, kept while the capture is read (the connection's record
/// is gone by the time the report is written).
pub struct Ladder {
    start_ns: i64,
    rungs: Vec<Rung>,
    /// Events left out after the first `RUNG_CAP / 2`.
    omitted: usize,
}

impl Ladder {
    fn of(rec: &ConnectionRecord<Detector>) -> Ladder {
        let mut all = rungs(rec);
        let omitted = all.len().saturating_sub(RUNG_CAP);
        if omitted > 0 {
            let tail = all.split_off(all.len() - RUNG_CAP / 2);
            all.truncate(RUNG_CAP / 2);
            all.extend(tail);
        }
        Ladder {
            start_ns: rec.start_ns,
            rungs: all,
            omitted,
        }
    }
}

/// Identifies a connection the way the reports order them: start, capture, first frame.
type ConnKey = (i64, String, u64);

/// The ladders of the first [`LADDER_CAP`] failing connections in time order. Each input
/// keeps its own first ones; merged, they hold the first ones of all inputs, whatever the
/// order connections finished in.
#[derive(Default)]
pub struct Ladders {
    kept: BTreeMap<ConnKey, Ladder>,
    /// Failing connections offered, kept or not.
    offered: u64,
}

impl Ladders {
    /// Offers one failing connection; its ladder is built only when it is among the first.
    pub fn offer(&mut self, capture: &str, rec: &ConnectionRecord<Detector>) {
        self.offered += 1;
        if self.kept.len() >= LADDER_CAP
            && self
                .kept
                .last_key_value()
                .is_some_and(|((start, c, frame), _)| {
                    (*start, c.as_str(), *frame) < (rec.start_ns, capture, rec.first_frame)
                })
        {
            return;
        }
        self.insert(
            (rec.start_ns, capture.to_string(), rec.first_frame),
            Ladder::of(rec),
        );
    }

    pub fn merge(&mut self, other: Ladders) {
        self.offered += other.offered;
        for (k, v) in other.kept {
            self.insert(k, v);
        }
    }

    fn insert(&mut self, key: ConnKey, ladder: Ladder) {
        self.kept.insert(key, ladder);
        if self.kept.len() > LADDER_CAP {
            self.kept.pop_last();
        }
    }

    fn get(&self, j: &Judged) -> Option<&Ladder> {
        self.kept
            .get(&(j.start_ns, j.capture.clone(), j.first_frame))
    }
}

/// What the page says about the run besides the findings.
pub struct Page<'a> {
    /// The inputs as given on the command line.
    pub inputs: &'a [String],
    /// Captures read.
    pub captures: usize,
    /// The earliest and latest packet of all captures, RFC 3339.
    pub first: Option<String>,
    pub last: Option<String>,
    /// Every connection is listed (`--all`), not only the failing ones.
    pub all: bool,
}

/// Text for element content and quoted attribute values. Everything that came from a
/// capture passes through here; control characters (never meaningful in a page, and some
/// invalid in it) become U+FFFD.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            '\t' | '\n' => o.push(c),
            c if c.is_control() => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

/// A fixed colour per class, grouped by where the connection failed: connect in blues, TLS
/// in purples, protocol disagreements in teals, the response in reds and oranges, HTTP/2 in
/// browns.
fn class_color(c: Class) -> &'static str {
    match c {
        Class::Ok => "#2e7d32",
        Class::IdleClose => "#c0a000",
        Class::ConnectRefused => "#1565c0",
        Class::ConnectTimeout => "#64b5f6",
        Class::TlsToPlaintextPort => "#6a1b9a",
        Class::PlaintextToTlsPort => "#ab47bc",
        Class::AlpnMismatch => "#4527a0",
        Class::TlsAlert => "#9575cd",
        Class::TlsHandshakeAborted => "#ce93d8",
        Class::H2PrefaceToHttp1 => "#00838f",
        Class::Http1ToH2Only => "#4db6ac",
        Class::ClosedBeforeResponse => "#c62828",
        Class::ResetBeforeResponse => "#880e4f",
        Class::KeepaliveRace => "#ef6c00",
        Class::PartialResponseHeaders => "#e57373",
        Class::InvalidResponse => "#ad1457",
        Class::ResponseTimeout => "#ffa726",
        Class::TruncatedResponseBody => "#f06292",
        Class::H2StreamReset => "#6d4c41",
        Class::H2Goaway => "#a1887f",
        Class::ClientAbort => "#607d8b",
        Class::IncompleteCapture => "#9e9e9e",
    }
}

fn class_index(c: Class) -> usize {
    Class::ALL.iter().position(|k| *k == c).unwrap_or(0)
}

const CSS: &str = r#"
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; margin: 0 auto; max-width: 1200px; padding: 0 20px 40px; background: #fff; }
h1 { font-size: 22px; margin: 20px 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
.meta { color: #555; margin: 0; }
.big { font-size: 16px; }
.fail { color: #b71c1c; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f5f5f7; position: sticky; top: 0; }
th.sortable { cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " ▲"; }
th[aria-sort="descending"]::after { content: " ▼"; }
tr.conn:hover { background: #fafafa; }
td.num { text-align: right; }
td.nw, th { white-space: nowrap; }
td.why { min-width: 240px; }
.scroll { overflow-x: auto; }
td.where { overflow-wrap: anywhere; min-width: 140px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; vertical-align: baseline; }
.ok-row { color: #666; }
ul.legend { list-style: none; padding: 0; margin: 6px 0; display: flex; flex-wrap: wrap; gap: 4px 18px; }
#controls { margin: 8px 0; display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
#controls input { padding: 4px 6px; min-width: 260px; }
#controls select { padding: 3px; }
#shown { color: #555; }
details.ladder { border: 1px solid #ddd; border-radius: 4px; margin: 6px 0; padding: 4px 10px; }
details.ladder > summary { cursor: pointer; }
details.ladder[open] > summary { margin-bottom: 6px; }
svg { max-width: 100%; height: auto; }
svg text { font-family: system-ui, sans-serif; font-size: 12px; fill: #1d1d1f; }
svg text.t { font-family: ui-monospace, "DejaVu Sans Mono", monospace; fill: #555; }
svg text.note { fill: #666; font-style: italic; }
svg .tone-close text { fill: #a75a00; }
svg .tone-fault text { fill: #b71c1c; font-weight: 600; }
.verdict p { margin: 4px 0; }
.verdict dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 4px 0; }
.verdict dt { font-weight: 600; }
.verdict dd { margin: 0; }
"#;

/// Sorting, filtering and the state in the URL's fragment (`#class=ID&q=TEXT&sort=N&dir=desc`,
/// so a filtered view can be linked). It marks `<body data-ready="1">` when done.
const SCRIPT: &str = r##"
(function () {
  "use strict";
  var table = document.getElementById("conns");
  var q = document.getElementById("filter");
  var sel = document.getElementById("class-filter");
  var shown = document.getElementById("shown");
  var ladders = Array.prototype.slice.call(document.querySelectorAll("details.ladder"));
  var rows = table ? Array.prototype.slice.call(table.tBodies[0].rows) : [];
  var heads = table ? Array.prototype.slice.call(table.tHead.rows[0].cells) : [];
  var sortCol = -1, sortDir = 1;

  // A cell's sort key: its data-key, else a duration in the text ("idle 2.0 s"), else the text.
  function keyOf(row, col) {
    var cell = row.cells[col];
    if (!cell) return "";
    var k = cell.getAttribute("data-key");
    if (k !== null) return Number(k);
    var t = cell.textContent.trim();
    var m = /(-?[0-9]+(?:\.[0-9]+)?) (ms|s)\b/.exec(t);
    if (m) return Number(m[1]) * (m[2] === "s" ? 1000 : 1);
    return t.toLowerCase();
  }
  function compare(a, b) {
    if (typeof a === "number" && typeof b === "number") return a - b;
    if (typeof a === "number") return -1;
    if (typeof b === "number") return 1;
    return a.localeCompare(b, undefined, { numeric: true });
  }
  function sortBy(col, dir) {
    sortCol = col;
    sortDir = dir;
    // Ties keep time order (the rows' order in the page).
    var keyed = rows.map(function (r, i) { return [keyOf(r, col), i, r]; });
    keyed.sort(function (x, y) { return dir * compare(x[0], y[0]) || x[1] - y[1]; });
    var body = table.tBodies[0];
    keyed.forEach(function (k) { body.appendChild(k[2]); });
    heads.forEach(function (h, i) {
      h.setAttribute("aria-sort", i === col ? (dir > 0 ? "ascending" : "descending") : "none");
    });
  }
  function matches(el, text, cls, hay) {
    return (!cls || el.getAttribute("data-class") === cls) &&
      (!text || hay.textContent.toLowerCase().indexOf(text) >= 0);
  }
  function applyFilter() {
    var text = q.value.trim().toLowerCase(), cls = sel.value, n = 0;
    rows.forEach(function (r) {
      var ok = matches(r, text, cls, r);
      r.hidden = !ok;
      if (ok) n++;
    });
    ladders.forEach(function (d) {
      d.hidden = !matches(d, text, cls, d.querySelector("summary") || d);
    });
    table.setAttribute("data-shown", String(n));
    shown.textContent = n + " of " + rows.length + " shown";
  }
  function readHash() {
    var p = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i <= 0) return;
      try { p[decodeURIComponent(kv.slice(0, i))] = decodeURIComponent(kv.slice(i + 1)); } catch (e) { /* not ours */ }
    });
    return p;
  }
  function writeHash() {
    var parts = [];
    if (sel.value) parts.push("class=" + encodeURIComponent(sel.value));
    if (q.value) parts.push("q=" + encodeURIComponent(q.value));
    if (sortCol >= 0) parts.push("sort=" + sortCol, "dir=" + (sortDir > 0 ? "asc" : "desc"));
    try {
      history.replaceState(null, "", parts.length ? "#" + parts.join("&") : location.pathname + location.search);
    } catch (e) { /* a page opened from a file may refuse; the view still works */ }
  }
  // A link to a ladder opens it.
  function openTarget() {
    var id = location.hash.slice(1);
    var el = id && /^ladder-[0-9]+$/.test(id) ? document.getElementById(id) : null;
    if (el && el.tagName === "DETAILS") el.open = true;
  }
  if (table && q && sel && shown) {
    document.getElementById("controls").hidden = false;
    heads.forEach(function (h, i) {
      h.tabIndex = 0;
      h.classList.add("sortable");
      h.setAttribute("aria-sort", "none");
      function go() { sortBy(i, sortCol === i ? -sortDir : 1); writeHash(); }
      h.addEventListener("click", go);
      h.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); }
      });
    });
    q.addEventListener("input", function () { applyFilter(); writeHash(); });
    sel.addEventListener("change", function () { applyFilter(); writeHash(); });
    var p = readHash();
    if (p.q) q.value = p.q;
    if (p["class"]) sel.value = p["class"];
    var col = parseInt(p.sort, 10);
    if (col >= 0 && col < heads.length) sortBy(col, p.dir === "desc" ? -1 : 1);
    applyFilter();
  }
  openTarget();
  window.addEventListener("hashchange", openTarget);
  document.body.setAttribute("data-ready", "1");
})();
"##;

/// Writes the page.
pub fn write_html(out: &mut dyn Write, f: &Findings, page: &Page<'_>) -> io::Result<()> {
    let inputs = page
        .inputs
        .iter()
        .map(|i| esc(i))
        .collect::<Vec<_>>()
        .join(" ");
    writeln!(out, "<!DOCTYPE html>")?;
    writeln!(out, "<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">")?;
    writeln!(
        out,
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
    )?;
    writeln!(
        out,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    )?;
    writeln!(out, "<title>rstscope: {inputs}</title>")?;
    writeln!(out, "<style>{CSS}</style>\n</head>\n<body>")?;
    writeln!(out, "<header>\n<h1>rstscope report</h1>")?;
    writeln!(
        out,
        "<p class=\"meta\">Inputs: <code>{inputs}</code> ({} capture{})</p>",
        page.captures,
        if page.captures == 1 { "" } else { "s" }
    )?;
    if let (Some(first), Some(last)) = (&page.first, &page.last) {
        writeln!(
            out,
            "<p class=\"meta\">Capture time: <span class=\"mono\">{}</span> to <span class=\"mono\">{}</span> (UTC)</p>",
            esc(first),
            esc(last)
        )?;
    }
    writeln!(out, "</header>")?;
    write_summary(out, f)?;
    let order = in_time_order(&f.kept);
    write_chart(out, &order)?;
    write_table(out, f, &order, page.all)?;
    write_ladders(out, f, &order)?;
    writeln!(
        out,
        "<footer><p class=\"meta\">`rstscope explain INPUT FRAME` prints any connection's ladder as text.</p></footer>"
    )?;
    writeln!(out, "<script>{SCRIPT}</script>\n</body>\n</html>")
}

fn write_summary(out: &mut dyn Write, f: &Findings) -> io::Result<()> {
    writeln!(out, "<section id=\"summary\">\n<h2>Summary</h2>")?;
    writeln!(
        out,
        "<p class=\"big\">{} TCP connections, <strong class=\"fail\">{} failing</strong></p>",
        f.connections, f.failing
    )?;
    let ranked = f.failing_ranked();
    if !ranked.is_empty() {
        writeln!(out, "<h3>Top findings</h3>\n<ol id=\"findings\">")?;
        for ((server, class), n) in ranked.iter().take(3) {
            writeln!(
                out,
                "<li><span class=\"swatch\" style=\"background:{}\"></span><code>{}</code> ×{} to <code>{}</code>: {}</li>",
                class_color(*class),
                class.id(),
                n.count,
                esc(&server.to_string()),
                esc(f.example(*class, *server))
            )?;
        }
        writeln!(out, "</ol>")?;
    }
    writeln!(out, "<h3>By server endpoint and class</h3>")?;
    writeln!(
        out,
        "<table id=\"counts\">\n<thead><tr><th>server</th><th>class</th><th>count</th><th>first</th><th>last</th></tr></thead>\n<tbody>"
    )?;
    for ((server, class), n) in &f.by_server {
        writeln!(
            out,
            "<tr{}><td class=\"mono\">{}</td><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td class=\"num\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td></tr>",
            if class.is_failure() {
                ""
            } else {
                " class=\"ok-row\""
            },
            esc(&server.to_string()),
            class_color(*class),
            class.id(),
            n.count,
            time_of_day(n.first_ns),
            time_of_day(n.last_ns)
        )?;
    }
    writeln!(out, "</tbody>\n</table>")?;
    let summary = f.summary_json();
    if !summary.server_errors.is_empty() {
        writeln!(
            out,
            "<h3>HTTP 5xx responses</h3>\n<p>The symptom a proxy's client sees: {}</p>",
            summary
                .server_errors
                .iter()
                .map(|e| format!("<code>{}</code> {} ×{}", esc(&e.server), e.status, e.count))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    if !summary.idle_timeouts.is_empty() {
        writeln!(out, "<h3>Idle timeouts observed</h3>\n<ul>")?;
        for t in &summary.idle_timeouts {
            write!(
                out,
                "<li><code>{}</code> closes idle connections after {:.1} s (median of {}, spread {:.2} s)",
                esc(&t.server),
                t.median_s,
                t.samples,
                t.spread_s
            )?;
            if let Some(m) = &t.matches {
                write!(out, ": matches {}", esc(m))?;
            }
            if let Some(reuse) = t.longest_client_reuse_idle_s {
                write!(
                    out,
                    "; clients reused connections to it after up to {reuse:.1} s idle ({} keep-alive race{})",
                    t.keepalive_races,
                    if t.keepalive_races == 1 { "" } else { "s" }
                )?;
            }
            writeln!(out, "</li>")?;
        }
        writeln!(out, "</ul>")?;
    }
    writeln!(out, "</section>")
}

/// The bar widths the chart may use, in nanoseconds: round numbers from 1 ms to a day.
const CHART_STEPS_NS: [i64; 25] = {
    const MS: i64 = 1_000_000;
    const S: i64 = 1_000 * MS;
    [
        MS,
        2 * MS,
        5 * MS,
        10 * MS,
        20 * MS,
        50 * MS,
        100 * MS,
        200 * MS,
        500 * MS,
        S,
        2 * S,
        5 * S,
        10 * S,
        15 * S,
        30 * S,
        60 * S,
        120 * S,
        300 * S,
        600 * S,
        900 * S,
        1800 * S,
        3600 * S,
        3 * 3600 * S,
        6 * 3600 * S,
        24 * 3600 * S,
    ]
};

/// "500 ms", "2 s", "15 min", "6 h".
fn step_text(ns: i64) -> String {
    match ns {
        n if n < 1_000_000_000 => format!("{} ms", n / 1_000_000),
        n if n < 60_000_000_000 => format!("{} s", n / 1_000_000_000),
        n if n < 3_600_000_000_000 => format!("{} min", n / 60_000_000_000),
        n => format!("{} h", n / 3_600_000_000_000),
    }
}

/// A stacked bar chart of failing connections by their start in capture time, one colour per
/// class, with a legend.
fn write_chart(out: &mut dyn Write, order: &[&Judged]) -> io::Result<()> {
    let failing: Vec<&Judged> = order
        .iter()
        .copied()
        .filter(|j| j.verdict.class.is_failure())
        .collect();
    writeln!(
        out,
        "<section id=\"timeline\">\n<h2>Failures over capture time</h2>"
    )?;
    let (Some(first), Some(last)) = (
        failing.iter().map(|j| j.start_ns).min(),
        failing.iter().map(|j| j.start_ns).max(),
    ) else {
        writeln!(out, "<p>No failing connections.</p>\n</section>")?;
        return Ok(());
    };
    // The narrowest round bar width that keeps the bars at most CHART_BARS; bars start on
    // multiples of it.
    let bars_with = |step: i64| last.div_euclid(step) - first.div_euclid(step) + 1;
    let step = CHART_STEPS_NS
        .iter()
        .copied()
        .find(|&s| bars_with(s) <= CHART_BARS)
        .unwrap_or_else(|| (last - first) / (CHART_BARS - 1) + 1);
    let first_bar = first.div_euclid(step);
    let bars = bars_with(step).clamp(1, CHART_BARS) as usize;
    let mut counts = vec![[0u64; Class::ALL.len()]; bars];
    let mut totals = [0u64; Class::ALL.len()];
    for j in &failing {
        let bar = (j.start_ns.div_euclid(step) - first_bar) as usize;
        let c = class_index(j.verdict.class);
        if let Some(slot) = counts.get_mut(bar).and_then(|b| b.get_mut(c)) {
            *slot += 1;
        }
        if let Some(t) = totals.get_mut(c) {
            *t += 1;
        }
    }
    let max = counts
        .iter()
        .map(|b| b.iter().sum::<u64>())
        .max()
        .unwrap_or(1)
        .max(1);
    const W: f64 = 960.0;
    const H: f64 = 240.0;
    const LEFT: f64 = 48.0;
    const RIGHT: f64 = 12.0;
    const TOP: f64 = 12.0;
    const BOTTOM: f64 = 36.0;
    /// Bars never get wider than this, so a few bars do not read as a flood.
    const MAX_BAR: f64 = 36.0;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let slot = plot_w / bars as f64;
    let bar_w = (slot - if slot > 4.0 { 1.0 } else { 0.0 }).clamp(0.5, MAX_BAR);
    let per_bar = step_text(step);
    writeln!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"Failing connections over capture time, {per_bar} per bar\">"
    )?;
    let base = TOP + plot_h;
    for (i, bar) in counts.iter().enumerate() {
        let x = LEFT + i as f64 * slot + (slot - bar_w) / 2.0;
        let t0 = (first_bar + i as i64) * step;
        let mut y = base;
        for (c, &n) in bar.iter().enumerate() {
            let Some(class) = Class::ALL.get(c).copied() else {
                continue;
            };
            if n == 0 {
                continue;
            }
            let h = n as f64 / max as f64 * plot_h;
            y -= h;
            writeln!(
                out,
                "<rect class=\"bar\" data-class=\"{}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{} + {per_bar}: {n} {}</title></rect>",
                class.id(),
                class_color(class),
                time_of_day(t0),
                class.id()
            )?;
        }
    }
    // Axes, the count scale, and the time at both ends and the middle.
    writeln!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{base}\" stroke=\"#888\"/><line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#888\"/>",
        W - RIGHT
    )?;
    writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max}</text><text x=\"{}\" y=\"{base}\" text-anchor=\"end\">0</text>",
        LEFT - 6.0,
        TOP + 10.0,
        LEFT - 6.0
    )?;
    let start = first_bar * step;
    let end = start + bars as i64 * step;
    for (x, t, anchor) in [
        (LEFT, start, "start"),
        (LEFT + plot_w / 2.0, start + (end - start) / 2, "middle"),
        (W - RIGHT, end, "end"),
    ] {
        writeln!(
            out,
            "<text class=\"t\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
            base + 16.0,
            time_of_day(t)
        )?;
    }
    writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"note\">{per_bar} per bar, capture time (UTC)</text>",
        LEFT + plot_w / 2.0,
        H - 4.0
    )?;
    writeln!(out, "</svg>\n<ul class=\"legend\">")?;
    for (c, &n) in totals.iter().enumerate() {
        let Some(class) = Class::ALL.get(c).copied() else {
            continue;
        };
        if n > 0 {
            writeln!(
                out,
                "<li data-class=\"{}\"><span class=\"swatch\" style=\"background:{}\"></span><code>{}</code> {n}</li>",
                class.id(),
                class_color(class),
                class.id()
            )?;
        }
    }
    writeln!(out, "</ul>\n</section>")
}

fn write_table(out: &mut dyn Write, f: &Findings, order: &[&Judged], all: bool) -> io::Result<()> {
    writeln!(
        out,
        "<section id=\"connections\">\n<h2>{} ({})</h2>",
        if all {
            "Connections"
        } else {
            "Failing connections"
        },
        order.len()
    )?;
    if order.is_empty() {
        writeln!(out, "<p>None.</p>\n</section>")?;
        return Ok(());
    }
    if order.len() > TABLE_CAP {
        writeln!(
            out,
            "<p id=\"table-cap\">The first {TABLE_CAP} of {} in time order are listed; <code>--format csv</code> or <code>json</code> lists every one.</p>",
            order.len()
        )?;
    }
    let order = order.get(..TABLE_CAP).unwrap_or(order);
    // The controls need the script; without it they stay hidden and the table reads as is.
    writeln!(
        out,
        "<div id=\"controls\" hidden><input type=\"search\" id=\"filter\" placeholder=\"Filter: address, port, path, words…\" aria-label=\"Filter\"><select id=\"class-filter\" aria-label=\"Class\"><option value=\"\">every class</option>"
    )?;
    let mut classes: Vec<Class> = order.iter().map(|j| j.verdict.class).collect();
    classes.sort();
    classes.dedup();
    for c in classes {
        writeln!(out, "<option value=\"{0}\">{0}</option>", c.id())?;
    }
    writeln!(
        out,
        "</select><span id=\"shown\"></span><span class=\"meta\">Click a column's header to sort.</span></div>"
    )?;
    writeln!(
        out,
        "<div class=\"scroll\"><table id=\"conns\">\n<thead><tr><th>time</th><th>client → server</th><th>class</th><th>closed by</th><th>timing</th><th>why</th><th>capture, frame</th></tr></thead>\n<tbody>"
    )?;
    for (i, j) in order.iter().enumerate() {
        let v = &j.verdict;
        let ladder = if f.html_ladders.get(j).is_some() {
            format!(" <a href=\"#ladder-{i}\">ladder</a>")
        } else {
            String::new()
        };
        writeln!(
            out,
            "<tr class=\"conn{}\" id=\"conn-{i}\" data-class=\"{}\"><td class=\"mono nw\" data-key=\"{i}\" title=\"{}\">{}</td><td class=\"mono nw\">{} → {}</td><td class=\"nw\"><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td class=\"nw\">{}</td><td class=\"nw\">{}</td><td class=\"why\" title=\"{}\">{}</td><td class=\"mono where\">{} frame {}{ladder}</td></tr>",
            if v.class.is_failure() { "" } else { " ok-row" },
            v.class.id(),
            rfc3339_ns(j.start_ns),
            time_of_day(j.start_ns),
            esc(&j.client.to_string()),
            esc(&j.server.to_string()),
            class_color(v.class),
            v.class.id(),
            closed_short(v),
            esc(&key_timing(v)),
            esc(&v.explanation),
            esc(short(&v.explanation)),
            esc(&j.capture),
            j.first_frame
        )?;
    }
    writeln!(out, "</tbody>\n</table></div>\n</section>")
}

fn write_ladders(out: &mut dyn Write, f: &Findings, order: &[&Judged]) -> io::Result<()> {
    let drawn = f.html_ladders.kept.len();
    if drawn == 0 {
        return Ok(());
    }
    writeln!(out, "<section id=\"ladders\">\n<h2>Ladder diagrams</h2>")?;
    if (drawn as u64) < f.html_ladders.offered {
        writeln!(
            out,
            "<p id=\"ladder-cap\">The first {drawn} of {} failing connections in time order are drawn; <code>rstscope explain INPUT FRAME</code> draws any other.</p>",
            f.html_ladders.offered
        )?;
    } else {
        writeln!(
            out,
            "<p>Every failing connection, in time order: each event at its time from the connection's start.</p>"
        )?;
    }
    // The first ladder of each class starts open, as the text report details the first
    // connection of each class.
    let mut opened = std::collections::BTreeSet::new();
    for (i, j) in order.iter().enumerate() {
        let Some(ladder) = f.html_ladders.get(j) else {
            continue;
        };
        let v = &j.verdict;
        writeln!(
            out,
            "<details class=\"ladder\" id=\"ladder-{i}\" data-class=\"{}\"{}><summary><span class=\"swatch\" style=\"background:{}\"></span><span class=\"mono\">{}  {} → {}</span> <code>{}</code> ({} frame {})</summary>",
            v.class.id(),
            if opened.insert(v.class) { " open" } else { "" },
            class_color(v.class),
            time_of_day(j.start_ns),
            esc(&j.client.to_string()),
            esc(&j.server.to_string()),
            v.class.id(),
            esc(&j.capture),
            j.first_frame
        )?;
        write_ladder_svg(out, j, ladder)?;
        write_verdict(out, v)?;
        writeln!(out, "</details>")?;
    }
    writeln!(out, "</section>")
}

/// The client's column on the left, the server's on the right, one row per event with its
/// time from the connection's start; arrows point from the sender. Events of the connection
/// itself (idle periods, the capture's end) sit between the columns.
fn write_ladder_svg(out: &mut dyn Write, j: &Judged, ladder: &Ladder) -> io::Result<()> {
    const W: f64 = 900.0;
    const ROW: f64 = 22.0;
    const HEAD: f64 = 46.0;
    const X_TIME: f64 = 104.0;
    const X_CLIENT: f64 = 230.0;
    const X_SERVER: f64 = 770.0;
    /// Characters of a label that fit between the columns.
    const LABEL: usize = 84;
    let rows = ladder.rungs.len() + usize::from(ladder.omitted > 0);
    let h = HEAD + rows as f64 * ROW + 8.0;
    writeln!(
        out,
        "<svg class=\"ladder\" viewBox=\"0 0 {W} {h}\" width=\"{W}\" height=\"{h}\" role=\"img\" aria-label=\"Ladder diagram of {} to {}\">",
        esc(&j.client.to_string()),
        esc(&j.server.to_string())
    )?;
    writeln!(
        out,
        "<text x=\"{X_CLIENT}\" y=\"16\" text-anchor=\"middle\" font-weight=\"600\">client {}</text><text x=\"{X_SERVER}\" y=\"16\" text-anchor=\"middle\" font-weight=\"600\">server {}</text>",
        esc(&j.client.to_string()),
        esc(&j.server.to_string())
    )?;
    writeln!(
        out,
        "<line x1=\"{X_CLIENT}\" y1=\"24\" x2=\"{X_CLIENT}\" y2=\"{}\" stroke=\"#999\" stroke-width=\"2\"/><line x1=\"{X_SERVER}\" y1=\"24\" x2=\"{X_SERVER}\" y2=\"{}\" stroke=\"#999\" stroke-width=\"2\"/>",
        h - 4.0,
        h - 4.0
    )?;
    let mut y = HEAD;
    for (n, r) in ladder.rungs.iter().enumerate() {
        if ladder.omitted > 0 && n == RUNG_CAP / 2 {
            writeln!(
                out,
                "<text class=\"note\" x=\"{}\" y=\"{y}\" text-anchor=\"middle\">… {} events not drawn …</text>",
                (X_CLIENT + X_SERVER) / 2.0,
                ladder.omitted
            )?;
            y += ROW;
        }
        let (tone, color) = match r.tone {
            Tone::Plain => ("plain", "#555"),
            Tone::Close => ("close", "#c77700"),
            Tone::Fault => ("fault", "#c62828"),
        };
        let label = esc(&clip(&r.what, LABEL));
        write!(
            out,
            "<g class=\"rung tone-{tone}\"><title>{}</title><text class=\"t\" x=\"{X_TIME}\" y=\"{y}\" text-anchor=\"end\">{}</text>",
            esc(&r.what),
            relative(r.ts_ns - ladder.start_ns)
        )?;
        let arrow_y = y + 6.0;
        match r.from {
            Some(Side::Client) => write!(
                out,
                "<text x=\"{}\" y=\"{y}\">{label}</text><line x1=\"{X_CLIENT}\" y1=\"{arrow_y}\" x2=\"{}\" y2=\"{arrow_y}\" stroke=\"{color}\" stroke-width=\"1.5\"/><polygon points=\"{X_SERVER},{arrow_y} {},{} {},{}\" fill=\"{color}\"/>",
                X_CLIENT + 8.0,
                X_SERVER - 8.0,
                X_SERVER - 9.0,
                arrow_y - 4.0,
                X_SERVER - 9.0,
                arrow_y + 4.0
            )?,
            Some(Side::Server) => write!(
                out,
                "<text x=\"{}\" y=\"{y}\" text-anchor=\"end\">{label}</text><line x1=\"{X_SERVER}\" y1=\"{arrow_y}\" x2=\"{}\" y2=\"{arrow_y}\" stroke=\"{color}\" stroke-width=\"1.5\"/><polygon points=\"{X_CLIENT},{arrow_y} {},{} {},{}\" fill=\"{color}\"/>",
                X_SERVER - 8.0,
                X_CLIENT + 8.0,
                X_CLIENT + 9.0,
                arrow_y - 4.0,
                X_CLIENT + 9.0,
                arrow_y + 4.0
            )?,
            None => write!(
                out,
                "<text class=\"note\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
                (X_CLIENT + X_SERVER) / 2.0,
                y + 4.0
            )?,
        }
        writeln!(out, "</g>")?;
        y += ROW;
    }
    writeln!(out, "</svg>")
}

/// The verdict under a ladder: class, explanation, what proxies print, every request.
fn write_verdict(out: &mut dyn Write, v: &Verdict) -> io::Result<()> {
    writeln!(
        out,
        "<div class=\"verdict\"><p><strong>Verdict:</strong> <code>{}</code> ({}, phase {}){}</p>",
        v.class.id(),
        v.confidence.id(),
        v.phase.id(),
        v.timeout_match
            .as_ref()
            .map(|m| format!("; matches {}", esc(m)))
            .unwrap_or_default()
    )?;
    writeln!(out, "<p>{}</p>", esc(&v.explanation))?;
    if v.rst_from_middlebox {
        writeln!(out, "<p>{}</p>", esc(super::RST_FROM_MIDDLEBOX))?;
    }
    if let Some(p) = &v.proxies {
        writeln!(
            out,
            "<dl><dt>Envoy</dt><dd>{}</dd><dt>nginx</dt><dd>{}</dd><dt>HAProxy</dt><dd>{}</dd></dl>",
            esc(&p.envoy),
            esc(&p.nginx),
            esc(&p.haproxy)
        )?;
    }
    if !v.requests.is_empty() {
        writeln!(out, "<ul class=\"requests\">")?;
        for r in &v.requests {
            writeln!(
                out,
                "<li><code>{} {}</code> → {} ({}{})</li>",
                esc(r.method.as_deref().unwrap_or("?")),
                esc(r.path.as_deref().unwrap_or("?")),
                r.status.map_or("no status".to_string(), |s| s.to_string()),
                esc(r.outcome),
                r.time_to_first_byte_ms
                    .map(|t| format!(", first byte after {t:.3} ms"))
                    .unwrap_or_default()
            )?;
        }
        writeln!(out, "</ul>")?;
    }
    writeln!(out, "</div>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup_from_captures() {
        let hostile = "<script>alert('x')</script>\"&\u{0}\r";
        let e = esc(hostile);
        assert!(!e.contains('<') && !e.contains('>') && !e.contains('"') && !e.contains('\''));
        assert_eq!(
            e,
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;\u{fffd}\u{fffd}"
        );
    }

    #[test]
    fn ladders_keep_the_first_in_time_order_whatever_order_they_come_in() {
        let ladder = |start_ns| Ladder {
            start_ns,
            rungs: Vec::new(),
            omitted: 0,
        };
        // Two inputs, each offered connections out of time order (as they finish), more
        // than the cap between them.
        let (mut a, mut b) = (Ladders::default(), Ladders::default());
        let total = LADDER_CAP as i64 + 300;
        for n in 0..total {
            let start = (n * 7919) % total;
            let (set, capture) = if n % 2 == 0 {
                (&mut a, "a.pcap")
            } else {
                (&mut b, "b.pcap")
            };
            set.offered += 1;
            set.insert((start, capture.to_string(), 1), ladder(start));
        }
        a.merge(b);
        assert_eq!(a.offered, total as u64);
        assert_eq!(a.kept.len(), LADDER_CAP);
        let starts: Vec<i64> = a.kept.keys().map(|(s, _, _)| *s).collect();
        assert_eq!(starts, (0..LADDER_CAP as i64).collect::<Vec<_>>());
    }

    #[test]
    fn every_class_has_its_own_colour() {
        let mut colours: Vec<&str> = Class::ALL.iter().map(|c| class_color(*c)).collect();
        colours.sort();
        colours.dedup();
        assert_eq!(colours.len(), Class::ALL.len());
    }
}
