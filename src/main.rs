//! The rstscope command; everything it does lives in the library and in `cli.rs`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
