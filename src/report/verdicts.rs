//! The default report: the incident summary, then the failing connections with their
//! verdicts; and the per-connection machine contract (`--format ndjson`).

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use super::clip;
use crate::classify::{Class, CloseKind, Judgement, Timings, Verdict};
use crate::detect::Detector;
use crate::flow::{ConnectionRecord, Endpoint, Side};
use crate::timefmt::rfc3339_ns;

/// A connection with its verdict, as kept for the report.
pub struct Judged {
    pub capture: String,
    pub first_frame: u64,
    pub client: Endpoint,
    pub server: Endpoint,
    pub start_ns: i64,
    pub end_ns: i64,
    pub verdict: Verdict,
}

impl Judged {
    pub fn new(capture: &str, rec: &ConnectionRecord<Detector>, verdict: Verdict) -> Self {
        Judged {
            capture: capture.to_string(),
            first_frame: rec.first_frame,
            client: rec.client,
            server: rec.server,
            start_ns: rec.start_ns,
            end_ns: rec.end_ns,
            verdict,
        }
    }
}

/// What the summary counts of a connection, without what only its listing needs: a
/// connection that is not listed travels from the worker that judged it as these few facts.
pub struct Tally {
    server: Endpoint,
    start_ns: i64,
    class: Class,
    longest_reuse_idle_ms: Option<f64>,
    /// The idle time the class is about: before the close (`idle_close`) or before the
    /// request that raced it (`keepalive_race`).
    idle_ms: Option<f64>,
    server_errors: Vec<u16>,
    timeout_match: Option<String>,
}

impl Tally {
    pub fn of(server: Endpoint, start_ns: i64, v: &Verdict) -> Self {
        Self::of_parts(
            server,
            start_ns,
            v.class,
            &v.timings,
            v.longest_reuse_idle_ms,
            &v.server_errors,
            v.timeout_match.as_deref(),
        )
    }

    /// [`Self::of`] a connection only judged, whose verdict was never completed.
    pub fn of_judgement(server: Endpoint, start_ns: i64, j: &Judgement) -> Self {
        Self::of_parts(
            server,
            start_ns,
            j.class(),
            j.timings(),
            j.longest_reuse_idle_ms(),
            j.server_errors(),
            j.timeout_match(),
        )
    }

    fn of_parts(
        server: Endpoint,
        start_ns: i64,
        class: Class,
        timings: &Timings,
        longest_reuse_idle_ms: Option<f64>,
        server_errors: &[u16],
        timeout_match: Option<&str>,
    ) -> Self {
        let idle_ms = match class {
            Class::IdleClose => timings.idle_before_close_ms,
            Class::KeepaliveRace => timings.idle_before_request_ms,
            _ => None,
        };
        Tally {
            server,
            start_ns,
            class,
            longest_reuse_idle_ms,
            idle_ms,
            server_errors: server_errors.to_vec(),
            timeout_match: idle_ms.and(timeout_match).map(str::to_string),
        }
    }
}

/// Counts of one class at one server endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClassCount {
    pub(crate) count: u64,
    pub(crate) first_ns: i64,
    pub(crate) last_ns: i64,
}

