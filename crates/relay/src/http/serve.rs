//! The connection loop: accepts connections within the limits, serves HTTP/1 and HTTP/2, drains
//! on shutdown.

use std::sync::Arc;

use axum::Router;

use axum::extract::ConnectInfo;
use tokio::sync::Semaphore;

use crate::limits::connection::IdleTimeout;

use crate::config::Limits;

/// Accepts connections until `stop` turns true, then waits up to `drain` for the connections in
/// flight. At most `limits.max_connections` are open at once (more wait in the kernel's queue);
/// each is closed after `limits.idle_timeout` without a byte moving (the first byte included),
/// and HTTP/1 enforces `limits.header_timeout` and `limits.max_headers` while reading a request.
/// `limits` is asked for each new connection (a reload changes them); `max_connections` is
/// read once.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: impl Fn() -> Limits + Send + 'static,
    drain: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connection = |limits: &Limits| {
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_headers(limits.max_headers)
            .max_buf_size(limits.max_header_bytes.max(8192) * 2);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes as u32);
        builder
    };
    let open = Arc::new(Semaphore::new(limits().max_connections));
    loop {
        // Take a connection's place before accepting, so excess connections wait in the
        // kernel's queue instead of holding file descriptors here.
        let place = tokio::select! {
            p = open.clone().acquire_owned() => p,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok(place) = place else { break };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone().layer(axum::Extension(ConnectInfo(peer)));
        let service = hyper_util::service::TowerToHyperService::new(app);
        let now = limits();
        let io = TokioIo::new(IdleTimeout::new(stream, now.idle_timeout));
        let conn = connection(&now)
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(place);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown timeout; closing them");
    }
}
