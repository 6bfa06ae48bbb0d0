//! The `reprise` binary: CLI → config → telemetry → bind → `reprise::run`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use reprise::Config;
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc malloc: cheaper per request (the request path
/// allocates and frees a few dozen small buffers) and it returns freed
/// memory to the OS instead of keeping glibc's per-thread arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "OpenAI-compatible caching reverse proxy for LLM APIs"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (TOML). Without one, built-in defaults apply.
    #[arg(long, env = "REPRISE_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address, overriding `server.listen` (port 0 picks a free port).
    #[arg(long)]
    listen: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "REPRISE_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (what `reprise` alone does).
    Serve,
    /// Replay traces or request logs through a simulated cache: hit rate
    /// and savings per TTL and memory budget, recommended rules.
    Profile(reprise::cli::profile::ProfileArgs),
    /// Move entries between running instances (export, import).
    Cache {
        #[command(subcommand)]
        command: reprise::cli::cache::CacheCommand,
    },
    /// Replay requests through a running reprise to fill its cache.
    Warm(reprise::cli::warm::WarmArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("reprise: {e}");
            return ExitCode::from(2);
        }
    };
    match &cli.command {
        None | Some(Command::Serve) => {}
        Some(Command::Profile(args)) => return profile(args, &config),
        Some(Command::Cache { command }) => {
            return tool(reprise::cli::cache::run(command));
        }
        Some(Command::Warm(args)) => return tool(reprise::cli::warm::run(args)),
    }
    if let Some(listen) = cli.listen {
        config.server.listen = listen;
    }
    match reprise::runtime::serve(config, shutdown_signal()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reprise: {e}");
            ExitCode::FAILURE
        }
    }
}

fn profile(args: &reprise::cli::profile::ProfileArgs, config: &Config) -> ExitCode {
    let pricing = match config.pricing.build() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("reprise: pricing: {e}");
            return ExitCode::from(2);
        }
    };
    match reprise::cli::profile::run(args, &pricing) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("reprise profile: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a tool that talks to a running reprise; prints its report.
fn tool(work: impl std::future::Future<Output = Result<String, String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reprise: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("reprise: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
