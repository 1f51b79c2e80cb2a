//! The forward path's clocks: an idle timeout on the bodies in both directions, and the
//! response timeout counted from the end of the upload instead of from the start of the call.
//!
//! Who stalls decides who is blamed. The caller's upload ([`Upload`]) times the caller only
//! while its consumer is asking for more: a caller that sends nothing for the idle timeout is
//! the caller's fault ([`CallerFault::BodyTimeout`]). A consumer that stops asking (the
//! target reads nothing, so the writes wait) is the target's fault, and so is a target that
//! has not answered the response timeout after the upload ended; [`UploadClock::watch`] times
//! both around the call. The response body ([`IdleBody`]) times the target only while the
//! caller's side is asking for more, so a slow caller never makes a target look stalled.
//! Timers are armed only when a poll finds nothing: a body that flows never touches one.

use std::error::Error as StdError;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn StdError + Send + Sync>;

/// The target did not answer, or did not take the request body, in time (424
/// `response_timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseTimeout {
    /// No answer the response timeout after the end of the request body.
    Answer,
    /// The target took none of the request body for the body idle timeout.
    Upload,
}

impl fmt::Display for ResponseTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResponseTimeout::Answer => "the target did not answer in time",
            ResponseTimeout::Upload => "the target did not take the request body in time",
        })
    }
}

impl StdError for ResponseTimeout {}

/// The target sent nothing of its response body for the body idle timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseBodyTimeout;

impl fmt::Display for ResponseBodyTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the target's response body stalled")
    }
}

impl StdError for ResponseBodyTimeout {}

/// What went wrong with the caller's own request body: the caller's fault, not the target's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerFault {
    /// The caller sent nothing of its body for the body idle timeout.
    BodyTimeout,
    /// The caller's body broke off or was not valid HTTP (a bad chunk, say).
    BodyInvalid,
    /// The caller's body went past the size limit.
    TooLarge,
}

impl CallerFault {
    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(CallerFault::BodyTimeout),
            2 => Some(CallerFault::BodyInvalid),
            3 => Some(CallerFault::TooLarge),
            _ => None,
        }
    }

    fn code(self) -> u8 {
        match self {
            CallerFault::BodyTimeout => 1,
            CallerFault::BodyInvalid => 2,
            CallerFault::TooLarge => 3,
        }
    }
}

/// The caller's body stalled past the idle timeout (what the body's consumer sees).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestBodyTimeout;

impl fmt::Display for RequestBodyTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the caller's request body stalled")
    }
}

impl StdError for RequestBodyTimeout {}

/// How a call under [`UploadClock::watch`] failed.
#[derive(Debug)]
pub enum Stopped {
    /// The caller's body failed (the call's own error is then a consequence).
    Caller(CallerFault),
    /// The target was too slow.
    Timeout(ResponseTimeout),
    /// The call failed otherwise: the target, or the way to it.
    Failed(BoxError),
}

/// Where the caller's upload is, shared by the body (polled by whichever task sends it) and
/// the watch around the call.
#[derive(Debug)]
pub struct UploadClock {
    start: Instant,
    /// Microseconds from `start` to the last frame handed on.
    last: AtomicU64,
    /// Microseconds from `start` to the body's end, plus one (0: not ended).
    ended: AtomicU64,
    /// Microseconds from `start` to the first byte of an answer, plus one (0: none yet).
    answered: AtomicU64,
    /// Whether the body's consumer is waiting for the caller.
    waiting: AtomicBool,
    fault: AtomicU8,
    /// The watch, woken when the upload ends (its deadline moves earlier then).
    watcher: Mutex<Option<Waker>>,
}

