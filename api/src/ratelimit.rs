//! Per-client-IP rate limits on commands (POSTs, and hub invocations over the client's
//! WebSockets) and on new WebSocket connections: token buckets answering 429 with `Retry-After`
//! when empty (a hub invocation gets a completion error).

use crate::client_ip::ClientIpSource;
use crate::error::ApiError;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Rates per client IP; 0 turns a limit off.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateLimits {
    /// Commands (POST requests) per second, bursts of twice that.
    pub commands_per_second: f64,
    /// New WebSocket connections per second, bursts of twice that.
    pub connections_per_second: f64,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Buckets per client IP for one kind of request.
struct Buckets {
    rate: f64,
    by_ip: Mutex<HashMap<IpAddr, Bucket>>,
}

/// Entries kept before idle ones are swept.
const SWEEP_AT: usize = 50_000;

impl Buckets {
    fn new(rate: f64) -> Self {
        Self { rate, by_ip: Mutex::new(HashMap::new()) }
    }

    /// `Ok` when allowed, else the seconds until a token is back.
    fn take(&self, ip: IpAddr) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let burst = 2.0 * self.rate;
        let mut by_ip = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        if by_ip.len() >= SWEEP_AT {
            by_ip.retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * self.rate < burst);
        }
        let bucket = by_ip.entry(ip).or_insert(Bucket { tokens: burst, last: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.last).as_secs_f64() * self.rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// A client's command rate, handed to its WebSocket upgrades (as a request extension) for the
/// commands it sends over them: all of a client's connections draw on it, as its POSTs do.
#[derive(Clone)]
pub struct ClientCommands {
    buckets: Arc<Buckets>,
    ip: IpAddr,
}

impl ClientCommands {
    /// Takes a command from the client's rate; `false` when it has none left now.
    pub fn allow(&self) -> bool {
        self.buckets.take(self.ip).is_ok()
    }
}

/// The limiter shared by all requests of the process.
#[derive(Clone)]
pub struct RateLimiter {
    commands: Arc<Buckets>,
    connections: Arc<Buckets>,
    client_ip: ClientIpSource,
}

impl RateLimiter {
    pub fn new(limits: RateLimits, client_ip: ClientIpSource) -> Self {
        Self {
            commands: Arc::new(Buckets::new(limits.commands_per_second)),
            connections: Arc::new(Buckets::new(limits.connections_per_second)),
            client_ip,
        }
    }

    fn client_ip(&self, request: &Request) -> Option<IpAddr> {
        let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        self.client_ip.client_ip(request.headers(), peer).map(crate::client_ip::limited_as)
    }
}

/// Middleware: refuses requests over their client's limit.
pub async fn limit(
    axum::extract::State(limiter): axum::extract::State<RateLimiter>,
    mut request: Request,
    next: Next,
) -> Response {
    // A WebSocket upgrade is a GET: a command saying it upgrades is still a command.
    let upgrade = request.method() == Method::GET && crate::upgrade_guard::is_upgrade(request.headers());
    let buckets = if upgrade {
        Some(&limiter.connections)
    } else if request.method() == Method::POST {
        Some(&limiter.commands)
    } else {
        None
    };
    if let (Some(buckets), Some(ip)) = (buckets, limiter.client_ip(&request)) {
        if let Err(retry_after) = buckets.take(ip) {
            let message = "Too many requests from this address; retry later.";
            let mut response = if request.uri().path().starts_with("/api/v2/") {
                let mut problem =
                    crate::v2::problem::Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", message);
                problem.retry_after = Some(retry_after);
                problem.into_response()
            } else {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, message).into_response()
            };
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            return response;
        }
    }
    if let (true, Some(ip)) = (upgrade, limiter.client_ip(&request)) {
        request.extensions_mut().insert(ClientCommands { buckets: Arc::clone(&limiter.commands), ip });
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_a_burst_then_refuses_with_a_retry_time() {
        let buckets = Buckets::new(5.0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..10 {
            assert!(buckets.take(ip).is_ok());
        }
        assert_eq!(buckets.take(ip), Err(1));
        assert!(buckets.take("10.0.0.2".parse().unwrap()).is_ok(), "other clients are not affected");
    }

    #[test]
    fn a_zero_rate_is_unlimited() {
        let buckets = Buckets::new(0.0);
        for _ in 0..1000 {
            assert!(buckets.take("10.0.0.1".parse().unwrap()).is_ok());
        }
    }
}
