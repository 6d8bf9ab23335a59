//! The rstscope command; everything it does lives in the library and in `cli.rs`.

mod cli;

// Short connections allocate and free many small objects (connection state, parser buffers,
// event text); mimalloc's thread-local free lists serve them several times faster than the
// system allocator, whose consolidation showed as the largest cost on short-connection
// captures. The library itself does not choose an allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::run()
}
