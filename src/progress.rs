//! Step progress for the operator, on stderr: on a terminal a live block with
//! one line per step (state, elapsed time, a counter for long work) redrawn in
//! place; otherwise one plain line per transition (and a counter line at most
//! every few seconds); with `--log-format json` one event per transition and
//! per counter update, so a CodeBuild log can be followed and parsed.
//!
//! Process-wide: `start` installs it for a command, steps report counters
//! with `counter`, and nothing is printed when it is not installed.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A step's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Waiting,
    Running,
    Done,
    Failed,
    Skipped,
    Blocked,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
            State::Skipped => "skipped",
            State::Blocked => "blocked",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Terminal,
    Plain,
    Json,
}

#[derive(Debug)]
struct Line {
    step: &'static str,
    state: State,
    started: Option<Instant>,
    elapsed: Duration,
    note: String,
    counter: Option<(String, u64, Option<u64>)>,
    last_printed: Option<Instant>,
}

#[derive(Debug)]
struct Board {
    style: Style,
    command: String,
    lines: Vec<Line>,
    drawn: usize,
    last_draw: Option<Instant>,
}

static BOARD: OnceLock<Mutex<Board>> = OnceLock::new();

/// Whether the live terminal block is on screen: then every other line
/// (logs on stderr, results on stdout) is printed above it through
/// [`print_above`], so that nothing is erased by the next redraw.
static LIVE: AtomicBool = AtomicBool::new(false);

/// Prints `text` (whole lines) to stdout or stderr; while the live block is
/// on screen, above it: the block is cleared, the text written, the block
/// drawn again below it.
pub fn print_above(to_stdout: bool, text: &str) {
    let write = |text: &str| {
        if to_stdout {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        } else {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(text.as_bytes());
            let _ = err.flush();
        }
    };
    if LIVE.load(Ordering::SeqCst) {
        if let Some(board) = BOARD.get() {
            if let Ok(mut b) = board.lock() {
                b.clear();
                write(text);
                b.draw(false);
                return;
            }
        }
    }
    write(text);
}

/// `println!` that respects the live block.
pub fn println(line: impl AsRef<str>) {
    print_above(true, &format!("{}\n", line.as_ref()));
}

/// The terminal's width in columns (stderr's), if it is one.
fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ fills a winsize for a terminal descriptor.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

/// How often a plain-text counter line may repeat.
const PLAIN_COUNTER_EVERY: Duration = Duration::from_secs(5);
/// How often the terminal block may be redrawn for a counter.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// Installs progress for `command` over `steps` (all `waiting`).
pub fn start(command: &str, steps: &[&'static str]) {
    let style = if crate::logging::is_json() {
        Style::Json
    } else if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        Style::Terminal
    } else {
        Style::Plain
    };
    LIVE.store(style == Style::Terminal, Ordering::SeqCst);
    let lines = steps.iter().map(|s| Line::waiting(s)).collect();
    let board = Board { style, command: command.to_owned(), lines, drawn: 0, last_draw: None };
    if BOARD.set(Mutex::new(board)).is_err() {
        // Already installed (one command per process): reset it.
        if let Some(b) = BOARD.get() {
            let mut b = b.lock().expect("progress poisoned");
            b.command = command.to_owned();
        }
    }
    with_board(|b| b.draw(true));
}

fn with_board(f: impl FnOnce(&mut Board)) {
    if let Some(b) = BOARD.get() {
        if let Ok(mut b) = b.lock() {
            f(&mut b);
        }
    }
}

/// A step changed state; `note` says why (a failure, a skip reason, counts).
pub fn set(step: &str, state: State, note: &str) {
    with_board(|b| {
        let Some(i) = b.lines.iter().position(|l| l.step == step) else { return };
        let line = &mut b.lines[i];
        if state == State::Running {
            line.started = Some(Instant::now());
        } else if let Some(t) = line.started {
            line.elapsed = t.elapsed();
        }
        line.state = state;
        line.note = note.to_owned();
        match b.style {
            Style::Terminal => b.draw(true),
            Style::Plain => {
                let l = &b.lines[i];
                eprintln!("paymig {}: {}", b.command, l.render(false));
            }
            Style::Json => {
                let l = &b.lines[i];
                tracing::info!(
                    event = "step",
                    step = l.step,
                    state = l.state.as_str(),
                    elapsed_ms = l.elapsed.as_millis() as u64,
                    note = %l.note,
                    "step {}", l.state.as_str()
                );
            }
        }
    });
}

