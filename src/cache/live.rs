//! A stream in progress, shared by everyone reading it: the upstream bytes
//! as they arrive, kept in order, so a reader joining late starts from the
//! first byte and then follows live. The request that started the stream
//! reads it exactly like a single-flight follower does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

/// How a live stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveEnd {
    /// The upstream stream finished cleanly (`[DONE]` / `message_stop`).
    Complete,
    /// Cut, errored, timed out or abandoned: readers end with an error.
    Broken,
}

#[derive(Default)]
struct Inner {
    chunks: Vec<Bytes>,
    end: Option<LiveEnd>,
}

pub struct LiveStream {
    inner: Mutex<Inner>,
    /// Bumped on every push and at the end; readers wait on it.
    signal: watch::Sender<u64>,
    readers: AtomicUsize,
}

/// What a reader gets on each poll.
pub enum Next {
    Chunks(Vec<Bytes>),
    End(LiveEnd),
}

impl LiveStream {
    pub fn new() -> Arc<Self> {
        Arc::new(LiveStream {
            inner: Mutex::new(Inner::default()),
            signal: watch::channel(0).0,
            readers: AtomicUsize::new(0),
        })
    }

    pub fn push(&self, bytes: Bytes) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.chunks.push(bytes);
        }
        self.signal.send_modify(|v| *v += 1);
    }

    pub fn end(&self, end: LiveEnd) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.end.get_or_insert(end);
        }
        self.signal.send_modify(|v| *v += 1);
    }

    /// A reader from the first byte.
    pub fn reader(self: &Arc<Self>) -> LiveReader {
        self.readers.fetch_add(1, Ordering::SeqCst);
        LiveReader {
            live: self.clone(),
            next: 0,
            signal: self.signal.subscribe(),
        }
    }

    /// Readers still attached (a client disconnect drops its reader).
    pub fn readers(&self) -> usize {
        self.readers.load(Ordering::SeqCst)
    }
}

pub struct LiveReader {
    live: Arc<LiveStream>,
    next: usize,
    signal: watch::Receiver<u64>,
}

impl LiveReader {
    /// The chunks not yet read, or the end; waits while there is neither.
    pub async fn next(&mut self) -> Next {
        loop {
            self.signal.borrow_and_update();
            if let Ok(inner) = self.live.inner.lock() {
                if self.next < inner.chunks.len() {
                    let chunks = inner.chunks[self.next..].to_vec();
                    self.next = inner.chunks.len();
                    return Next::Chunks(chunks);
                }
                if let Some(end) = inner.end {
                    return Next::End(end);
                }
            } else {
                return Next::End(LiveEnd::Broken);
            }
            if self.signal.changed().await.is_err() {
                return Next::End(LiveEnd::Broken);
            }
        }
    }
}

impl Drop for LiveReader {
    fn drop(&mut self) {
        self.live.readers.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn late_readers_start_from_the_first_byte_then_follow() {
        let live = LiveStream::new();
        live.push(Bytes::from_static(b"a"));
        let mut early = live.reader();
        let Next::Chunks(c) = early.next().await else {
            panic!()
        };
        assert_eq!(c, vec![Bytes::from_static(b"a")]);
        live.push(Bytes::from_static(b"b"));
        let mut late = live.reader();
        let Next::Chunks(c) = late.next().await else {
            panic!()
        };
        assert_eq!(c.len(), 2);
        let waiter = tokio::spawn(async move {
            matches!(early.next().await, Next::Chunks(c) if c == vec![Bytes::from_static(b"b")])
        });
        assert!(waiter.await.unwrap());
        live.end(LiveEnd::Complete);
        assert!(matches!(late.next().await, Next::End(LiveEnd::Complete)));
        assert_eq!(live.readers(), 1);
        drop(late);
        assert_eq!(live.readers(), 0);
    }
}
