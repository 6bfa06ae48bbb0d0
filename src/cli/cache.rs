//! `reprise cache export|import`: entries out of one running reprise and
//! into another, through `GET /v1/cache/export` and `POST /v1/cache/import`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;

use super::client::{failure, http, Target};

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Write the entries visible to the key (with their remaining TTLs) as JSONL.
    Export(ExportArgs),
    /// Load a dump written by `export`; bad lines are reported and skipped.
    Import(ImportArgs),
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub target: Target,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
    /// Only this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// A dump written by `reprise cache export`.
    pub file: PathBuf,
    #[command(flatten)]
    pub target: Target,
    /// Bytes per upload (keep under the server's `body_limit_bytes`).
    #[arg(long, default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(1024..=1 << 30))]
    pub chunk_bytes: u64,
}

pub async fn run(command: &CacheCommand) -> Result<String, String> {
    match command {
        CacheCommand::Export(args) => export(args).await,
        CacheCommand::Import(args) => import(args).await,
    }
}

async fn export(args: &ExportArgs) -> Result<String, String> {
    let client = http()?;
    let mut request = args
        .target
        .request(&client, Method::GET, "/v1/cache/export");
    if let Some(ns) = &args.namespace {
        request = request.query(&[("namespace", ns)]);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(failure(response).await);
    }
    let file =
        std::fs::File::create(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut body = response.bytes_stream();
    let (mut bytes, mut lines) = (0u64, 0u64);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("export interrupted: {e}"))?;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        bytes += chunk.len() as u64;
        out.write_all(&chunk)
            .map_err(|e| format!("{}: {e}", args.out.display()))?;
    }
    out.flush()
        .map_err(|e| format!("{}: {e}", args.out.display()))?;
    Ok(format!(
        "exported {lines} entries ({bytes} bytes) to {}\n",
        args.out.display()
    ))
}

async fn import(args: &ImportArgs) -> Result<String, String> {
    let client = http()?;
    let file =
        std::fs::File::open(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = super::progress(
        total,
        "{spinner} importing {bytes}/{total_bytes} [{bar:40}] eta {eta}",
    );
    let mut reader = BufReader::new(file);
    let (mut imported, mut skipped) = (0u64, 0u64);
    let mut report = String::new();
    let mut line_no = 0u64;
    loop {
        // One chunk of whole lines; `first` is its first line's number.
        let first = line_no + 1;
        let mut chunk = Vec::new();
        let mut line = Vec::new();
        while (chunk.len() as u64) < args.chunk_bytes {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| format!("{}: {e}", args.file.display()))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            chunk.extend_from_slice(&line);
        }
        if chunk.is_empty() {
            break;
        }
        bar.inc(chunk.len() as u64);
        let response = args
            .target
            .request(&client, Method::POST, "/v1/cache/import")
            .header("content-type", "application/x-ndjson")
            .body(chunk)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!(
                "lines {first}-{line_no}: {}",
                failure(response).await
            ));
        }
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        let answer: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        imported += answer["imported"].as_u64().unwrap_or(0);
        skipped += answer["skipped"].as_u64().unwrap_or(0);
        for problem in answer["problems"].as_array().into_iter().flatten() {
            let at = problem["line"].as_u64().unwrap_or(0) + first - 1;
            let why = problem["error"].as_str().unwrap_or("invalid");
            report.push_str(&format!("line {at}: {why}\n"));
        }
    }
    bar.finish_and_clear();
    Ok(format!(
        "{report}imported {imported} entries, skipped {skipped}\n"
    ))
}