/// What the summary needs, gathered connection by connection (memory: one entry per server
/// endpoint and class, plus the failing connections kept for the listing).
#[derive(Default)]
pub struct Findings {
    pub connections: u64,
    pub failing: u64,
    pub(crate) by_server: BTreeMap<(Endpoint, Class), ClassCount>,
    server_errors: BTreeMap<(Endpoint, u16), u64>,
    /// Observed idle times before a server's close or a race, seconds, per server.
    idle_closes: BTreeMap<Endpoint, Vec<f64>>,
    matches: BTreeMap<Endpoint, String>,
    /// The longest idle time after which clients reused a connection to each server, seconds.
    reuse_idle: BTreeMap<Endpoint, f64>,
    races: BTreeMap<Endpoint, u64>,
    /// Failing connections kept for the listing, in order: at most `listing_cap` of them.
    pub kept: Vec<Judged>,
    /// How many connections the listing keeps (None: all). Each kept one holds about a
    /// kilobyte until the report is written, so a capture of millions of failing connections
    /// would otherwise hold gigabytes.
    pub listing_cap: Option<usize>,
    /// Connections counted in the summary but left out of the listing by `listing_cap`.
    pub unlisted: u64,
    /// Connections the live-connection cap cut short (their verdicts are partial).
    pub evicted: u64,
    /// Representative explanation per (class, server): the first one seen.
    examples: BTreeMap<(Class, Endpoint), String>,
    /// The ladder diagram of the first connection of each failing class, for markdown.
    pub ladders: BTreeMap<Class, String>,
    /// Failing connections per second of capture time (bounded by the capture's span in
    /// seconds), for the timeline.
    failures_per_second: BTreeMap<i64, u64>,
    /// The ladders of the first failing connections in time order, for html (filled only
    /// when that format is asked for).
    pub html_ladders: super::html::Ladders,
}

impl Findings {
    /// Findings whose listing keeps at most `cap` connections.
    pub fn listing_at_most(cap: usize) -> Self {
        Findings {
            listing_cap: Some(cap),
            ..Findings::default()
        }
    }

    /// Counts a judged connection and keeps it for the listing when it failed (or with
    /// `keep_all`), within the listing cap.
    pub fn add(&mut self, j: Judged, keep_all: bool) {
        self.count(Tally::of(j.server, j.start_ns, &j.verdict));
        let v = &j.verdict;
        if v.class.is_failure() {
            self.examples
                .entry((v.class, j.server))
                .or_insert_with(|| v.explanation.clone());
        }
        if v.class.is_failure() || keep_all {
            if self.listing_cap.is_none_or(|cap| self.kept.len() < cap) {
                self.kept.push(j);
            } else {
                self.unlisted += 1;
            }
        }
    }

    /// Counts a connection in the summary without listing it.
    pub fn count(&mut self, t: Tally) {
        self.connections += 1;
        let e = self
            .by_server
            .entry((t.server, t.class))
            .or_insert(ClassCount {
                count: 0,
                first_ns: t.start_ns,
                last_ns: t.start_ns,
            });
        e.count += 1;
        e.first_ns = e.first_ns.min(t.start_ns);
        e.last_ns = e.last_ns.max(t.start_ns);
        if let Some(ms) = t.longest_reuse_idle_ms {
            let e = self.reuse_idle.entry(t.server).or_insert(0.0);
            *e = e.max(ms / 1000.0);
        }
        if t.class == Class::KeepaliveRace {
            *self.races.entry(t.server).or_default() += 1;
            if let Some(ms) = t.idle_ms {
                let e = self.reuse_idle.entry(t.server).or_insert(0.0);
                *e = e.max(ms / 1000.0);
            }
        }
        for s in &t.server_errors {
            *self.server_errors.entry((t.server, *s)).or_default() += 1;
        }
        if let Some(ms) = t.idle_ms {
            self.idle_closes
                .entry(t.server)
                .or_default()
                .push(ms / 1000.0);
            if let Some(m) = t.timeout_match {
                self.matches.entry(t.server).or_insert(m);
            }
        }
        if t.class.is_failure() {
            self.failing += 1;
            *self
                .failures_per_second
                .entry(t.start_ns.div_euclid(1_000_000_000))
                .or_default() += 1;
        }
    }

