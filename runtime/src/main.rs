use std::process::ExitCode;

fn main() -> ExitCode {
    talaria_runtime::cli::main()
}
