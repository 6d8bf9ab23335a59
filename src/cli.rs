//! The command line: clap's view of the arguments, turned into a [`Config`] here and nowhere
//! else, then the command run on it.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rayon::prelude::*;

use rstscope::capture::{Input, InputSource, expand_inputs};
use rstscope::classify::{self, Class, classify};
use rstscope::detect::Detector;
use rstscope::flow::{ConnectionRecord, FlowConfig};
use rstscope::pipeline::{InputSummary, analyze, analyze_with_progress};
use rstscope::report;
use rstscope::report::explain::{self, FlowSelector};
use rstscope::report::verdicts::{self, Findings, Judged, Style, Tally};
use rstscope::stats::{self, InputStats};
use rstscope::timefmt::parse_time;

#[derive(Parser, Debug)]
#[command(
    name = "rstscope",
    version,
    about = "Tells, for every TCP connection in a packet capture, why it failed before or while the HTTP response arrived",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: AnalyzeArgs,
}

#[derive(Args, Debug)]
struct AnalyzeArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// Also list the connections that did not fail.
    #[arg(long)]
    all: bool,
    /// List at most N connections (in the order they finished); the summary still counts
    /// all. Each listed connection is held in memory until the report is written.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    max_listed: usize,
    #[command(flatten)]
    filter: FilterArgs,
}

/// Which connections to report (the summary counts only these too).
#[derive(Args, Debug, Default)]
struct FilterArgs {
    /// Only connections to this server: an address, or address:port ([v6]:port).
    #[arg(long, value_name = "HOST[:PORT]")]
    server: Option<String>,
    /// Only connections with this port on either side.
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    /// Only these classes (comma-separated ids, e.g. keepalive_race,reset_before_response).
    #[arg(long, value_name = "ID[,ID...]", value_delimiter = ',')]
    class: Vec<String>,
    /// Only connections that started at or after this capture time (RFC 3339 in UTC, e.g.
    /// 2026-11-21T12:00:15Z, or seconds since the epoch).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only connections that started before this capture time.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
}

/// The filters, validated.
struct Filter {
    server: Option<String>,
    port: Option<u16>,
    classes: Vec<String>,
    since_ns: Option<i64>,
    until_ns: Option<i64>,
}