    /// Adds another input's findings (kept connections stay in input order).
    pub fn merge(&mut self, other: Findings) {
        self.connections += other.connections;
        self.failing += other.failing;
        for (k, v) in other.by_server {
            match self.by_server.get_mut(&k) {
                Some(e) => {
                    e.count += v.count;
                    e.first_ns = e.first_ns.min(v.first_ns);
                    e.last_ns = e.last_ns.max(v.last_ns);
                }
                None => {
                    self.by_server.insert(k, v);
                }
            }
        }
        for (k, v) in other.server_errors {
            *self.server_errors.entry(k).or_default() += v;
        }
        for (k, mut v) in other.idle_closes {
            self.idle_closes.entry(k).or_default().append(&mut v);
        }
        for (k, v) in other.matches {
            self.matches.entry(k).or_insert(v);
        }
        for (k, v) in other.reuse_idle {
            let e = self.reuse_idle.entry(k).or_insert(0.0);
            *e = e.max(v);
        }
        for (k, v) in other.races {
            *self.races.entry(k).or_default() += v;
        }
        for (k, v) in other.examples {
            self.examples.entry(k).or_insert(v);
        }
        for (k, v) in other.ladders {
            self.ladders.entry(k).or_insert(v);
        }
        for (k, v) in other.failures_per_second {
            *self.failures_per_second.entry(k).or_default() += v;
        }
        self.html_ladders.merge(other.html_ladders);
        self.kept.extend(other.kept);
        self.unlisted += other.unlisted;
        self.evicted += other.evicted;
        if let Some(cap) = self.listing_cap.or(other.listing_cap)
            && self.kept.len() > cap
        {
            self.unlisted += (self.kept.len() - cap) as u64;
            self.kept.truncate(cap);
        }
    }

    /// The failing (server, class) counts, most connections first.
    pub(crate) fn failing_ranked(&self) -> Vec<(&(Endpoint, Class), &ClassCount)> {
        let mut failing: Vec<_> = self
            .by_server
            .iter()
            .filter(|((_, c), _)| c.is_failure())
            .collect();
        failing.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        failing
    }

    /// The explanation of the first connection of `class` to `server`.
    pub(crate) fn example(&self, class: Class, server: Endpoint) -> &str {
        self.examples
            .get(&(class, server))
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The incident summary.
    pub fn write_summary(&self, out: &mut dyn Write, inputs: usize) -> io::Result<()> {
        writeln!(
            out,
            "rstscope: {} TCP connections in {inputs} capture{}, {} failing",
            self.connections,
            if inputs == 1 { "" } else { "s" },
            self.failing
        )?;
        if self.evicted > 0 {
            writeln!(
                out,
                "  {} connections were cut short by the live-connection cap (--max-connections): their verdicts rest on the packets seen before",
                self.evicted
            )?;
        }
        if self.unlisted > 0 {
            writeln!(
                out,
                "  {} connections are counted here but not listed below (--max-listed)",
                self.unlisted
            )?;
        }
        // Top findings: the failing classes with the most connections, per server.
        let failing = self.failing_ranked();
        if !failing.is_empty() {
            writeln!(out, "\nTop findings:")?;
            for (i, ((server, class), n)) in failing.iter().take(3).enumerate() {
                let example = self
                    .examples
                    .get(&(*class, *server))
                    .map(String::as_str)
                    .unwrap_or_default();
                writeln!(
                    out,
                    "  {}. {} x{} to {}: {}",
                    i + 1,
                    class.id(),
                    n.count,
                    server,
                    example
                )?;
            }
        }
        writeln!(out, "\nBy server endpoint:")?;
        let mut last: Option<Endpoint> = None;
        for ((server, class), n) in &self.by_server {
            if last != Some(*server) {
                writeln!(out, "  {server}")?;
                last = Some(*server);
            }
            writeln!(
                out,
                "    {:<26} {:>6}   first {}  last {}",
                class.id(),
                n.count,
                time_of_day(n.first_ns),
                time_of_day(n.last_ns)
            )?;
        }
        self.write_timeline(out)?;
        if !self.server_errors.is_empty() {
            writeln!(
                out,
                "\nHTTP 5xx responses (the symptom a proxy's client sees):"
            )?;
            for ((server, status), n) in &self.server_errors {
                writeln!(out, "  {server}  {status} x{n}")?;
            }
        }
        if !self.idle_closes.is_empty() {
            writeln!(out, "\nIdle timeouts observed:")?;
            for (server, times) in &self.idle_closes {
                let mut t = times.clone();
                t.sort_by(f64::total_cmp);
                let median = t[t.len() / 2];
                let spread = t[t.len() - 1] - t[0];
                write!(
                    out,
                    "  {server} closes idle connections after {median:.1} s (median of {}, spread {spread:.2} s)",
                    t.len()
                )?;
                match self.matches.get(server) {
                    Some(m) => writeln!(out, ": matches {m}")?,
                    None => writeln!(out)?,
                }
                // The root cause of keep-alive races, and the alignment that fixes it,
                // computed from this capture.
                let reuse = self.reuse_idle.get(server).copied().unwrap_or(0.0);
                let races = self.races.get(server).copied().unwrap_or(0);
                if races > 0 || reuse >= median {
                    writeln!(
                        out,
                        "    clients reused connections to it after up to {reuse:.1} s idle ({races} keep-alive race{}): the server's idle timeout is shorter than the clients'. Set the client or proxy pool idle timeout below {:.1} s, or the server's keep-alive timeout above {:.0} s.",
                        if races == 1 { "" } else { "s" },
                        (median - 0.5).max(0.1),
                        reuse.ceil() + 1.0
                    )?;
                }
            }
        }
        writeln!(out)
    }
}

impl Findings {
    /// Failures over capture time: at most 12 rows, each a span of whole seconds.
    fn write_timeline(&self, out: &mut dyn Write) -> io::Result<()> {
        let (Some((&first, _)), Some((&last, _))) = (
            self.failures_per_second.first_key_value(),
            self.failures_per_second.last_key_value(),
        ) else {
            return Ok(());
        };
        let span = last - first + 1;
        let step = (span + 11) / 12;
        let max = self
            .failures_per_second
            .values()
            .copied()
            .max()
            .unwrap_or(1)
            .max(1);
        writeln!(out, "\nFailures over capture time ({step} s per row):")?;
        let mut t = first;
        while t <= last {
            let n: u64 = self
                .failures_per_second
                .range(t..t + step)
                .map(|(_, n)| n)
                .sum();
            let bar = "#".repeat(((n * 40).div_ceil(max * step as u64)) as usize);
            writeln!(out, "  {}  {n:>6}  {bar}", time_of_day(t * 1_000_000_000))?;
            t += step;
        }
        Ok(())
    }
}

pub(crate) fn time_of_day(ts_ns: i64) -> String {
    let t = rfc3339_ns(ts_ns);
    t.get(11..23).unwrap_or(&t).to_string()
}

fn side_name(s: Option<Side>) -> &'static str {
    match s {
        Some(Side::Client) => "client",
        Some(Side::Server) => "server",
        None => "none",
    }
}

