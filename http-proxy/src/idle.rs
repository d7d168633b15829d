//! A body that fails when no data moves for a while, so a stalled client
//! or upstream cannot hold a request (and its buffers) for ever.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The error an idle body ends with.
#[derive(Debug, thiserror::Error)]
#[error("no data for {0:?}")]
pub struct Idle(pub Duration);

/// `inner`, ended with [`Idle`] after `limit` without a frame.
pub struct IdleBody<B> {
    inner: B,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    /// Told once the last frame has been read (see [`IdleBody::ended`]).
    ended: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<B> IdleBody<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, limit: Duration) -> Self {
        IdleBody {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            ended: None,
        }
    }

    /// A receiver that completes when the body has been read to its end
    /// (or fails when the body is dropped first): a request's upstream
    /// may take its time to answer only after it has the whole body.
    pub fn ended(&mut self) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.ended = Some(tx);
        rx
    }

    fn end(&mut self) {
        if let Some(tx) = self.ended.take() {
            let _ = tx.send(());
        }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let limit = this.limit;
                this.timer.as_mut().reset(Instant::now() + limit);
                // With a known length the reader stops at the last frame
                // without asking for more.
                if this.inner.is_end_stream() {
                    this.end();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.end();
                Poll::Ready(None)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Idle(this.limit))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
