//! The client's stream (TCP, or in memory under the fuzzer), with a cap on what it may send before it
//! authenticates.
//!
//! russh buffers what the client sends while it negotiates. A client that
//! floods `IGNORE` messages or garbage before the key exchange must not be
//! able to make the gateway read (and allocate) without bound, so once it
//! has sent more than `max_preauth_bytes` unauthenticated, reads fail and
//! russh ends the connection. After authentication the stream is a plain
//! pass-through.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::admission::SlotState;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream that counts bytes read until authentication.
pub(crate) struct Metered<S> {
    inner: S,
    slot: Arc<SlotState>,
    cap: u64,
}

impl<S> Metered<S> {
    pub(crate) fn new(inner: S, slot: Arc<SlotState>, cap: u64) -> Self {
        Metered { inner, slot, cap }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len().saturating_sub(before);
                if this.slot.read(n, this.cap) {
                    Poll::Ready(Ok(()))
                } else {
                    this.slot.overstayed();
                    this.slot.preauth_bytes_exceeded();
                    Poll::Ready(Err(io::Error::other(
                        "the client sent too much before authenticating",
                    )))
                }
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