fn close_name(c: CloseKind) -> &'static str {
    match c {
        CloseKind::Fin => "fin",
        CloseKind::Rst => "rst",
        CloseKind::None => "none",
    }
}

/// One connection, for people.
pub fn write_connection(out: &mut dyn Write, j: &Judged) -> io::Result<()> {
    let v = &j.verdict;
    let closed = match v.closed_by {
        Some(side) => format!(
            "closed first by the {} ({})",
            side_name(Some(side)),
            close_name(v.close).to_uppercase()
        ),
        None => "no FIN or RST".to_string(),
    };
    writeln!(
        out,
        "{}  {} -> {}  {} ({}, {}), {closed}",
        time_of_day(j.start_ns),
        j.client,
        j.server,
        v.class.id(),
        v.confidence.id(),
        v.phase.id(),
    )?;
    writeln!(out, "    {}", v.explanation)?;
    if v.rst_from_middlebox {
        writeln!(out, "    {}", super::RST_FROM_MIDDLEBOX)?;
    }
    if let Some(p) = &v.proxies {
        writeln!(out, "    Envoy:   {}", p.envoy)?;
        writeln!(out, "    nginx:   {}", p.nginx)?;
        writeln!(out, "    HAProxy: {}", p.haproxy)?;
    }
    writeln!(out, "    ({} frame {})", j.capture, j.first_frame)
}