impl UploadClock {
    fn new(ended: bool) -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
            ended: AtomicU64::new(u64::from(ended)),
            answered: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            fault: AtomicU8::new(0),
            watcher: Mutex::new(None),
        }
    }

    /// The clock of a call without a body: its answer is timed from the start.
    pub fn without_body() -> Self {
        Self::new(true)
    }

    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_micros()).unwrap_or(u64::MAX)
    }

    fn at(&self, micros: u64) -> Instant {
        later(self.start, Duration::from_micros(micros))
    }

    /// What the caller did wrong, if anything.
    pub fn fault(&self) -> Option<CallerFault> {
        CallerFault::from_code(self.fault.load(Ordering::Acquire))
    }

    fn blame(&self, fault: CallerFault) {
        let _ = self
            .fault
            .compare_exchange(0, fault.code(), Ordering::AcqRel, Ordering::Acquire);
    }

    fn end(&self) {
        let now = self.micros(Instant::now());
        self.ended.store(now.saturating_add(1), Ordering::Release);
        let watcher = self
            .watcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = watcher {
            waker.wake();
        }
    }

    /// The first byte of the target's answer has come (called by the sending side; only the
    /// first call counts). An answer that starts before the upload ends is timed from then.
    pub fn answering(&self) {
        // After the end of the upload (always, for a request without a body) an answer's
        // start moves no deadline: no clock read.
        if self.ended.load(Ordering::Acquire) != 0 {
            return;
        }
        let now = self.micros(Instant::now()).saturating_add(1);
        let _ = self
            .answered
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
    }

    /// When the target is late, and for what, as things stand.
    fn deadline(&self, response: Duration, idle: Duration) -> (Instant, Option<ResponseTimeout>) {
        let answered = self.answered.load(Ordering::Acquire);
        let ended = self.ended.load(Ordering::Acquire);
        // The answer's clock starts at the end of the upload, or at the answer's first byte
        // if that came first (an early answer).
        let from = match (ended, answered) {
            (0, 0) => None,
            (0, answered) => Some(answered),
            (ended, 0) => Some(ended),
            (ended, answered) => Some(ended.min(answered)),
        };
        if let Some(from) = from {
            return (
                later(self.at(from.saturating_sub(1)), response),
                Some(ResponseTimeout::Answer),
            );
        }
        match ended {
            0 if self.waiting.load(Ordering::Acquire) => {
                // The caller's turn: its body's own timer runs. Look again later.
                (later(Instant::now(), idle), None)
            }
            _ => {
                let last = self.at(self.last.load(Ordering::Acquire));
                (later(last, idle), Some(ResponseTimeout::Upload))
            }
        }
    }

    /// Runs `call` (which sends the request whose body this clock follows, and ends when the
    /// answer's head is in) under the response timeout, counted from the end of the upload,
    /// and the idle timeout while the target takes none of the upload.
    pub async fn watch<T>(
        &self,
        response: Duration,
        idle: Duration,
        call: impl Future<Output = Result<T, BoxError>>,
    ) -> Result<T, Stopped> {
        let mut call = pin!(call);
        let (first, _) = self.deadline(response, idle);
        let mut sleep = pin!(tokio::time::sleep_until(first));
        poll_fn(|cx| {
            if let Poll::Ready(outcome) = call.as_mut().poll(cx) {
                return Poll::Ready(outcome.map_err(|error| match self.fault() {
                    Some(fault) => Stopped::Caller(fault),
                    None => Stopped::Failed(error),
                }));
            }
            // Registered before the deadline is read, and the end stored before the waker is
            // taken: either this poll sees the end, or the end wakes this task. Once the upload
            // has ended, nothing moves the deadline again.
            if self.ended.load(Ordering::Acquire) == 0 {
                *self.watcher.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(cx.waker().clone());
            }
            loop {
                let (deadline, late) = self.deadline(response, idle);
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        if let Some(fault) = self.fault() {
                            return Poll::Ready(Err(Stopped::Caller(fault)));
                        }
                        if let Some(late) = late {
                            return Poll::Ready(Err(Stopped::Timeout(late)));
                        }
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await
    }
}

/// The caller's request body, followed by an [`UploadClock`] and given up when the caller
/// stalls for the idle timeout while more is asked for.
pub struct Upload<B> {
    inner: B,
    idle: Duration,
    clock: std::sync::Arc<UploadClock>,
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<B> fmt::Debug for Upload<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload").finish_non_exhaustive()
    }
}

impl<B: Body> Upload<B> {
    /// `inner` followed by a new clock (a size-limit error of `inner`, `LengthLimitError`, is
    /// told from the others).
    pub fn new(inner: B, idle: Duration) -> (Self, std::sync::Arc<UploadClock>) {
        let clock = std::sync::Arc::new(UploadClock::new(inner.is_end_stream()));
        let upload = Self {
            inner,
            idle,
            clock: std::sync::Arc::clone(&clock),
            sleep: None,
            armed: false,
        };
        (upload, clock)
    }
}

impl<B> Body for Upload<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.armed = false;
                this.clock.waiting.store(false, Ordering::Release);
                let now = this.clock.micros(Instant::now());
                this.clock.last.store(now, Ordering::Release);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.armed = false;
                this.clock.waiting.store(false, Ordering::Release);
                this.clock.end();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                let error: BoxError = error.into();
                let too_large = source_is::<http_body_util::LengthLimitError>(error.as_ref());
                this.clock.blame(if too_large {
                    CallerFault::TooLarge
                } else {
                    CallerFault::BodyInvalid
                });
                Poll::Ready(Some(Err(error)))
            }
            Poll::Pending => {
                this.clock.waiting.store(true, Ordering::Release);
                let sleep = arm(&mut this.sleep, &mut this.armed, this.idle);
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.clock.blame(CallerFault::BodyTimeout);
                        Poll::Ready(Some(Err(Box::new(RequestBodyTimeout))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body given up (with [`ResponseBodyTimeout`]) when the target sends nothing of
/// it for the idle timeout while more is asked for.
pub struct IdleBody<B> {
    inner: B,
    idle: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<B> fmt::Debug for IdleBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdleBody").finish_non_exhaustive()
    }
}

impl<B> IdleBody<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            sleep: None,
            armed: false,
        }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                let sleep = arm(&mut this.sleep, &mut this.armed, this.idle);
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(ResponseBodyTimeout)))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                this.armed = false;
                ready
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An idle clock's timer, armed `idle` from now unless it already runs (the clock is read
/// only then): made once per body and reset afterwards, never made again.
fn arm<'a>(
    sleep: &'a mut Option<Pin<Box<Sleep>>>,
    armed: &mut bool,
    idle: Duration,
) -> &'a mut Pin<Box<Sleep>> {
    let fresh = !*armed;
    *armed = true;
    match sleep {
        Some(running) => {
            if fresh {
                running.as_mut().reset(later(Instant::now(), idle));
            }
            running
        }
        None => sleep.insert(Box::pin(tokio::time::sleep_until(later(
            Instant::now(),
            idle,
        )))),
    }
}

