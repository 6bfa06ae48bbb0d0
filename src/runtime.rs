//! How the server's threads are laid out (`server.runtime`, `server.workers`).
//!
//! - `multi`: one work-stealing tokio runtime with `workers` threads and one
//!   listener. Any worker may run any task, so a request, its upstream
//!   call's connection task and the background write can each wake another
//!   thread (a futex wake-up and a context switch per hand-off).
//! - `per-core` (the default; Linux, elsewhere it falls back to `multi`):
//!   `workers` single-threaded runtimes, each with its own
//!   `SO_REUSEPORT` listener on the same address (the kernel spreads new
//!   connections across them) and its own upstream HTTP client. A
//!   connection's requests, their provider calls and the tasks they spawn
//!   stay on one thread. The state (caches, stats, Redis connection) is
//!   shared; so are the connection and in-flight limits (one budget for the
//!   process). The first worker (the calling thread) also runs the
//!   background tasks started at boot (metrics upkeep, watermark sync,
//!   fleet stats).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::config::{Config, RuntimeLayout};
use crate::limits::connections::serve_sharing;
use crate::RunError;

/// Pending connections per listener (the kernel caps it at `somaxconn`).
const BACKLOG: i32 = 1024;

/// Worker threads for `server.workers` (0 = one per available core).
pub fn worker_count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Binds `server.listen`, serves until `shutdown` resolves and the open
/// requests finish, in the layout `server.runtime` names. Blocks the
/// calling thread (it becomes a worker).
pub fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    config.validate()?;
    let workers = worker_count(config.server.workers);
    // Only Linux spreads connections over SO_REUSEPORT listeners (BSD and
    // macOS hand them all to one socket): elsewhere per-core would serve on
    // one thread.
    let layout = match config.server.runtime {
        RuntimeLayout::PerCore if !cfg!(target_os = "linux") => RuntimeLayout::Multi,
        layout => layout,
    };
    match layout {
        RuntimeLayout::Multi => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            // 0 keeps tokio's default (one per core, or TOKIO_WORKER_THREADS).
            if config.server.workers > 0 {
                builder.worker_threads(workers);
            }
            let runtime = builder.enable_all().build()?;
            runtime.block_on(async move {
                let listener =
                    TcpListener::bind(&config.server.listen)
                        .await
                        .map_err(|source| RunError::Listen {
                            addr: config.server.listen.clone(),
                            source,
                        })?;
                crate::run(listener, config, shutdown).await
            })
        }
        RuntimeLayout::PerCore => {
            let listeners = bind_shared_port(&config.server.listen, workers).map_err(|source| {
                RunError::Listen {
                    addr: config.server.listen.clone(),
                    source,
                }
            })?;
            run_per_core(listeners, config, shutdown)
        }
    }
}

/// `n` listening sockets on one address with `SO_REUSEPORT` (port 0: the
/// port the first one got). Non-blocking, ready for `TcpListener::from_std`.
///
/// A port another process already listens on is refused ("address in
/// use"), as a plain bind would: `SO_REUSEPORT` alone would let a second
/// reprise (same user) join the first one's port and take half its
/// connections.
pub fn bind_shared_port(listen: &str, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut addr: SocketAddr = listen
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    if addr.port() != 0 {
        ensure_port_is_free(addr)?;
    }
    let mut listeners = Vec::with_capacity(n.max(1));
    for _ in 0..n.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        let listener = std::net::TcpListener::from(socket);
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Fails with `AddrInUse` when something listens on `addr`: a socket
/// without `SO_REUSEPORT` cannot share a port with a listener. It keeps
/// `SO_REUSEADDR` (as the real sockets do) so a restart over connections
/// still in TIME_WAIT is not refused. Two instances starting at the same
/// instant could both pass; that race is the kernel's to close, not ours.
fn ensure_port_is_free(addr: SocketAddr) -> std::io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())?;
    // Dropped here, before the shared sockets bind.
    Ok(())
}

/// The per-core layout on already-bound listeners (one worker each; see
/// [`bind_shared_port`]). Blocks until `shutdown` resolves and every
/// worker has finished its open requests.
pub fn run_per_core(
    listeners: Vec<std::net::TcpListener>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let mut listeners = listeners.into_iter();
    let Some(first) = listeners.next() else {
        return Err(RunError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the per-core layout needs at least one listener",
        )));
    };
    let connect_timeout = config.server.connect_timeout;
    single_threaded()?.block_on(async move {
        let addr = first.local_addr()?;
        let (state, limits) = crate::start(config, addr)?;
        let app = crate::app(state);
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let (stop, stopped) = watch::channel(false);
        let mut threads = Vec::new();
        for (index, listener) in listeners.enumerate() {
            let (app, slots, mut stopped) = (app.clone(), slots.clone(), stopped.clone());
            let worker = move || -> Result<(), RunError> {
                single_threaded()?.block_on(async move {
                    crate::upstream::use_thread_client(connect_timeout)?;
                    let listener = TcpListener::from_std(listener)?;
                    let until = async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    };
                    serve_sharing(listener, app, limits, slots, until).await;
                    Ok(())
                })
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("reprise-worker-{}", index + 1))
                    .spawn(worker)?,
            );
        }
        crate::upstream::use_thread_client(connect_timeout)?;
        let listener = TcpListener::from_std(first)?;
        tracing::info!(%addr, workers = threads.len() + 1, "reprise listening on {addr}");
        let until = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        serve_sharing(listener, app, limits, slots, until).await;
        // Joined from the blocking pool: this runtime keeps running the
        // tasks the other workers may still wait on (the Redis connection's).
        let joined = tokio::task::spawn_blocking(move || {
            threads
                .into_iter()
                .map(|t| {
                    t.join().unwrap_or_else(|_| {
                        Err(RunError::Io(std::io::Error::other(
                            "a worker thread panicked",
                        )))
                    })
                })
                .collect::<Result<Vec<()>, RunError>>()
        })
        .await;
        tracing::info!("reprise stopped");
        match joined {
            Ok(result) => result.map(|_| ()),
            Err(e) => Err(RunError::Io(std::io::Error::other(e))),
        }
    })
}

fn single_threaded() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
