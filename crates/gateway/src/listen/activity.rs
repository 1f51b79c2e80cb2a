//! What a connection's watchdog knows: whether a request head ever arrived, how many requests
//! are in flight, and since when none is. A request is in flight from its complete head
//! (hyper calls the service) until its answer's body is dropped (sent, or the stream reset), so
//! a long streamed answer is never idle.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::time::Instant;

/// One connection's activity.
#[derive(Debug)]
pub struct Activity {
    accepted: Instant,
    served: AtomicBool,
    in_flight: AtomicUsize,
    /// Milliseconds from `accepted` to the end of the last request.
    idle_since: AtomicU64,
}

/// Why the watchdog ends a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    /// No complete request head within `server.request_head_timeout_seconds` of accept.
    RequestHead,
    /// No request in flight for `server.idle_timeout_seconds`.
    Idle,
}

impl Expired {
    /// The `reason` label of `mtls_connections_timed_out_total`.
    pub fn label(self) -> &'static str {
        match self {
            Expired::RequestHead => "request_head",
            Expired::Idle => "idle",
        }
    }
}

/// A request in flight; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Activity {
    pub fn new(accepted: Instant) -> Self {
        Self {
            accepted,
            served: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
        }
    }

    /// A complete request head arrived.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.served.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Resolves when the connection has outstayed its welcome: no complete request head
    /// `head` after accept, or no request in flight for `idle`. Wakes only at deadlines.
    pub async fn expired(&self, head: Duration, idle: Duration) -> Expired {
        let first = self.accepted + head;
        let mut deadline = self.accepted + head.min(idle);
        loop {
            tokio::time::sleep_until(deadline).await;
            let now = Instant::now();
            if !self.served.load(Ordering::Relaxed) {
                if now >= first {
                    return Expired::RequestHead;
                }
                deadline = first;
                continue;
            }
            if self.in_flight.load(Ordering::Relaxed) > 0 {
                deadline = now + idle;
                continue;
            }
            let since =
                self.accepted + Duration::from_millis(self.idle_since.load(Ordering::Relaxed));
            let due = since + idle;
            if due <= now {
                return Expired::Idle;
            }
            deadline = due;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let elapsed = self.0.accepted.elapsed().as_millis();
        self.0.idle_since.store(
            u64::try_from(elapsed).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An answer's body that holds its request's [`InFlight`] until hyper drops it.
#[derive(Debug)]
pub struct Tracked {
    body: axum::body::Body,
    _in_flight: InFlight,
}

impl Tracked {
    pub fn new(body: axum::body::Body, in_flight: InFlight) -> Self {
        Self {
            body,
            _in_flight: in_flight,
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(100);

    #[tokio::test]
    async fn no_request_head_expires_at_the_head_deadline() {
        let activity = Activity::new(Instant::now());
        let expired = activity.expired(SHORT, Duration::from_secs(60)).await;
        assert_eq!(expired, Expired::RequestHead);
        // A request head in time: the head deadline no longer applies.
        let activity = Arc::new(Activity::new(Instant::now()));
        drop(activity.begin());
        let expired = activity.expired(SHORT, SHORT * 3).await;
        assert_eq!(expired, Expired::Idle);
    }

    #[tokio::test]
    async fn a_request_in_flight_is_never_idle_and_idleness_counts_from_its_end() {
        let activity = Arc::new(Activity::new(Instant::now()));
        let request = activity.begin();
        let watched = Arc::clone(&activity);
        let watchdog = tokio::spawn(async move { watched.expired(SHORT, SHORT).await });
        tokio::time::sleep(SHORT * 5).await;
        assert!(!watchdog.is_finished(), "a request in flight keeps it open");
        drop(request);
        let ended = Instant::now();
        assert_eq!(watchdog.await.unwrap(), Expired::Idle);
        assert!(ended.elapsed() >= SHORT, "idle counts from the end");
    }
}