/// `at` plus `by`, or a year on when that is past what an `Instant` holds: no configured
/// timeout, however large, can make the clock panic.
fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by)
        .or_else(|| at.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(at)
}

/// Whether `error`'s chain holds an `E`.
fn source_is<E: StdError + 'static>(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<E>() {
            return true;
        }
        current = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    //! On tokio's paused clock: time moves only when every task waits, straight to the next
    //! timer, so the instants below are exact and the tests take no real time.

    use super::*;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    const RESPONSE: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(3);

    /// A body fed by the test; it ends when the sender is dropped.
    struct Fed(mpsc::UnboundedReceiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0
                .poll_recv(cx)
                .map(|data| data.map(|data| Ok(Frame::data(data))))
        }
    }

    fn fed() -> (Fed, mpsc::UnboundedSender<Bytes>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Fed(receiver), sender)
    }

    /// Sends a part every second, `parts` times, then ends the body.
    async fn feed(sender: mpsc::UnboundedSender<Bytes>, parts: usize) {
        for _ in 0..parts {
            tokio::time::sleep(Duration::from_secs(1)).await;
            sender.send(Bytes::from_static(b"part")).unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_answer_is_timed_from_the_end_of_the_upload() {
        let (body, sender) = fed();
        let (mut upload, clock) = Upload::new(body, IDLE);
        // A target that takes the whole upload (twice the response timeout long), then never
        // answers.
        let call = async {
            while let Some(frame) = upload.frame().await {
                frame?;
            }
            std::future::pending::<Result<(), BoxError>>().await
        };
        let started = Instant::now();
        let (outcome, ()) = tokio::join!(clock.watch(RESPONSE, IDLE, call), feed(sender, 20));
        assert!(
            matches!(outcome, Err(Stopped::Timeout(ResponseTimeout::Answer))),
            "{outcome:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(20) + RESPONSE);
    }

    #[tokio::test(start_paused = true)]
    async fn an_early_answer_is_timed_from_its_first_byte() {
        let (body, sender) = fed();
        let (mut upload, clock) = Upload::new(body, IDLE);
        // The target takes the upload as it comes; its answer starts after 2 s and never
        // completes, while the upload goes on for 30 s.
        let call = async {
            while let Some(frame) = upload.frame().await {
                frame?;
            }
            std::future::pending::<Result<(), BoxError>>().await
        };
        let answer = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            clock.answering();
        };
        let started = Instant::now();
        // When the watch ends (the join waits for the feed too).
        let watched = async { (clock.watch(RESPONSE, IDLE, call).await, started.elapsed()) };
        let ((outcome, elapsed), (), ()) = tokio::join!(watched, answer, feed(sender, 30));
        assert!(
            matches!(outcome, Err(Stopped::Timeout(ResponseTimeout::Answer))),
            "{outcome:?}"
        );
        assert_eq!(elapsed, Duration::from_secs(2) + RESPONSE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_target_that_takes_none_of_the_upload_is_late() {
        let (body, sender) = fed();
        let (mut upload, clock) = Upload::new(body, IDLE);
        sender.send(Bytes::from_static(b"part")).unwrap();
        sender.send(Bytes::from_static(b"part")).unwrap();
        // Takes one part, then no more (its writes wait on a target that reads nothing).
        let call = async {
            let _ = upload.frame().await;
            std::future::pending::<Result<(), BoxError>>().await
        };
        let started = Instant::now();
        let outcome = clock.watch(RESPONSE, IDLE, call).await;
        assert!(
            matches!(outcome, Err(Stopped::Timeout(ResponseTimeout::Upload))),
            "{outcome:?}"
        );
        assert_eq!(started.elapsed(), IDLE);
        assert_eq!(clock.fault(), None, "not the caller's fault");
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_stops_sending_is_at_fault() {
        let (body, sender) = fed();
        let (mut upload, clock) = Upload::new(body, IDLE);
        // A target that takes everything as it comes; the caller sends two parts and stops.
        let call = async {
            while let Some(frame) = upload.frame().await {
                frame?;
            }
            std::future::pending::<Result<(), BoxError>>().await
        };
        let started = Instant::now();
        // The test's own sender keeps the body open: the caller stalls, it does not end.
        let (outcome, ()) =
            tokio::join!(clock.watch(RESPONSE, IDLE, call), feed(sender.clone(), 2));
        assert!(
            matches!(outcome, Err(Stopped::Caller(CallerFault::BodyTimeout))),
            "{outcome:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(2) + IDLE);
        drop(sender);
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_past_what_an_instant_holds_do_not_panic() {
        let (body, sender) = fed();
        let (mut upload, clock) = Upload::new(body, Duration::MAX);
        let call = async {
            let first = upload.frame().await;
            Ok::<_, BoxError>(first.is_some())
        };
        let (outcome, ()) = tokio::join!(
            clock.watch(Duration::MAX, Duration::MAX, call),
            feed(sender, 1)
        );
        assert!(matches!(outcome, Ok(true)), "{outcome:?}");
        let (inner, sender) = fed();
        let mut body = IdleBody::new(inner, Duration::MAX);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        drop(sender);
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_body_is_timed_only_while_it_is_asked_for() {
        let (inner, sender) = fed();
        let mut body = IdleBody::new(inner, IDLE);
        sender.send(Bytes::from_static(b"one")).unwrap();
        assert!(body.frame().await.is_some_and(|frame| frame.is_ok()));
        // The caller reads nothing for longer than the idle timeout: not the target's stall.
        tokio::time::sleep(IDLE * 3).await;
        sender.send(Bytes::from_static(b"two")).unwrap();
        assert!(body.frame().await.is_some_and(|frame| frame.is_ok()));
        // Asked for more, the target sends nothing: given up after the idle timeout.
        let started = Instant::now();
        let stalled = body.frame().await;
        assert_eq!(started.elapsed(), IDLE);
        let error = stalled.and_then(Result::err);
        assert!(
            error.is_some_and(|error| error.is::<ResponseBodyTimeout>()),
            "a stalled body ends in ResponseBodyTimeout"
        );
        drop(sender);
    }
}