impl Filter {
    fn new(a: FilterArgs) -> Result<Self, String> {
        let time = |s: Option<String>| -> Result<Option<i64>, String> {
            s.map(|t| parse_time(&t).ok_or(format!("'{t}' is no time: give RFC 3339 in UTC (2026-11-21T12:00:15Z) or seconds since the epoch"))).transpose()
        };
        for c in &a.class {
            if !Class::ALL.iter().any(|k| k.id() == c) {
                return Err(format!(
                    "'{c}' is no class id; the ids are: {}",
                    Class::ALL
                        .iter()
                        .map(|k| k.id())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(Filter {
            server: a.server,
            port: a.port,
            classes: a.class,
            since_ns: time(a.since)?,
            until_ns: time(a.until)?,
        })
    }

    fn keeps(&self, r: &ConnectionRecord<Detector>, class: Class) -> bool {
        let server_ok = self.server.as_ref().is_none_or(|s| {
            let full = r.server.to_string();
            full == *s || r.server.ip.to_string() == s.trim_start_matches('[').trim_end_matches(']')
        });
        server_ok
            && self
                .port
                .is_none_or(|p| r.server.port == p || r.client.port == p)
            && (self.classes.is_empty() || self.classes.iter().any(|c| c == class.id()))
            && self.since_ns.is_none_or(|t| r.start_ns >= t)
            && self.until_ns.is_none_or(|t| r.start_ns < t)
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// What each capture holds: format, link types, time span, packets and bytes, IPv4/IPv6,
    /// TCP/UDP counts, TCP connections, snaplen-cut packets, decode errors.
    Stats(CommonArgs),
    /// Every TCP connection: endpoints, roles, packets and bytes each way, handshake, close.
    Flows(FlowsArgs),
    /// One connection as a ladder diagram (every event at its relative time), then its
    /// verdict, what each proxy prints for it, and the causes and fixes to check.
    Explain(ExplainArgs),
}

#[derive(Args, Debug)]
struct ExplainArgs {
    /// The capture (a file, or - for standard input).
    #[arg(value_name = "INPUT")]
    input: String,
    /// The connection: its frame number as the reports print it ("frame N"), :PORT for the
    /// client's port, CLIENT for the client's ip:port, or CLIENT-SERVER for both endpoints.
    #[arg(value_name = "FLOW")]
    flow: String,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Args, Debug)]
struct CommonArgs {
    /// Capture files, folders (searched recursively for captures, recognised by their magic
    /// bytes), or - for standard input. pcap, pcapng, gzip or zstd compressed.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Threads (default: the number of cores). Several inputs are read in parallel, one thread
    /// each; on one input, the analysis, flows and explain split its connections between them,
    /// with one more thread for merging. An uncompressed pcap or pcapng file is read by all of
    /// them, a chunk each in turn (stats too); compressed input and stdin by one more thread. -j1 runs everything on one thread.
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    jobs: Option<usize>,
    /// No warnings on stderr (errors still set the exit status).
    #[arg(short, long)]
    quiet: bool,
    /// Write the report to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<std::path::PathBuf>,
    /// Colour in the table output: auto (on a terminal, unless NO_COLOR is set), always,
    /// never.
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto, value_name = "WHEN")]
    color: ColorWhen,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Args, Debug)]
struct FlowsArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Limits of the connection engine; all times are capture time.
#[derive(Args, Debug)]
struct EngineArgs {
    /// Seconds without a packet after which a connection's record is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 900.0)]
    idle_timeout: f64,
    /// Live connections kept at once; past it the least recently active are closed early
    /// (and marked so).
    #[arg(long, value_name = "N", default_value_t = 1 << 18)]
    max_connections: usize,
    /// Out-of-order bytes buffered per direction of a connection (each held piece counts
    /// 64 bytes more); past it the hole before them is given up as a gap.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    max_buffer: usize,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// Text for people.
    Table,
    /// One JSON document (stats: an array with one object per input).
    Json,
    /// One JSON object per line (stats: per input; flows and the analysis: per connection).
    Ndjson,
    /// The analysis only: one row per connection, flat columns, with a header.
    Csv,
    /// The analysis only: a ticket-ready report (summary, findings, table, one ladder
    /// diagram per failure class).
    Markdown,
    /// The analysis only: one self-contained page (summary, a chart of failures over time,
    /// a sortable and filterable table, a ladder diagram of each failing connection).
    Html,
}

/// What the command runs with, validated.
struct Config {
    inputs: Vec<String>,
    format: Format,
    output: Option<std::path::PathBuf>,
    /// Whether the table output is coloured.
    color: bool,
    jobs: usize,
    quiet: bool,
    flow: FlowConfig,
}

impl Config {
    fn new(a: CommonArgs, engine: Option<EngineArgs>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut flow = FlowConfig::default();
        if let Some(e) = engine {
            flow.idle_timeout_ns = (e.idle_timeout.max(0.0) * 1e9) as i64;
            flow.max_connections = e.max_connections.max(1);
            flow.max_buffered_per_direction = e.max_buffer;
        }
        // NO_COLOR (https://no-color.org) is honoured unless colour was asked for explicitly.
        let color = match a.color {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => {
                a.output.is_none()
                    && io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        };
        Config {
            inputs: a.inputs,
            format: a.format,
            color,
            output: a.output,
            jobs: a.jobs.unwrap_or(cores).max(1),
            quiet: a.quiet,
            flow,
        }
    }
}

/// Exit statuses: 0 when every input could be read, in whole or in part, and (for the
/// analysis) no connection failed; 1 when failing connections were found; 2 when an input
/// could not be read at all. A closed stdout (`| head`) ends quietly with 0.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Flows(a)) => run_flows(&Config::new(a.common, Some(a.engine))),
        Some(Command::Stats(a)) => run_stats(&Config::new(a, None)),
        Some(Command::Explain(a)) => run_explain(a),
        None => {
            let all = cli.run.all;
            let max_listed = cli.run.max_listed;
            match Filter::new(cli.run.filter) {
                Ok(filter) => run_analysis(
                    &Config::new(cli.run.common, Some(cli.run.engine)),
                    all,
                    max_listed,
                    &filter,
                ),
                Err(e) => {
                    eprintln!("rstscope: {e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rstscope: {e}");
            ExitCode::from(2)
        }
    }
}

/// Expands the inputs, reporting arguments that cannot be read; runs `each` on every input
/// in parallel (results in input order) on a pool of `config.jobs` threads.
fn for_inputs<T: Send>(
    config: &Config,
    each: impl Fn(&Input, usize) -> T + Sync,
) -> io::Result<(Vec<T>, bool)> {
    let (inputs, arg_errors) = expand_inputs(&config.inputs);
    for (arg, e) in &arg_errors {
        eprintln!("rstscope: {arg}: {e}");
    }
    if inputs.is_empty() && arg_errors.is_empty() && !config.quiet {
        eprintln!("rstscope: no capture files found in the given inputs");
    }
    // One input gets every thread as connection-engine shards; several inputs get a thread
    // each.
    let shards = if inputs.len() == 1 { config.jobs } else { 1 };
    let results = map_inputs(config.jobs, &inputs, |_, i| each(i, shards))?;
    Ok((results, !arg_errors.is_empty()))
}

/// `f` of every input, in input order: on this thread when there is only one (its shards
/// have threads of their own, and an idle pool thread only competed with them for the cores
/// as it started), else on a pool of `jobs` threads, one input each at a time.
fn map_inputs<T: Send>(
    jobs: usize,
    inputs: &[Input],
    f: impl Fn(usize, &Input) -> T + Sync + Send,
) -> io::Result<Vec<T>> {
    if inputs.len() <= 1 {
        return Ok(inputs.iter().enumerate().map(|(n, i)| f(n, i)).collect());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .map_err(io::Error::other)?;
    Ok(pool.install(|| {
        inputs
            .par_iter()
            .enumerate()
            .map(|(n, i)| f(n, i))
            .collect()
    }))
}

/// Warns of an input's faults on stderr; returns whether the input could not be read at all
/// (exit status 2). An input cut short or damaged after some packets still gave a result.
fn report_faults(config: &Config, s: &InputStats) -> bool {
    if !config.quiet {
        for e in &s.errors {
            eprintln!(
                "rstscope: {}: at byte offset {}: {}",
                s.path, e.offset, e.message
            );
        }
    }
    s.unreadable()
}

/// Refuses the formats that exist only for the analysis (flat rows, reports).
fn csv_only_for_analysis(config: &Config, command: &str) -> Option<ExitCode> {
    let name = match config.format {
        Format::Csv => "csv",
        Format::Markdown => "markdown",
        Format::Html => "html",
        Format::Table | Format::Json | Format::Ndjson => return None,
    };
    eprintln!(
        "rstscope: --format {name} is for the analysis (rstscope <INPUT>...), not for {command}"
    );
    Some(ExitCode::from(2))
}

fn run_stats(config: &Config) -> io::Result<ExitCode> {
    if let Some(code) = csv_only_for_analysis(config, "stats") {
        return Ok(code);
    }
    let (results, mut failed) = for_inputs(config, stats::collect)?;
    for s in &results {
        failed |= report_faults(config, s);
    }
    let mut out = open_output(config)?;
    match config.format {
        Format::Table => {
            for s in &results {
                stats::write_text(&mut out, s)?;
            }
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &results)?;
            writeln!(out)?;
        }
        Format::Ndjson => {
            for s in &results {
                serde_json::to_writer(&mut out, s)?;
                writeln!(out)?;
            }
        }
        Format::Csv | Format::Markdown | Format::Html => unreachable!("rejected before reading"),
    }
    out.flush()?;
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_flows(config: &Config) -> io::Result<ExitCode> {
    if let Some(code) = csv_only_for_analysis(config, "flows") {
        return Ok(code);
    }
    let (inputs, arg_errors) = expand_inputs(&config.inputs);
    for (arg, e) in &arg_errors {
        eprintln!("rstscope: {arg}: {e}");
    }
    let mut failed = !arg_errors.is_empty();
    let mut out = open_output(config)?;
    if inputs.len() == 1 {
        // One input: its connections are written as they finish, so memory follows the live
        // connections, not the capture's size.
        let input = &inputs[0];
        let mut write_error = None;
        let mut count = 0u64;
        if config.format == Format::Table {
            writeln!(out, "{}", input.display)?;
        }
        let summary = {
            // Each connection is formatted on the worker that tracked it, in parallel; only
            // the finished text is written here, in order.
            let format = |r: Box<ConnectionRecord<Detector>>| {
                let mut text = Vec::with_capacity(512);
                let text = write_flow(&mut text, config.format, &input.display, &r).map(|()| text);
                (text, Some(r))
            };
            let mut sink = |text: io::Result<Vec<u8>>| {
                count += 1;
                if write_error.is_none()
                    && let Err(e) = text.and_then(|t| out.write_all(&t))
                {
                    write_error = Some(e);
                }
            };
            analyze_with_progress::<Detector, _>(
                input,
                &config.flow,
                config.jobs,
                &format,
                &mut sink,
                &|_| {},
            )
        };
        if let Some(e) = write_error {
            return Err(e);
        }
        failed |= report_faults(config, &summary.stats);
        if config.format == Format::Table {
            report::flows::write_text_footer(&mut out, &summary, count)?;
        }
    } else {
        // Several inputs: one thread each, their connections written in input order.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.jobs)
            .build()
            .map_err(io::Error::other)?;
        let results: Vec<(InputSummary, Vec<ConnectionRecord<Detector>>)> = pool.install(|| {
            inputs
                .par_iter()
                .map(|input| {
                    let mut records = Vec::new();
                    let summary =
                        analyze::<Detector>(input, &config.flow, 1, &mut |r| records.push(r));
                    (summary, records)
                })
                .collect()
        });
        for (summary, records) in &results {
            failed |= report_faults(config, &summary.stats);
            if config.format == Format::Table {
                writeln!(out, "{}", summary.stats.path)?;
            }
            for r in records {
                write_flow(&mut out, config.format, &summary.stats.path, r)?;
            }
            if config.format == Format::Table {
                report::flows::write_text_footer(&mut out, summary, records.len() as u64)?;
            }
        }
    }
    if inputs.is_empty() && arg_errors.is_empty() && !config.quiet {
        eprintln!("rstscope: no capture files found in the given inputs");
    }
    out.flush()?;
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn write_flow(
    out: &mut dyn Write,
    format: Format,
    capture: &str,
    r: &ConnectionRecord<Detector>,
) -> io::Result<()> {
    match format {
        Format::Table => report::flows::write_text(out, r),
        Format::Json | Format::Ndjson | Format::Csv | Format::Markdown | Format::Html => {
            report::flows::write_ndjson(out, capture, r)
        }
    }
}

/// What the analysis hands on from the worker that judged a connection.
enum Prepared {
    /// Not listed: the summary's counts only.
    Counted(Tally),
    /// Listed: the judged connection, with its record when a ladder diagram is drawn of it.
    Listed(Box<(Judged, Option<Box<ConnectionRecord<Detector>>>)>),
}

fn run_analysis(
    config: &Config,
    all: bool,
    max_listed: usize,
    filter: &Filter,
) -> io::Result<ExitCode> {
    let (inputs, arg_errors) = expand_inputs(&config.inputs);
    for (arg, e) in &arg_errors {
        eprintln!("rstscope: {arg}: {e}");
    }
    let mut input_failed = !arg_errors.is_empty();
    let mut findings = Findings::listing_at_most(max_listed);
    let shards = if inputs.len() == 1 { config.jobs } else { 1 };
    let progress = Progress::new(&inputs, config.quiet);
    let markdown = config.format == Format::Markdown;
    let html = config.format == Format::Html;
    // Each input is judged connection by connection as its connections finish; only failing
    // ones (all with --all) are kept for the listing.
    let per_input: Vec<(InputSummary, Findings)> = map_inputs(config.jobs, &inputs, |n, input| {
        let mut f = Findings::listing_at_most(max_listed);
        let summary = analyze_with_progress::<Detector, _>(
            input,
            &config.flow,
            shards,
            // Classified and filtered on the worker that tracked the connection,
            // where the record is also freed unless a ladder diagram needs it; what
            // moves on to the merge is boxed, as it is a kilobyte.
            &|r| {
                let judgement = classify::judge(&r);
                let class = judgement.class();
                if !filter.keeps(&r, class) {
                    return (None, Some(r));
                }
                if !(class.is_failure() || all) {
                    // Not listed: only what the summary counts moves on, and the
                    // verdict is not completed.
                    let tally = Tally::of_judgement(r.server, r.start_ns, &judgement);
                    return (Some(Prepared::Counted(tally)), Some(r));
                }
                let judged = Judged::new(&input.display, &r, judgement.verdict(&r));
                let ladder = judged.verdict.class.is_failure() && (markdown || html);
                // The record only travels on (boxed itself) when a ladder needs it;
                // otherwise it goes back to the engine for its buffers.
                let (kept, spent) = if ladder {
                    (Some(r), None)
                } else {
                    (None, Some(r))
                };
                (Some(Prepared::Listed(Box::new((judged, kept)))), spent)
            },
            &mut |prepared| {
                progress.connection();
                let (judged, record) = match prepared {
                    None => return,
                    Some(Prepared::Counted(tally)) => return f.count(tally),
                    Some(Prepared::Listed(listed)) => *listed,
                };
                if let Some(r) = &record {
                    let class = judged.verdict.class;
                    if markdown && !f.ladders.contains_key(&class) {
                        let mut ladder = Vec::new();
                        if explain::write_explain(&mut ladder, &input.display, r, &judged.verdict)
                            .is_ok()
                        {
                            f.ladders
                                .insert(class, String::from_utf8_lossy(&ladder).into_owned());
                        }
                    }
                    if html {
                        f.html_ladders.offer(&input.display, r);
                    }
                }
                f.add(judged, all);
            },
            &|read| progress.read(n, read),
        );
        (summary, f)
    })?;
    progress.finish();
    // The capture time span, for the html page's title.
    let (mut first, mut last): (Option<String>, Option<String>) = (None, None);
    for (summary, f) in per_input {
        input_failed |= report_faults(config, &summary.stats);
        first = first.into_iter().chain(summary.stats.first).min();
        last = last.into_iter().chain(summary.stats.last).max();
        findings.evicted += summary.table.evicted;
        findings.merge(f);
    }
    if findings.unlisted > 0 && !config.quiet {
        eprintln!(
            "rstscope: {} connections were not listed (--max-listed {max_listed}); the summary counts them",
            findings.unlisted
        );
    }
    let mut out = open_output(config)?;
    match config.format {
        Format::Table => {
            findings.write_summary(&mut out, inputs.len())?;
            if !findings.kept.is_empty() {
                writeln!(
                    out,
                    "{}:",
                    if all {
                        "Connections"
                    } else {
                        "Failing connections"
                    }
                )?;
                verdicts::write_table(
                    &mut out,
                    &findings.kept,
                    terminal_width(),
                    Style {
                        color: config.color,
                    },
                )?;
            }
        }
        Format::Json => verdicts::write_json(&mut out, &findings)?,
        Format::Ndjson => {
            for j in &findings.kept {
                verdicts::write_ndjson(&mut out, j)?;
            }
        }
        Format::Csv => verdicts::write_csv(&mut out, &findings)?,
        Format::Markdown => verdicts::write_markdown(&mut out, &findings, inputs.len())?,
        Format::Html => report::html::write_html(
            &mut out,
            &findings,
            &report::html::Page {
                inputs: &config.inputs,
                captures: inputs.len(),
                first,
                last,
                all,
            },
        )?,
    }
    out.flush()?;
    if inputs.is_empty() && arg_errors.is_empty() && !config.quiet {
        eprintln!("rstscope: no capture files found in the given inputs");
    }
    Ok(if input_failed {
        ExitCode::from(2)
    } else if findings.failing > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_explain(a: ExplainArgs) -> io::Result<ExitCode> {
    let Some(selector) = FlowSelector::parse(&a.flow) else {
        eprintln!(
            "rstscope: '{}' names no connection: give a frame number, :PORT, CLIENT or CLIENT-SERVER",
            a.flow
        );
        return Ok(ExitCode::from(2));
    };
    let config = Config::new(
        CommonArgs {
            inputs: vec![a.input],
            format: Format::Table,
            jobs: None,
            quiet: false,
            output: None,
            color: ColorWhen::Never,
        },
        Some(a.engine),
    );
    let (inputs, arg_errors) = expand_inputs(&config.inputs);
    for (arg, e) in &arg_errors {
        eprintln!("rstscope: {arg}: {e}");
    }
    let mut found = Vec::new();
    let mut input_failed = !arg_errors.is_empty();
    for input in &inputs {
        let summary = analyze::<Detector>(input, &config.flow, config.jobs, &mut |r| {
            if selector.matches(r.first_frame, &r.client, &r.server) {
                let v = classify(&r);
                found.push((input.display.clone(), r, v));
            }
        });
        input_failed |= report_faults(&config, &summary.stats);
    }
    let mut out = open_output(&config)?;
    for (capture, r, v) in &found {
        explain::write_explain(&mut out, capture, r, v)?;
    }
    out.flush()?;
    if found.is_empty() {
        eprintln!(
            "rstscope: no connection matches '{}'",
            a_flow_text(&selector)
        );
        return Ok(ExitCode::from(2));
    }
    Ok(if input_failed {
        ExitCode::from(2)
    } else if found.iter().any(|(_, _, v)| v.class.is_failure()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn a_flow_text(s: &FlowSelector) -> String {
    match s {
        FlowSelector::Frame(n) => format!("frame {n}"),
        FlowSelector::ClientPort(p) => format!("client port {p}"),
        FlowSelector::Endpoints(c, Some(srv)) => format!("{c} -> {srv}"),
        FlowSelector::Endpoints(c, None) => c.clone(),
    }
}

/// Where the report goes: the file of `-o`, or standard output. Buffered either way.
fn open_output(config: &Config) -> io::Result<Box<dyn Write + Send>> {
    Ok(match &config.output {
        Some(path) => Box::new(io::BufWriter::with_capacity(
            1 << 16,
            std::fs::File::create(path)?,
        )),
        None => Box::new(io::BufWriter::with_capacity(1 << 16, io::stdout())),
    })
}

/// The progress bar on stderr: one for the whole batch of inputs, shown only when stderr is
/// a terminal and never with -q. Bytes read of the total (the files' sizes, when known),
/// rate, ETA, and the connections finished so far.
struct Progress {
    bar: Option<ProgressBar>,
    /// Bytes already counted for each input.
    seen: Vec<AtomicU64>,
    connections: AtomicU64,
}

impl Progress {
    fn new(inputs: &[Input], quiet: bool) -> Progress {
        let seen = inputs.iter().map(|_| AtomicU64::new(0)).collect();
        let bar = (!quiet && io::stderr().is_terminal()).then(|| {
            let sizes: Option<u64> = inputs
                .iter()
                .map(|i| match &i.source {
                    InputSource::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
                    InputSource::Stdin => None,
                })
                .sum();
            let (bar, template) = match sizes {
                Some(total) => (ProgressBar::new(total), "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec}, ETA {eta}, {msg}"),
                None => (ProgressBar::new_spinner(), "{spinner} [{elapsed_precise}] {bytes} read, {bytes_per_sec}, {msg}"),
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar
        });
        Progress {
            bar,
            seen,
            connections: AtomicU64::new(0),
        }
    }

    /// Input `i` has read `read` bytes so far.
    fn read(&self, i: usize, read: u64) {
        if let (Some(bar), Some(seen)) = (&self.bar, self.seen.get(i)) {
            let before = seen.swap(read, Ordering::Relaxed);
            bar.inc(read.saturating_sub(before));
            bar.set_message(format!(
                "{} connections",
                self.connections.load(Ordering::Relaxed)
            ));
        }
    }

    fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Columns to fit the table to: the terminal's width, else $COLUMNS, else 160.
fn terminal_width() -> usize {
    let (_, cols) = console::Term::stdout().size_checked().unwrap_or((0, 0));
    if cols > 0 {
        return usize::from(cols);
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(160)
}