/// The stable per-connection contract of `--format ndjson`.
#[derive(Serialize)]
struct Line<'a> {
    capture: &'a str,
    first_frame: u64,
    client: String,
    server: String,
    class: &'static str,
    phase: crate::classify::Phase,
    confidence: crate::classify::Confidence,
    closed_by: &'static str,
    close: &'static str,
    start: String,
    duration_ms: f64,
    explanation: &'a str,
    rst_from_middlebox: bool,
    protocol: &'a Option<String>,
    timings: &'a crate::classify::Timings,
    tls: &'a crate::classify::TlsInfo,
    h2: &'a crate::classify::H2Info,
    requests: &'a [crate::classify::RequestOutcome],
    server_errors: &'a [u16],
    timeout_match: &'a Option<String>,
    proxies: &'a Option<crate::classify::vocabulary::ProxyMessages>,
}

fn line(j: &Judged) -> Line<'_> {
    let v = &j.verdict;
    Line {
        capture: &j.capture,
        first_frame: j.first_frame,
        client: j.client.to_string(),
        server: j.server.to_string(),
        class: v.class.id(),
        phase: v.phase,
        confidence: v.confidence,
        closed_by: side_name(v.closed_by),
        close: close_name(v.close),
        start: rfc3339_ns(j.start_ns),
        duration_ms: (j.end_ns - j.start_ns) as f64 / 1e6,
        explanation: &v.explanation,
        rst_from_middlebox: v.rst_from_middlebox,
        protocol: &v.protocol,
        timings: &v.timings,
        tls: &v.tls,
        h2: &v.h2,
        requests: &v.requests,
        server_errors: &v.server_errors,
        timeout_match: &v.timeout_match,
        proxies: &v.proxies,
    }
}

pub fn write_ndjson(out: &mut dyn Write, j: &Judged) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &line(j))?;
    writeln!(out)
}

/// The summary as data, for `--format json`.
#[derive(Serialize)]
pub struct SummaryJson {
    pub connections: u64,
    pub failing: u64,
    pub by_server: Vec<ServerClassJson>,
    pub server_errors: Vec<ServerErrorJson>,
    pub idle_timeouts: Vec<IdleTimeoutJson>,
    /// Connections the live-connection cap cut short (absent when none).
    #[serde(skip_serializing_if = "is_zero")]
    pub evicted: u64,
    /// Connections counted but not listed because of --max-listed (absent when none).
    #[serde(skip_serializing_if = "is_zero")]
    pub unlisted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize)]
pub struct ServerClassJson {
    pub server: String,
    pub class: &'static str,
    pub count: u64,
    pub first: String,
    pub last: String,
}

#[derive(Serialize)]
pub struct ServerErrorJson {
    pub server: String,
    pub status: u16,
    pub count: u64,
}

#[derive(Serialize)]
pub struct IdleTimeoutJson {
    pub server: String,
    pub median_s: f64,
    pub spread_s: f64,
    pub samples: usize,
    pub matches: Option<String>,
    pub longest_client_reuse_idle_s: Option<f64>,
    pub keepalive_races: u64,
}

impl Findings {
    pub fn summary_json(&self) -> SummaryJson {
        SummaryJson {
            connections: self.connections,
            failing: self.failing,
            by_server: self
                .by_server
                .iter()
                .map(|((server, class), n)| ServerClassJson {
                    server: server.to_string(),
                    class: class.id(),
                    count: n.count,
                    first: rfc3339_ns(n.first_ns),
                    last: rfc3339_ns(n.last_ns),
                })
                .collect(),
            server_errors: self
                .server_errors
                .iter()
                .map(|((server, status), count)| ServerErrorJson {
                    server: server.to_string(),
                    status: *status,
                    count: *count,
                })
                .collect(),
            idle_timeouts: self
                .idle_closes
                .iter()
                .map(|(server, times)| {
                    let mut t = times.clone();
                    t.sort_by(f64::total_cmp);
                    IdleTimeoutJson {
                        server: server.to_string(),
                        median_s: t[t.len() / 2],
                        spread_s: t[t.len() - 1] - t[0],
                        samples: t.len(),
                        matches: self.matches.get(server).cloned(),
                        longest_client_reuse_idle_s: self.reuse_idle.get(server).copied(),
                        keepalive_races: self.races.get(server).copied().unwrap_or(0),
                    }
                })
                .collect(),
            evicted: self.evicted,
            unlisted: self.unlisted,
        }
    }
}

