//! The `ferrosync` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    ferrosync::cli::main()
}
