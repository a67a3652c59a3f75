//! `turnstile`, the operator's command line: everything is in the library ([`turnstile_cli::run_args`]);
//! this only supplies the process's world (clock, environment, stdin, stdout, stderr).

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let ctx = turnstile_cli::Context::from_process();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    turnstile_cli::run_args(std::env::args_os(), ctx, &mut out, &mut err)
        .await
        .into()
}