/// One document: the summary and the connections.
pub fn write_json(out: &mut dyn Write, f: &Findings) -> io::Result<()> {
    let connections: Vec<Line<'_>> = f.kept.iter().map(line).collect();
    #[derive(Serialize)]
    struct Doc<'a> {
        summary: SummaryJson,
        connections: Vec<Line<'a>>,
    }
    serde_json::to_writer_pretty(
        &mut *out,
        &Doc {
            summary: f.summary_json(),
            connections,
        },
    )?;
    writeln!(out)
}

/// The flat columns of `--format csv`, one row per connection. Lists are joined with ';'.
#[derive(Serialize)]
struct CsvRow<'a> {
    capture: &'a str,
    first_frame: u64,
    start: String,
    duration_ms: f64,
    client: String,
    server: String,
    class: &'static str,
    phase: &'static str,
    confidence: &'static str,
    closed_by: &'static str,
    close: &'static str,
    rst_from_middlebox: bool,
    protocol: String,
    tls_version: String,
    sni: String,
    alpn_offered: String,
    alpn_selected: String,
    tls_alert: String,
    tls_alert_from: &'static str,
    h2_goaway: String,
    h2_rst_stream: String,
    statuses: String,
    syn_to_syn_ack_ms: Option<f64>,
    request_to_close_ms: Option<f64>,
    idle_before_request_ms: Option<f64>,
    timeout_match: String,
    explanation: &'a str,
}

pub fn write_csv(out: &mut dyn Write, f: &Findings) -> io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    for j in &f.kept {
        let v = &j.verdict;
        let alert = v.tls.alert.as_ref();
        w.serialize(CsvRow {
            capture: &j.capture,
            first_frame: j.first_frame,
            start: rfc3339_ns(j.start_ns),
            duration_ms: (j.end_ns - j.start_ns) as f64 / 1e6,
            client: j.client.to_string(),
            server: j.server.to_string(),
            class: v.class.id(),
            phase: v.phase.id(),
            confidence: v.confidence.id(),
            closed_by: side_name(v.closed_by),
            close: close_name(v.close),
            rst_from_middlebox: v.rst_from_middlebox,
            protocol: v.protocol.clone().unwrap_or_default(),
            tls_version: v.tls.version.clone().unwrap_or_default(),
            sni: v.tls.sni.clone().unwrap_or_default(),
            alpn_offered: v.tls.alpn_offered.join(";"),
            alpn_selected: v.tls.alpn_selected.clone().unwrap_or_default(),
            tls_alert: alert
                .and_then(|a| a.description.clone())
                .unwrap_or_else(|| {
                    if alert.is_some() {
                        "encrypted".into()
                    } else {
                        String::new()
                    }
                }),
            tls_alert_from: alert.map_or("", |a| side_name(Some(a.from))),
            h2_goaway: v
                .h2
                .goaway
                .iter()
                .map(|g| {
                    format!(
                        "{}:{}:{}",
                        side_name(Some(g.from)),
                        g.last_stream_id.unwrap_or(0),
                        g.error_code
                    )
                })
                .collect::<Vec<_>>()
                .join(";"),
            h2_rst_stream: v
                .h2
                .rst_stream
                .iter()
                .map(|r| {
                    format!(
                        "{}:{}:{}",
                        side_name(Some(r.from)),
                        r.stream_id.unwrap_or(0),
                        r.error_code
                    )
                })
                .collect::<Vec<_>>()
                .join(";"),
            statuses: v
                .requests
                .iter()
                .map(|r| r.status.map_or("-".to_string(), |s| s.to_string()))
                .collect::<Vec<_>>()
                .join(";"),
            syn_to_syn_ack_ms: v.timings.syn_to_syn_ack_ms,
            request_to_close_ms: v.timings.request_to_close_ms,
            idle_before_request_ms: v.timings.idle_before_request_ms,
            timeout_match: v.timeout_match.clone().unwrap_or_default(),
            explanation: &v.explanation,
        })
        .map_err(io::Error::other)?;
    }
    w.flush()
}

