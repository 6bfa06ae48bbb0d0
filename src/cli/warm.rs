//! `reprise warm FILE`: replays chat requests through a running reprise
//! (bounded concurrency, progress bar) so their answers are cached before
//! traffic arrives; reports hits, misses, errors and cost.
//!
//! Lines are request logs `{"timestamp": …, "body": {chat request}}` or bare
//! chat bodies. `stream` is dropped: the stored answer serves streaming and
//! non-streaming callers alike.

use std::path::PathBuf;

use clap::Args;
use futures_util::stream::{self, StreamExt};
use reqwest::Method;
use serde_json::{Map, Value};

use super::client::{http, Target};

#[derive(Args, Debug)]
pub struct WarmArgs {
    /// Request log (JSONL).
    pub file: PathBuf,
    #[command(flatten)]
    pub target: Target,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
}

#[derive(Default, Debug)]
struct Tally {
    requests: u64,
    hits: u64,
    misses: u64,
    coalesced: u64,
    other: u64,
    errors: u64,
    usd_spent: f64,
    usd_saved: f64,
    first_errors: Vec<String>,
}

/// The chat body of one line, without `stream`.
fn body_of(line: &str) -> Result<Map<String, Value>, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let mut body = match value {
        Value::Object(mut o) if o.get("body").is_some_and(Value::is_object) => {
            match o.remove("body") {
                Some(Value::Object(b)) => b,
                _ => return Err("`body` is not an object".into()),
            }
        }
        Value::Object(o) if o.contains_key("messages") => o,
        _ => return Err("neither a chat request nor {\"body\": …}".into()),
    };
    body.remove("stream");
    body.remove("stream_options");
    Ok(body)
}

pub async fn run(args: &WarmArgs) -> Result<String, String> {
    let text =
        std::fs::read_to_string(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let client = http()?;
    let bar = super::progress(
        lines.len() as u64,
        "{spinner} warming {pos}/{len} [{bar:40}] {per_sec}, eta {eta}",
    );
    let mut tally = Tally::default();
    let results = stream::iter(lines)
        .map(|(index, line)| {
            let client = client.clone();
            let target = args.target.clone();
            async move { (index + 1, send(&client, &target, line).await) }
        })
        .buffer_unordered(usize::from(args.concurrency));
    futures_util::pin_mut!(results);
    while let Some((line_no, result)) = results.next().await {
        bar.inc(1);
        tally.requests += 1;
        match result {
            Ok((status, usd, saved)) => {
                match status.as_str() {
                    "hit" => tally.hits += 1,
                    "miss" => tally.misses += 1,
                    "coalesced" => tally.coalesced += 1,
                    _ => tally.other += 1,
                }
                tally.usd_spent += usd;
                tally.usd_saved += saved;
            }
            Err(e) => {
                tally.errors += 1;
                if tally.first_errors.len() < 20 {
                    tally.first_errors.push(format!("line {line_no}: {e}"));
                }
            }
        }
    }
    bar.finish_and_clear();
    let mut out = String::new();
    for e in &tally.first_errors {
        out.push_str(e);
        out.push('\n');
    }
    out.push_str(&format!(
        "{} requests: {} hits, {} misses, {} coalesced, {} other, {} errors; spent ${:.6}, saved ${:.6}\n",
        tally.requests,
        tally.hits,
        tally.misses,
        tally.coalesced,
        tally.other,
        tally.errors,
        tally.usd_spent,
        tally.usd_saved
    ));
    Ok(out)
}

/// One request: (x-cache-status, USD spent, USD saved).
async fn send(
    client: &reqwest::Client,
    target: &Target,
    line: &str,
) -> Result<(String, f64, f64), String> {
    let body = body_of(line)?;
    let response = target
        .request(client, Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Value::Object(body).to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(super::client::failure(response).await);
    }
    let status = response
        .headers()
        .get("x-cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let cost = &answer["routing_metadata"]["cost"];
    let usd = cost["usd"].as_f64().unwrap_or(0.0);
    let saved = if status == "miss" {
        0.0
    } else {
        cost["cache_savings_usd"].as_f64().unwrap_or(0.0)
    };
    Ok((status, usd, saved))
}
