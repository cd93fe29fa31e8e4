//! Parse arguments, initialise logging, run, map the error to an exit code.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = paymig::cli::Cli::parse();
    paymig::logging::init(cli.log_format, cli.verbose, cli.quiet);
    let code = match paymig::commands::run(cli).await {
        Ok(()) => paymig::error::exit::OK,
        Err(e) => {
            let code = e.exit_code();
            if e.is_outcome() {
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
