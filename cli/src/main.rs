//! `inventory`: the supplier and operator command line. Everything lives in the library; this
//! only parses the arguments, runs the command and turns its outcome into the exit code.

fn main() -> std::process::ExitCode {
    inventory_cli::main_with_args(std::env::args_os())
}
