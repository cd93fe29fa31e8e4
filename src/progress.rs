//! Step progress for the operator, on stderr: on a terminal a live block with
//! one line per step (state, elapsed time, a counter for long work) redrawn in
//! place by indicatif, with everything else printed above it; otherwise one plain line per transition (and a counter line at most
//! every few seconds); with `--log-format json` one event per transition and
//! per counter update, so a CodeBuild log can be followed and parsed.
//!
//! Process-wide: `start` installs it for a command, steps report counters
//! with `counter`, and nothing is printed when it is not installed.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

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
    /// The line's bar in the live block (terminal mode only).
    bar: Option<ProgressBar>,
}

#[derive(Debug)]
struct Board {
    style: Style,
    command: String,
    lines: Vec<Line>,
}

static BOARD: OnceLock<Mutex<Board>> = OnceLock::new();

/// The live block while it is on screen (indicatif keeps the cursor
/// arithmetic); every other line (logs on stderr, results on stdout) is
/// printed above it through [`print_above`], so no redraw erases it. Kept
/// apart from the board so that printing never waits for a redraw.
static LIVE: Mutex<Option<MultiProgress>> = Mutex::new(None);
/// Whether the ticker that keeps running lines' elapsed time current runs.
static TICKING: AtomicBool = AtomicBool::new(false);
/// Whether progress goes out as JSON events (`--log-format json`), set by
/// the logging set-up.
static JSON_EVENTS: AtomicBool = AtomicBool::new(false);

/// Sends progress as JSON events (one object per line on stderr) instead of
/// text lines.
pub fn use_json_events(on: bool) {
    JSON_EVENTS.store(on, Ordering::SeqCst);
}

/// Prints `text` (whole lines) to stdout or stderr; while the live block is
/// on screen, above it (the block is taken off, the text written, the block
/// drawn again below it).
pub fn print_above(to_stdout: bool, text: &str) {
    let write = || {
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
    let live = LIVE.lock().ok().and_then(|m| m.clone());
    match live {
        Some(multi) => multi.suspend(write),
        None => write(),
    }
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
/// How often running lines' elapsed times and counters are refreshed on a
/// terminal.
const TICK_EVERY: Duration = Duration::from_millis(200);

/// Installs progress for `command` over `steps` (all `waiting`).
pub fn start(command: &str, steps: &[&'static str]) {
    let style = if JSON_EVENTS.load(Ordering::SeqCst) {
        Style::Json
    } else if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        Style::Terminal
    } else {
        Style::Plain
    };
    let mut lines: Vec<Line> = steps.iter().map(|s| Line::waiting(s)).collect();
    if style == Style::Terminal {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        for line in &mut lines {
            let bar =
                multi.add(ProgressBar::new(0).with_style(ProgressStyle::with_template("{msg}").expect("template")));
            bar.set_message(line.styled());
            line.bar = Some(bar);
        }
        if let Ok(mut live) = LIVE.lock() {
            *live = Some(multi);
        }
        start_ticker();
    }
    let board = Board { style, command: command.to_owned(), lines };
    match BOARD.get() {
        // One command per process, but a command may show several blocks
        // (destroy: the undo, then the sweep): the newest replaces it.
        Some(b) => *b.lock().expect("progress poisoned") = board,
        None => {
            let _ = BOARD.set(Mutex::new(board));
        }
    }
}

/// Keeps the running lines' elapsed times current while the block is on
/// screen (a thread of its own: a waiter holding a tokio worker never stops it).
fn start_ticker() {
    if TICKING.swap(true, Ordering::SeqCst) {
        return;
    }
    std::thread::spawn(|| {
        while TICKING.load(Ordering::SeqCst) {
            std::thread::sleep(TICK_EVERY);
            with_board(|b| {
                for l in b.lines.iter().filter(|l| l.state == State::Running) {
                    l.redraw();
                }
            });
        }
    });
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
            Style::Terminal => b.lines[i].redraw(),
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
            // The ticker shows it within a tick.
            Style::Terminal => {}
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
            bar: None,
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

impl Line {
    /// The line as the live block shows it: cut to the terminal's width (a
    /// wrapped line would break the count of rows to redraw), then coloured
    /// by state (the colour codes take no columns).
    fn styled(&self) -> String {
        let width = terminal_width().unwrap_or(80).saturating_sub(1).max(20);
        let full = self.render(true);
        let text: String = if full.chars().count() > width {
            full.chars().take(width - 1).chain(std::iter::once('…')).collect()
        } else {
            full
        };
        let colour = match self.state {
            State::Done => "\x1b[32m",
            State::Failed | State::Blocked => "\x1b[31m",
            State::Running => "\x1b[36m",
            State::Skipped | State::Waiting => "\x1b[2m",
        };
        format!("{colour}{text}\x1b[0m")
    }

    fn redraw(&self) {
        if let Some(bar) = &self.bar {
            bar.set_message(self.styled());
        }
    }
}

/// Ends the live block (the terminal keeps its last state) and, with JSON
/// logs, emits the summary event.
pub fn finish(status: &str, summary: &serde_json::Value) {
    TICKING.store(false, Ordering::SeqCst);
    with_board(|b| {
        if b.style == Style::Json {
            tracing::info!(event = "summary", command = %b.command, status, summary = %summary, "{} {status}", b.command);
        }
        for l in &mut b.lines {
            if let Some(bar) = l.bar.take() {
                bar.finish_with_message(l.styled());
            }
        }
    });
    if let Ok(mut live) = LIVE.lock() {
        *live = None;
    }
}

/// A second signal ends the process at once: running and waiting lines
/// are marked stopped and the block is left for good (no running line stays
/// on screen), without waiting on a lock another thread may hold.
pub fn abandon() {
    TICKING.store(false, Ordering::SeqCst);
    let Some(board) = BOARD.get() else { return };
    let Ok(mut b) = board.try_lock() else { return };
    for l in &mut b.lines {
        if matches!(l.state, State::Running | State::Waiting) {
            if let Some(t) = l.started {
                l.elapsed = t.elapsed();
            }
            l.state = State::Blocked;
            l.note = "stopped".into();
        }
        if let Some(bar) = l.bar.take() {
            bar.finish_with_message(l.styled());
        }
    }
    drop(b);
    if let Ok(mut live) = LIVE.try_lock() {
        *live = None;
    }
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
