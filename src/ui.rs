//! What natsup tells the person at the terminal while it works, on stderr (stdout is for
//! results that scripts read). Long steps get a spinner with the elapsed time on a terminal,
//! and a plain line otherwise; `--quiet` silences both. Colors follow NO_COLOR.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Whether to draw spinners: stderr is a terminal that can redraw a line, and not --quiet.
pub fn spinners() -> bool {
    !quiet()
        && std::io::stderr().is_terminal()
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// Whether to use colors: a terminal, and NO_COLOR (https://no-color.org) unset or empty.
pub fn colors() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A progress line.
pub fn note(message: impl AsRef<str>) {
    if !quiet() {
        eprintln!("{}", message.as_ref());
    }
}

/// A long step: a spinner while it runs, then one line with how long it took.
pub struct Step {
    name: String,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl Step {
    pub fn start(name: impl Into<String>) -> Step {
        let name = name.into();
        let bar = if spinners() {
            let bar = ProgressBar::new_spinner();
            let template = if colors() {
                "{spinner:.cyan} {msg} ({elapsed})"
            } else {
                "{spinner} {msg} ({elapsed})"
            };
            bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
            bar.set_message(name.clone());
            bar.enable_steady_tick(Duration::from_millis(100));
            Some(bar)
        } else {
            note(format!("{name}..."));
            None
        };
        Step {
            name,
            started: Instant::now(),
            bar,
        }
    }

    pub fn done(self, outcome: impl AsRef<str>) {
        let line = format!(
            "{}: {} ({:.1}s)",
            self.name,
            outcome.as_ref(),
            self.started.elapsed().as_secs_f64()
        );
        if let Some(bar) = &self.bar {
            bar.finish_and_clear()
        }
        note(line);
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Sets up `-v` / `-vv` logging on stderr: remote commands with their durations, then the
/// scripts themselves (which never hold a secret). `-vvv` adds the libraries' own logs.
pub fn init_logging(verbose: u8) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let level = match verbose {
        0 => return,
        1 => LevelFilter::INFO,
        _ => LevelFilter::DEBUG,
    };
    let others = if verbose >= 3 {
        LevelFilter::DEBUG
    } else {
        LevelFilter::OFF
    };
    let filter = Targets::new()
        .with_target("natsup", level)
        .with_default(others);
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_writer(std::io::stderr)
                .with_ansi(colors()),
        )
        .with(filter)
        .try_init();
}

/// A time as natsup shows it: to the second, in UTC.
pub fn utc(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
        ))
        .unwrap_or_default()
}
