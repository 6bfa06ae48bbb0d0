//! `reprise profile FILE…`: replays traces or request logs through the
//! simulated cache and prints the report (text, TOML rules or JSON).

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::cost::Pricing;
use crate::trace::input::Reader;
use crate::trace::report::Report;
use crate::trace::simulate;

#[derive(Args, Debug)]
pub struct ProfileArgs {
    /// reprise traces and/or request logs (JSONL), read in order.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// text for people, toml for a ready `[[cache.rules]]` block, json for machines.
    #[arg(long, value_enum, default_value_t = ProfileFormat::Text)]
    pub format: ProfileFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProfileFormat {
    Text,
    Toml,
    Json,
}

/// Reads, simulates, renders. Errors name the file.
pub fn run(args: &ProfileArgs, pricing: &Pricing) -> Result<String, String> {
    let total: u64 = args
        .files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let bar = super::progress(
        total,
        "{spinner} reading {bytes}/{total_bytes} [{bar:40}] {bytes_per_sec}, eta {eta}",
    );
    let mut reader = Reader::new(pricing);
    for path in &args.files {
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        reader
            .read(BufReader::with_capacity(1 << 20, file), |n| bar.inc(n))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    bar.finish_and_clear();
    let outcome = simulate::run(&mut reader.events);
    let report = Report::new(&reader.events, &outcome, reader.stats);
    Ok(match args.format {
        ProfileFormat::Text => report.text(),
        ProfileFormat::Toml => report.toml(),
        ProfileFormat::Json => report.json(),
    })
}