/// Long work inside a step: `done` of `total` (if known) `label`
/// ("parameters copied", "versions deleted", "s waiting for the cluster").
pub fn counter(step: &str, label: &str, done: u64, total: Option<u64>) {
    with_board(|b| {
        let Some(i) = b.lines.iter().position(|l| l.step == step) else { return };
        b.lines[i].counter = Some((label.to_owned(), done, total));
        let now = Instant::now();
        match b.style {
            Style::Terminal => {
                if b.last_draw.is_none_or(|t| now - t >= REDRAW_EVERY) || total == Some(done) {
                    b.draw(false);
                }
            }
            Style::Plain => {
                let l = &mut b.lines[i];
                if l.last_printed.is_none_or(|t| now - t >= PLAIN_COUNTER_EVERY) || total == Some(done) {
                    l.last_printed = Some(now);
                    eprintln!("paymig {}: [{}] {}", b.command, l.step, render_counter(label, done, total));
                }
            }
            Style::Json => {
                let l = &mut b.lines[i];
                if l.last_printed.is_none_or(|t| now - t >= Duration::from_secs(1)) || total == Some(done) {
                    l.last_printed = Some(now);
                    tracing::info!(event = "progress", step = l.step, label, done, total, "progress");
                }
            }
        }
    });
}

/// Runs `fut` (a waiter) while counting the seconds spent waiting.
pub async fn while_waiting<F: std::future::Future>(step: &str, what: &str, fut: F) -> F::Output {
    let started = Instant::now();
    let label = format!("s waiting for {what}");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => counter(step, &label, started.elapsed().as_secs(), None),
        }
    }
}

fn render_counter(label: &str, done: u64, total: Option<u64>) -> String {
    match total {
        Some(t) => format!("{done}/{t} {label}"),
        None => format!("{done} {label}"),
    }
}

impl Line {
    fn waiting(step: &'static str) -> Self {
        Line {
            step,
            state: State::Waiting,
            started: None,
            elapsed: Duration::ZERO,
            note: String::new(),
            counter: None,
            last_printed: None,
        }
    }

    fn render(&self, live: bool) -> String {
        let elapsed = match (self.state, self.started) {
            (State::Running, Some(t)) => t.elapsed(),
            _ => self.elapsed,
        };
        let mut s = format!("[{}] {}", self.step, self.state.as_str());
        if self.state != State::Waiting && !(self.state == State::Blocked && elapsed.is_zero()) {
            s.push_str(&format!(" {:.1}s", elapsed.as_secs_f64()));
        }
        if let (true, State::Running, Some((label, done, total))) = (live, self.state, &self.counter) {
            s.push_str(&format!(" — {}", render_counter(label, *done, *total)));
        }
        if !self.note.is_empty() {
            s.push_str(&format!(" — {}", self.note));
        }
        s
    }
}

impl Board {
    /// Takes the block off the screen (the cursor goes back to its top).
    fn clear(&mut self) {
        if self.style != Style::Terminal || self.drawn == 0 {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\x1b[{}A\x1b[J", self.drawn);
        let _ = err.flush();
        self.drawn = 0;
    }

    /// Redraws the terminal block in place: one screen row per step, each
    /// cut to the terminal's width (a wrapped line would break the count of
    /// rows to go back over).
    fn draw(&mut self, _transition: bool) {
        if self.style != Style::Terminal {
            return;
        }
        self.clear();
        let width = terminal_width().unwrap_or(80).saturating_sub(1).max(20);
        let mut err = std::io::stderr().lock();
        for l in &self.lines {
            let full = l.render(true);
            let text: String = if full.chars().count() > width {
                full.chars().take(width - 1).chain(std::iter::once('…')).collect()
            } else {
                full
            };
            let colour = match l.state {
                State::Done => "\x1b[32m",
                State::Failed | State::Blocked => "\x1b[31m",
                State::Running => "\x1b[36m",
                State::Skipped | State::Waiting => "\x1b[2m",
            };
            let _ = writeln!(err, "{colour}{text}\x1b[0m");
        }
        self.drawn = self.lines.len();
        self.last_draw = Some(Instant::now());
        let _ = err.flush();
    }
}

/// Ends the live block (the terminal keeps its last state) and, with JSON
/// logs, emits the summary event.
pub fn finish(status: &str, summary: &serde_json::Value) {
    with_board(|b| {
        if b.style == Style::Json {
            tracing::info!(event = "summary", command = %b.command, status, summary = %summary, "{} {status}", b.command);
        }
        b.drawn = 0;
    });
    LIVE.store(false, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_render_state_time_counter_and_note() {
        let mut l = Line::waiting("params");
        assert_eq!(l.render(true), "[params] waiting");
        l.state = State::Running;
        l.started = Some(Instant::now());
        l.counter = Some(("parameters copied".into(), 500, Some(2000)));
        assert!(l.render(true).contains("500/2000 parameters copied"), "{}", l.render(true));
        assert!(!l.render(false).contains("parameters copied"), "plain transitions carry no counter");
        l.state = State::Done;
        l.elapsed = Duration::from_millis(1234);
        l.note = "3 created".into();
        assert_eq!(l.render(true), "[params] done 1.2s — 3 created");
    }
}
