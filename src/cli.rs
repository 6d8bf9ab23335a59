//! The command line: clap's view of the arguments, turned into a [`Config`] here and nowhere
//! else, then the command run on it.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rayon::prelude::*;

use rstscope::capture::expand_inputs;
use rstscope::stats::{self, InputStats};

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
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// What each capture holds: format, link types, time span, packets and bytes, IPv4/IPv6,
    /// TCP/UDP counts, TCP connections, snaplen-cut packets, decode errors.
    Stats(RunArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Capture files, folders (searched recursively for captures, recognised by their magic
    /// bytes), or - for standard input. pcap, pcapng, gzip or zstd compressed.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Worker threads (default: the number of cores).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    jobs: Option<usize>,
    /// No warnings on stderr (errors still set the exit status).
    #[arg(short, long)]
    quiet: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// Text for people.
    Table,
    /// One JSON document: an array with one object per input.
    Json,
    /// One JSON object per input, one per line.
    Ndjson,
}

/// What the command runs with, validated.
struct Config {
    inputs: Vec<String>,
    format: Format,
    jobs: usize,
    quiet: bool,
}

impl From<RunArgs> for Config {
    fn from(a: RunArgs) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Config {
            inputs: a.inputs,
            format: a.format,
            jobs: a.jobs.unwrap_or(cores).max(1),
            quiet: a.quiet,
        }
    }
}

/// Exit statuses: 0 when every input was read cleanly, 2 when an input could not be read or
/// had faults. A closed stdout (`| head`) ends quietly with 0.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Stats(a)) => a,
        // Until the failure analysis is built, the default command reports the same as stats.
        None => cli.run,
    };
    let config = Config::from(args);
    match run_stats(&config) {
        Ok(code) => code,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rstscope: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_stats(config: &Config) -> io::Result<ExitCode> {
    let (inputs, arg_errors) = expand_inputs(&config.inputs);
    let mut failed = !arg_errors.is_empty();
    for (arg, e) in &arg_errors {
        eprintln!("rstscope: {arg}: {e}");
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.jobs)
        .build()
        .map_err(io::Error::other)?;
    let results: Vec<InputStats> = pool.install(|| inputs.par_iter().map(stats::collect).collect());

    for s in &results {
        failed |= s.has_errors();
        if !config.quiet {
            for e in &s.errors {
                eprintln!(
                    "rstscope: {}: at byte offset {}: {}",
                    s.path, e.offset, e.message
                );
            }
        }
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
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
    }
    out.flush()?;
    if inputs.is_empty() && arg_errors.is_empty() && !config.quiet {
        eprintln!("rstscope: no capture files found in the given inputs");
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
