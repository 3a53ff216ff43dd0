//! The `verity` binary: everything lives in the library; this only hands over to the CLI layer.

fn main() {
    std::process::exit(verity::cli::run(std::env::args_os().collect()));
}