/// ANSI colours for the terminal, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// Failures in red, the benign idle close in yellow, ok in green.
    fn class(self, c: Class, width: usize) -> String {
        let text = format!("{:<width$}", c.id());
        let code = match c {
            Class::Ok => "32",
            Class::IdleClose => "33",
            Class::IncompleteCapture => "35",
            _ => "1;31",
        };
        self.paint(code, &text)
    }

    fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
}

/// Connections in order of their start, then capture and first frame.
pub(crate) fn in_time_order(kept: &[Judged]) -> Vec<&Judged> {
    let mut order: Vec<&Judged> = kept.iter().collect();
    order.sort_by(|a, b| {
        (a.start_ns, &a.capture, a.first_frame).cmp(&(b.start_ns, &b.capture, b.first_frame))
    });
    order
}

/// "server FIN", "client RST", or "-".
pub(crate) fn closed_short(v: &Verdict) -> String {
    match v.closed_by {
        Some(side) => format!(
            "{} {}",
            side_name(Some(side)),
            close_name(v.close).to_uppercase()
        ),
        None => "-".into(),
    }
}

/// The one timing that matters most for the class.
pub(crate) fn key_timing(v: &Verdict) -> String {
    let t = &v.timings;
    let s = |ms: f64| {
        if ms >= 1000.0 {
            format!("{:.1} s", ms / 1000.0)
        } else {
            format!("{ms:.1} ms")
        }
    };
    match v.class {
        Class::ConnectRefused => t
            .syn_to_syn_ack_ms
            .map(|m| format!("SYN-ACK {}", s(m)))
            .unwrap_or_else(|| "RST to the SYN".into()),
        Class::ConnectTimeout => format!("{} SYNs", t.syn_schedule_ms.len()),
        Class::KeepaliveRace => t
            .idle_before_request_ms
            .map(|m| format!("idle {} before", s(m)))
            .unwrap_or_default(),
        Class::IdleClose => t
            .idle_before_close_ms
            .map(|m| format!("idle {}", s(m)))
            .unwrap_or_default(),
        Class::ResponseTimeout | Class::ClientAbort => t
            .wait_ms
            .or(t.request_to_close_ms)
            .map(|m| format!("waited {}", s(m)))
            .unwrap_or_default(),
        Class::PartialResponseHeaders | Class::TruncatedResponseBody => t
            .first_response_byte_to_close_ms
            .map(|m| format!("response +{}", s(m)))
            .unwrap_or_default(),
        _ => t
            .request_to_close_ms
            .map(|m| format!("request +{}", s(m)))
            .unwrap_or_default(),
    }
}

/// The first clause of an explanation: what happened, without the causes and fixes.
pub(crate) fn short(explanation: &str) -> &str {
    let end = [": ", ". "]
        .iter()
        .filter_map(|sep| explanation.find(sep))
        .min()
        .unwrap_or(explanation.len());
    &explanation[..end]
}

