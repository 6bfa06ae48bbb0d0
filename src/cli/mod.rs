//! `reprise` subcommands other than serving: `profile` (offline), and the
//! tools that talk to a running instance (`cache export|import`, `warm`).
//! `main.rs` parses arguments and calls in here.

pub mod cache;
pub mod client;
pub mod profile;
pub mod warm;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar on stderr when it is a terminal, else a hidden one.
pub fn progress(len: u64, template: &str) -> ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
