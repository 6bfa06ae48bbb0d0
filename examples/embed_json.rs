//! Print reprise's embeddings as JSON, one object per input line:
//! `{"text": …, "ids": [token ids], "embedding": [384 floats]}`.
//!
//!     printf 'hello world\n' | cargo run --example embed_json [MODEL_DIR]
//!
//! Used by tests/semantic/test_reference_bert.py to compare the candle forward pass
//! with an independent numpy implementation.

use std::io::{BufRead, Write};

use reprise::semantic::{default_model_dir, LocalEmbedder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(default_model_dir, Into::into);
    let embedder = LocalEmbedder::load(&dir)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in std::io::stdin().lock().lines() {
        let text = line?;
        let started = std::time::Instant::now();
        let embedding = embedder.embed(&text)?;
        eprintln!("embedded {} bytes in {:?}", text.len(), started.elapsed());
        let row = serde_json::json!({
            "text": text,
            "ids": embedder.token_ids(&text)?,
            "embedding": embedding,
        });
        writeln!(out, "{row}")?;
    }
    Ok(())
}
