//! What one client may cost the relay before it has proved anything: how long a connection may
//! sit without a byte moving ([`IdleTimeout`]), and how many requests one address may have in
//! flight at once ([`ClientLimiter`]). The cap on open connections is a semaphore in
//! [`crate::http::serve`].
//!
//! Not authentication (that is [`crate::http`]'s) and not rate limiting of deliveries
//! ([`crate::delivery`]).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A stream that fails with `TimedOut` once a read has waited `limit` without any byte read or
/// written: a connection that sends nothing (not even its first byte), or goes quiet between
/// requests, is closed instead of holding a file descriptor for ever.
pub struct IdleTimeout<T> {
    inner: T,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<T> IdleTimeout<T> {
    /// Wraps `inner`; the clock starts now.
    pub fn new(inner: T, limit: Duration) -> Self {
        IdleTimeout {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }

    fn progress(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.limit);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.progress();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for too long (limits.idle_timeout)",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.progress();
        }
        written
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
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.progress();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Requests in flight per client address, so that one address (sending bodies a byte at a time,
/// say) cannot hold every request slot of the relay. Entries go when their last request ends:
/// the map never holds more addresses than there are requests in flight.
#[derive(Debug, Clone)]
pub struct ClientLimiter {
    per_client: Arc<std::sync::atomic::AtomicUsize>,
    in_flight: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One request's place; dropping it frees the place.
#[derive(Debug)]
pub struct ClientPermit {
    client: IpAddr,
    in_flight: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ClientLimiter {
    /// At most `per_client` requests in flight per address (0: no limit).
    pub fn new(per_client: usize) -> Self {
        ClientLimiter {
            per_client: Arc::new(per_client.into()),
            in_flight: Arc::default(),
        }
    }

    /// A place for one more request from `client`, or `None` when it has its share.
    pub fn try_acquire(&self, client: IpAddr) -> Option<ClientPermit> {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(client).or_insert(0);
        let per_client = self.per_client.load(std::sync::atomic::Ordering::Relaxed);
        if per_client > 0 && *n >= per_client {
            return None;
        }
        *n += 1;
        Some(ClientPermit {
            client,
            in_flight: self.in_flight.clone(),
        })
    }

    /// Changes the share (a configuration reload); requests in flight keep their places.
    pub fn set_per_client(&self, per_client: usize) {
        self.per_client
            .store(per_client, std::sync::atomic::Ordering::Relaxed);
    }

    /// Addresses with a request in flight.
    pub fn clients(&self) -> usize {
        self.in_flight.lock().map_or(0, |m| m.len())
    }
}

impl Drop for ClientPermit {
    fn drop(&mut self) {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[test]
    fn each_address_gets_its_share_and_leaves_no_trace() {
        let limiter = ClientLimiter::new(2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let p1 = limiter.try_acquire(a).expect("first");
        let p2 = limiter.try_acquire(a).expect("second");
        assert!(
            limiter.try_acquire(a).is_none(),
            "a third from one address waits"
        );
        let q = limiter
            .try_acquire(b)
            .expect("another address is not affected");
        drop(p1);
        let p3 = limiter.try_acquire(a).expect("a freed place is reused");
        drop((p2, p3, q));
        assert_eq!(limiter.clients(), 0, "no entry outlives its requests");
        assert!(ClientLimiter::new(0).try_acquire(a).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out_and_a_talking_one_does_not() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = IdleTimeout::new(server, Duration::from_secs(10));
        let mut client = client;
        let talker = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(6)).await;
                client.write_all(b"x").await.expect("write");
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(client);
        });
        let mut buf = [0u8; 1];
        for _ in 0..5 {
            // 6 s apart: each byte resets the 10 s clock.
            server
                .read_exact(&mut buf)
                .await
                .expect("a byte within the limit");
        }
        let err = server.read(&mut buf).await.expect_err("silence ends it");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        talker.abort();
    }
}