/// The connections as a table fitted to `width` columns (the explanation's first clause takes
/// what is left), in order of time, then the details of the first connection of each class
/// and server.
pub fn write_table(
    out: &mut dyn Write,
    kept: &[Judged],
    width: usize,
    style: Style,
) -> io::Result<()> {
    let kept = in_time_order(kept);
    let ends: Vec<String> = kept
        .iter()
        .map(|j| format!("{} -> {}", j.client, j.server))
        .collect();
    let ends_w = ends
        .iter()
        .map(|e| e.chars().count())
        .max()
        .unwrap_or(0)
        .max(16);
    let class_w = kept
        .iter()
        .map(|j| j.verdict.class.id().len())
        .max()
        .unwrap_or(0)
        .max(5);
    let closed: Vec<String> = kept.iter().map(|j| closed_short(&j.verdict)).collect();
    let timing: Vec<String> = kept.iter().map(|j| key_timing(&j.verdict)).collect();
    let timing_w = timing
        .iter()
        .map(|t| t.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let fixed = 12 + 2 + ends_w + 2 + class_w + 2 + 10 + 2 + timing_w + 2;
    let expl_w = width.saturating_sub(fixed).max(20);
    writeln!(
        out,
        "{}",
        style.bold(&format!(
            "{:<12}  {:<ends_w$}  {:<class_w$}  {:<10}  {:<timing_w$}  {}",
            "TIME", "CLIENT -> SERVER", "CLASS", "CLOSED BY", "TIMING", "WHY"
        ))
    )?;
    for (i, j) in kept.iter().enumerate() {
        writeln!(
            out,
            "{:<12}  {:<ends_w$}  {}  {:<10}  {:<timing_w$}  {}",
            time_of_day(j.start_ns),
            ends[i],
            style.class(j.verdict.class, class_w),
            closed[i],
            timing[i],
            clip(short(&j.verdict.explanation), expl_w)
        )?;
    }
    let mut shown = std::collections::BTreeSet::new();
    let mut header = false;
    for j in kept {
        if !j.verdict.class.is_failure() || !shown.insert((j.verdict.class, j.server)) {
            continue;
        }
        if !header {
            writeln!(out, "\n{}", style.bold("Details (the first connection of each class and server; `rstscope explain INPUT FRAME` shows any one):"))?;
            header = true;
        }
        write_connection(out, j)?;
    }
    Ok(())
}

/// A ticket-ready Markdown report: summary, findings, the table, and one ladder diagram per
/// distinct failure class in a code block.
pub fn write_markdown(out: &mut dyn Write, f: &Findings, inputs: usize) -> io::Result<()> {
    writeln!(out, "# rstscope report\n")?;
    writeln!(
        out,
        "{} TCP connections in {inputs} capture{}, **{} failing**.\n",
        f.connections,
        if inputs == 1 { "" } else { "s" },
        f.failing
    )?;
    let failing = f.failing_ranked();
    if !failing.is_empty() {
        writeln!(out, "## Findings\n")?;
        for (i, ((server, class), n)) in failing.iter().enumerate() {
            let example = f
                .examples
                .get(&(*class, *server))
                .map(String::as_str)
                .unwrap_or_default();
            writeln!(
                out,
                "{}. **`{}`** x{} to `{server}` (first {}, last {}): {example}",
                i + 1,
                class.id(),
                n.count,
                time_of_day(n.first_ns),
                time_of_day(n.last_ns)
            )?;
        }
        writeln!(out)?;
    }
    writeln!(out, "## Connections by server and class\n")?;
    writeln!(out, "| server | class | count | first | last |")?;
    writeln!(out, "|---|---|---:|---|---|")?;
    for ((server, class), n) in &f.by_server {
        writeln!(
            out,
            "| `{server}` | `{}` | {} | {} | {} |",
            class.id(),
            n.count,
            time_of_day(n.first_ns),
            time_of_day(n.last_ns)
        )?;
    }
    writeln!(out)?;
    if !f.server_errors.is_empty() {
        writeln!(
            out,
            "HTTP 5xx responses: {}\n",
            f.server_errors
                .iter()
                .map(|((s, st), n)| format!("`{s}` {st} x{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    if !f.kept.is_empty() {
        writeln!(out, "## Failing connections\n")?;
        writeln!(
            out,
            "| time | client → server | class | closed by | timing | why |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|")?;
        for j in in_time_order(&f.kept) {
            let v = &j.verdict;
            let closed = closed_short(v);
            writeln!(
                out,
                "| {} | `{}` → `{}` | `{}` | {closed} | {} | {} |",
                time_of_day(j.start_ns),
                j.client,
                j.server,
                v.class.id(),
                key_timing(v),
                short(&v.explanation).replace('|', "\\|")
            )?;
        }
        writeln!(out)?;
    }
    for (class, ladder) in &f.ladders {
        writeln!(out, "## `{}`: one connection\n", class.id())?;
        writeln!(out, "```\n{}```\n", ladder)?;
    }
    Ok(())
}
