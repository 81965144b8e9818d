//! Progress lines on stderr while a phase runs: [`Ticker::start`] prints a status line every
//! second until dropped, so a long run never looks stuck.

use std::time::Duration;

use tokio::task::JoinHandle;

/// How often a running phase reports.
const INTERVAL: Duration = Duration::from_secs(1);

/// Prints `line()` every [`INTERVAL`] until dropped.
pub struct Ticker(JoinHandle<()>);

impl Ticker {
    pub fn start(line: impl Fn() -> String + Send + 'static) -> Self {
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!("  {}", line());
            }
        }))
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Prints a phase heading.
pub fn phase(title: &str) {
    eprintln!("\n== {title}");
}
