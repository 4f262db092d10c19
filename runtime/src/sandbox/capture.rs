//! Bounded capture of a guest's stdout and stderr.
//!
//! Unlike wasmtime-wasi's `MemoryOutputPipe`, a full buffer does not fail the
//! guest's writes (Rust's `print!` would panic on that): bytes past the bound
//! are counted and dropped, so a chatty skill keeps working and the host's
//! memory stays bounded.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

#[derive(Clone)]
pub struct BoundedCapture {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    limit: usize,
    dropped: u64,
}

impl BoundedCapture {
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Captured {
                bytes: Vec::new(),
                limit,
                dropped: 0,
            })),
        }
    }

    fn append(&self, data: &[u8]) {
        // A poisoned lock only means another writer panicked mid-append; the
        // bytes are still a valid prefix.
        let mut captured = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = captured.limit.saturating_sub(captured.bytes.len());
        let kept = data.len().min(room);
        captured.bytes.extend_from_slice(&data[..kept]);
        captured.dropped += (data.len() - kept) as u64;
    }

    /// What was kept, and how many bytes were dropped past the bound.
    pub fn contents(&self) -> (Vec<u8>, u64) {
        let captured = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (captured.bytes.clone(), captured.dropped)
    }
}

impl IsTerminal for BoundedCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for BoundedCapture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for BoundedCapture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for BoundedCapture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for BoundedCapture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_prefix_and_counts_the_rest() {
        let capture = BoundedCapture::new(10);
        capture.append(b"hello ");
        capture.append(b"world, again");
        let (kept, dropped) = capture.contents();
        assert_eq!(kept, b"hello worl");
        assert_eq!(dropped, 8);
    }
}
