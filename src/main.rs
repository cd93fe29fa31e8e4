//! Parse arguments, initialise logging, run, map the error to an exit code.

use clap::Parser;

#[tokio::main]
async fn main() {
    // A closed pipe (`paymig status | head`) ends the command quietly, as it
    // ends `ls`: SIGPIPE's default action instead of a panic on the next
    // write. Sockets are not affected (the standard library sends with
    // MSG_NOSIGNAL); a run cut short this way is resumed like any other.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default, at start-up.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = paymig::cli::Cli::parse();
    paymig::logging::init(cli.log_format, cli.verbose, cli.quiet);
    let code = match paymig::commands::run(cli).await {
        Ok(()) => paymig::error::exit::OK,
        Err(e) => {
            let code = e.exit_code();
            if matches!(e, paymig::error::Error::Declined) {
                // Already said at the prompt.
            } else if e.is_outcome() {
                tracing::info!(exit_code = code, "{e}");
            } else if paymig::logging::is_json() {
                let timestamp = time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                eprintln!(
                    "{}",
                    serde_json::json!({"timestamp": timestamp, "level": "ERROR", "message": e.to_string(), "exit_code": code})
                );
            } else {
                eprintln!("error: {e}");
            }
            code
        }
    };
    std::process::exit(code);
}
