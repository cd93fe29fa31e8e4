//! Logs go to stderr (results go to stdout): human text by default, one JSON
//! object per event with `--log-format json` (for CodeBuild).

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

static FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();
static VERBOSE: std::sync::OnceLock<u8> = std::sync::OnceLock::new();

/// How many `-v` were given (0 with `-q`).
pub fn verbose() -> u8 {
    VERBOSE.get().copied().unwrap_or(0)
}

/// Whether stderr carries one JSON object per line (`--log-format json`):
/// then no plain-text line may be written there.
pub fn is_json() -> bool {
    FORMAT.get() == Some(&LogFormat::Json)
}

pub fn init(format: LogFormat, verbose: u8, quiet: bool) {
    let _ = FORMAT.set(format);
    let _ = VERBOSE.set(if quiet { 0 } else { verbose });
    crate::progress::use_json_events(format == LogFormat::Json);
    // Text: progress, notices and the summary by default; per-resource
    // events at -v, call dumps at -vv. JSON (for CodeBuild) carries every
    // event by default: a machine filters, a person does not have to.
    let level = match (quiet, verbose, format) {
        (true, _, _) => "warn",
        (false, 0, LogFormat::Text) => "info",
        (false, 0, LogFormat::Json) | (false, 1, _) => "debug",
        _ => "trace",
    };
    // Our own events at the chosen level; the SDK's only when they matter.
    let filter =
        EnvFilter::try_from_env("PAYMIG_LOG").unwrap_or_else(|_| EnvFilter::new(format!("warn,paymig={level}")));
    // Colours only on a terminal: CodeBuild logs and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    // Each event is written whole, above the live progress block when it
    // is on screen (so the next redraw never erases a log line).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| AboveProgress(Vec::new()))
        .with_target(false)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
        LogFormat::Text => builder.compact().without_time().init(),
    }
}

/// A log event's bytes, handed to the progress display as one piece when
/// the event is done.
struct AboveProgress(Vec<u8>);

impl std::io::Write for AboveProgress {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for AboveProgress {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            crate::progress::print_above(false, &String::from_utf8_lossy(&self.0));
        }
    }
}
