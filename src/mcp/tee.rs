//! The upstream body on its way to the client: every chunk is forwarded as
//! it arrives, byte for byte, while a `BodyScanner` watches it.
//!
//! Two things happen *before* the chunk that triggers them is released, so a
//! client reacting to that chunk can never race them:
//! - a `tools/list_changed` notification bumps the server's generation (the
//!   client's next `tools/list` cannot be answered from the old list);
//! - the final result, once complete (its SSE event terminated, or the JSON
//!   body ended), is stored (the client's next identical call is a hit).
//!
//! A body cut before its result is complete stores nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::Stream;

use super::capture::{BodyScanner, Capture, Seen};

pub type Work = Pin<Box<dyn Future<Output = ()> + Send>>;
pub type Bump = Box<dyn Fn() -> Work + Send + Sync>;
/// Judges a captured result; Some(store) when it is to be stored.
pub type Store = Box<dyn FnOnce(Bytes) -> Option<Work> + Send>;

pub struct Tee {
    inner: BoxStream<'static, reqwest::Result<Bytes>>,
    scanner: Option<BodyScanner>,
    capture: Capture,
    bump: Bump,
    store: Option<Store>,
    /// Work to finish, then the chunk to release (None: then end the body).
    pending: Option<(Work, Option<Bytes>)>,
    done: bool,
}

impl Tee {
    pub fn new(
        inner: BoxStream<'static, reqwest::Result<Bytes>>,
        scanner: BodyScanner,
        capture: Capture,
        bump: Bump,
        store: Option<Store>,
    ) -> Self {
        Tee {
            inner,
            scanner: Some(scanner),
            capture,
            bump,
            store,
            pending: None,
            done: false,
        }
    }

    /// The store work, when a result just became ready.
    fn ready_store(&mut self) -> Option<Work> {
        self.store.as_ref()?;
        let result = self.capture.take_ready()?;
        self.store.take().and_then(|store| store(result))
    }

    /// Ends the body; returns work to finish before ending it.
    fn finish(&mut self, complete: bool) -> Option<Work> {
        self.done = true;
        let scanner = self.scanner.take()?;
        let mut work: Vec<Work> = Vec::new();
        if scanner.finish(complete, &mut self.capture) == Seen::ToolListChanged {
            work.push((self.bump)());
        }
        if complete {
            work.extend(self.ready_store());
        }
        chain(work)
    }
}

fn chain(work: Vec<Work>) -> Option<Work> {
    match work.len() {
        0 => None,
        1 => work.into_iter().next(),
        _ => Some(Box::pin(async move {
            for w in work {
                w.await;
            }
        })),
    }
}

impl Stream for Tee {
    type Item = reqwest::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some((work, _)) = &mut this.pending {
                ready!(work.as_mut().poll(cx));
                if let Some((_, chunk)) = this.pending.take() {
                    return Poll::Ready(chunk.map(Ok));
                }
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(this.inner.as_mut().poll_next(cx)) {
                Some(Ok(chunk)) => {
                    let mut work = Vec::new();
                    if let Some(scanner) = &mut this.scanner {
                        if scanner.push(&chunk, &mut this.capture) == Seen::ToolListChanged {
                            work.push((this.bump)());
                        }
                    }
                    work.extend(this.ready_store());
                    match chain(work) {
                        Some(w) => this.pending = Some((w, Some(chunk))),
                        None => return Poll::Ready(Some(Ok(chunk))),
                    }
                }
                Some(Err(e)) => {
                    if let (Some(w), Ok(runtime)) =
                        (this.finish(false), tokio::runtime::Handle::try_current())
                    {
                        runtime.spawn(w);
                    }
                    return Poll::Ready(Some(Err(e)));
                }
                None => match this.finish(true) {
                    Some(w) => this.pending = Some((w, None)),
                    None => return Poll::Ready(None),
                },
            }
        }
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        // A bump seen but not yet written still happens; a store does not.
        let pending = self.pending.take();
        let rest = if self.done { None } else { self.finish(false) };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            for w in pending.map(|(w, _)| w).into_iter().chain(rest) {
                runtime.spawn(w);
            }
        }
    }
}
