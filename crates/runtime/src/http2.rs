//! HTTP/2 to the target on the `h2` crate directly, without hyper's client connection.
//!
//! hyper's `client::conn::http2` puts two tasks and two channels between a request and its
//! stream: the request goes through a channel to a dispatch task, which opens the stream and
//! spawns a task per request to await the answer and hand it back through another channel
//! (and the h2 connection itself runs in a third task). With many tenants each request is
//! alone on its identity's connection, so it paid every one of those wake-ups by itself: the
//! HTTP/2 path grew by about 8,000 instructions per request from 1 to 100 tenants
//! (docs/forward.md, "Many tenants"). Here the request's own task opens the stream and awaits
//! the answer; only the connection (the socket's reads and writes) runs in a task of its own.
//! A request body is sent by a task of its own only when it does not go out at once.
//!
//! What is kept of hyper's behavior: its settings (windows, frame size, header list size,
//! send buffer, no server push), the connection-specific headers removed, `Content-Length`
//! set from an exact body size, an answer's `RST_STREAM(NO_ERROR)` ending its body early but
//! cleanly, flow-control capacity given back as the answer's body is read, and a request
//! whose caller goes away resetting its stream.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName};
use hyper::{Method, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// hyper's client defaults (`proto/h2/client.rs`), so that targets see the same connection.
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const MAX_FRAME_SIZE: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 1024 * 1024;
const MAX_HEADER_LIST: u32 = 16 * 1024;
const INITIAL_MAX_SEND_STREAMS: usize = 100;
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// One HTTP/2 connection's handle (cheap to clone: every clone opens streams on it).
#[derive(Clone)]
pub(crate) struct Sender {
    send: SendRequest<Bytes>,
    /// Set when the connection's task has ended.
    ended: Arc<AtomicBool>,
    /// The last finished answer's stream, whose release waits for the next request.
    parked: Parked,
}

/// Where a finished answer's stream waits to be released.
///
/// h2 wakes the connection's task when the last handle of a closed stream goes, only so that
/// the task may notice a connection with nothing left to do. With one request at a time on a
/// connection (each tenant on its own connection), that was a third run of the connection's
/// task per request, after the one that sent the request and the one that read the answer.
/// A stream that is closed both ways (its request sent whole, its answer read to the end)
/// is parked here instead, and released right after the next request has woken the task
/// anyway, or when the connection's last handle goes. Only closed streams are parked: a
/// stream whose release would reset it is released at once.
type Parked = Arc<Mutex<Option<RecvStream>>>;

/// Makes the HTTP/2 connection over `io` (TLS with ALPN `h2`), and spawns its task.
pub(crate) async fn handshake<T>(io: T) -> Result<Sender, h2::Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .initial_max_send_streams(INITIAL_MAX_SEND_STREAMS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .enable_push(false)
        .handshake::<T, Bytes>(io)
        .await?;
    let ended = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ended);
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "upstream HTTP/2 connection ended");
        }
        flag.store(true, Ordering::Release);
    });
    Ok(Sender {
        send,
        ended,
        parked: Arc::default(),
    })
}

/// Headers that belong to one HTTP/1.1 connection and are refused by HTTP/2 (RFC 9113
/// 8.2.2), as hyper removes them.
fn strip_connection_headers(headers: &mut HeaderMap) {
    for name in [
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    if headers
        .get(header::TE)
        .is_some_and(|value| value != "trailers")
    {
        headers.remove(header::TE);
    }
    if let Some(connection) = headers.remove(header::CONNECTION)
        && let Ok(names) = connection.to_str()
    {
        for name in names.split(',') {
            headers.remove(name.trim());
        }
    }
}

impl Sender {
    /// Whether the connection can take no more requests (its task ended, or it failed or was
    /// told to go away).
    pub(crate) fn is_closed(&mut self) -> bool {
        if self.ended.load(Ordering::Acquire) {
            return true;
        }
        let mut context = Context::from_waker(std::task::Waker::noop());
        matches!(self.send.poll_ready(&mut context), Poll::Ready(Err(_)))
    }

    /// Waits until a stream may be opened; an error means the connection is gone (the
    /// request may go on another).
    pub(crate) async fn ready(&mut self) -> Result<(), h2::Error> {
        std::future::poll_fn(|cx| self.send.poll_ready(cx)).await
    }

    /// Opens the request's stream and waits for the answer's head. A body that is not
    /// empty goes out from here while it can, then from a task of its own.
    pub(crate) async fn send<B>(
        &mut self,
        request: Request<B>,
    ) -> Result<Response<H2Body>, BoxError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let mut head = Request::from_parts(parts, ());
        strip_connection_headers(head.headers_mut());
        if let Some(length) = body.size_hint().exact()
            && (length != 0 || has_payload_semantics(head.method()))
            && !head.headers().contains_key(header::CONTENT_LENGTH)
        {
            head.headers_mut()
                .insert(header::CONTENT_LENGTH, header::HeaderValue::from(length));
        }
        let end = body.is_end_stream();
        let (response, stream) = self.send.send_request(head, end)?;
        // The request has woken the connection's task: the parked stream goes without a
        // wake-up of its own.
        let parked = self.parked.lock().ok().and_then(|mut parked| parked.take());
        drop(parked);
        let mut cancel = None;
        let mut sent = true;
        if !end {
            let mut pipe = Pipe {
                stream,
                body,
                held: None,
            };
            // Most bodies are in hand: sent now, without a task.
            let mut context = Context::from_waker(std::task::Waker::noop());
            if Pin::new(&mut pipe).poll_send(&mut context).is_pending() {
                sent = false;
                let (tell, told) = tokio::sync::oneshot::channel();
                cancel = Some(tell);
                tokio::spawn(Piped { pipe, cancel: told });
            }
        }
        let guard = CancelOnDrop(cancel);
        let response = response.await?;
        guard.disarm();
        let (parts, recv) = response.into_parts();
        let mut body = H2Body::new(recv, &parts.headers);
        if sent {
            body.park = Some(Arc::clone(&self.parked));
        }
        Ok(Response::from_parts(parts, body))
    }
}

/// RFC 9110: methods whose request content has a meaning (hyper's rule for when an empty
/// body still gets `Content-Length: 0`).
fn has_payload_semantics(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT
    )
}

/// Resets the stream whose body a task sends when the request is given up before its answer
/// came (a timeout, the caller gone).
struct CancelOnDrop(Option<tokio::sync::oneshot::Sender<()>>);

impl CancelOnDrop {
    /// The answer came: the body goes on.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(tell) = self.0.take() {
            let _ = tell.send(());
        }
    }
}

/// A request body on its way into its stream, within the stream's flow control.
struct Pipe<B> {
    stream: SendStream<Bytes>,
    body: B,
    /// A chunk taken from the body, waiting for capacity; and whether it is the last.
    held: Option<(Bytes, bool)>,
}

impl<B> Pipe<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// Sends what the body has, as the stream's capacity allows; ready when the body has
    /// gone whole, or failed (the stream is then reset).
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.poll_inner(cx) {
            Poll::Ready(Err(error)) => {
                tracing::debug!(%error, "upstream HTTP/2 request body not sent");
                self.stream.send_reset(h2::Reason::CANCEL);
                Poll::Ready(())
            }
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            // The target may reset the stream (an early answer, a refusal) at any point.
            if let Poll::Ready(reason) = self.stream.poll_reset(cx) {
                return Poll::Ready(Err(match reason {
                    Ok(reason) => Box::new(h2::Error::from(reason)),
                    Err(error) => Box::new(error),
                }));
            }
            if let Some((data, last)) = self.held.take() {
                if self.stream.capacity() == 0 {
                    match self.stream.poll_capacity(cx) {
                        Poll::Pending => {
                            self.held = Some((data, last));
                            return Poll::Pending;
                        }
                        Poll::Ready(Some(Ok(_))) => {
                            self.held = Some((data, last));
                            continue;
                        }
                        Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(Box::new(error))),
                        Poll::Ready(None) => {
                            return Poll::Ready(Err(
                                "the stream closed while its body was sent".into()
                            ));
                        }
                    }
                }
                self.stream.send_data(data, last)?;
                if last {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            // The next frame before any capacity is claimed (hyper #4003: a claim for a body
            // that sends nothing can hold a connection's window).
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let last = self.body.is_end_stream();
                        if data.is_empty() {
                            self.stream.send_data(data, last)?;
                            if last {
                                return Poll::Ready(Ok(()));
                            }
                            continue;
                        }
                        // h2 raises the claim to what is buffered when it is sent.
                        self.stream.reserve_capacity(1);
                        self.held = Some((data, last));
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.stream.reserve_capacity(0);
                            self.stream.send_trailers(trailers)?;
                            return Poll::Ready(Ok(()));
                        }
                    }
                },
                Some(Err(error)) => return Poll::Ready(Err(error.into())),
                None => {
                    self.stream.send_data(Bytes::new(), true)?;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

/// A request body sent by a task of its own, until it has gone or its request is given up.
struct Piped<B> {
    pipe: Pipe<B>,
    cancel: tokio::sync::oneshot::Receiver<()>,
}

impl<B> std::future::Future for Piped<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if let Poll::Ready(Ok(())) = Pin::new(&mut this.cancel).poll(cx) {
            this.pipe.stream.send_reset(h2::Reason::CANCEL);
            return Poll::Ready(());
        }
        this.pipe.poll_send(cx)
    }
}

/// The target's answer body: capacity given back as it is read, trailers handed on, and a
/// reset with `NO_ERROR` (an answer that ends before the request's body did) a clean end.
pub(crate) struct H2Body {
    /// Taken only when the body is dropped.
    recv: Option<RecvStream>,
    data_done: bool,
    /// What `Content-Length` says is left (for the size hint), when it said anything.
    left: Option<u64>,
    /// Where the stream is parked when dropped closed, if its request went whole at once
    /// (a body still on its way from a task of its own leaves the stream open).
    park: Option<Parked>,
}

impl Drop for H2Body {
    fn drop(&mut self) {
        let Some(recv) = self.recv.take() else {
            return;
        };
        if let Some(park) = &self.park
            && recv.is_end_stream()
            && let Ok(mut parked) = park.lock()
            && parked.is_none()
        {
            *parked = Some(recv);
        }
    }
}

impl H2Body {
    /// With the length its answer's head announced (h2 has checked that it is one number
    /// and holds the body to it).
    fn new(recv: RecvStream, headers: &HeaderMap) -> Self {
        Self {
            recv: Some(recv),
            data_done: false,
            left: headers
                .get(header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok()?.parse().ok()),
            park: None,
        }
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(recv) = this.recv.as_mut() else {
            return Poll::Ready(None);
        };
        if !this.data_done {
            match ready!(recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = recv.flow_control().release_capacity(data.len());
                    if let Some(left) = &mut this.left {
                        *left = left.saturating_sub(u64::try_from(data.len()).unwrap_or(u64::MAX));
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) if error.reason() == Some(h2::Reason::NO_ERROR) => {
                    return Poll::Ready(None);
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(Box::new(error)))),
                None => this.data_done = true,
            }
        }
        match ready!(recv.poll_trailers(cx)) {
            Ok(trailers) => Poll::Ready(trailers.map(|trailers| Ok(Frame::trailers(trailers)))),
            Err(error) if error.reason() == Some(h2::Reason::NO_ERROR) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(Box::new(error)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.as_ref().is_none_or(RecvStream::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.left
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body the test feeds frame by frame; it ends when the sender is dropped.
    struct Fed(tokio::sync::mpsc::UnboundedReceiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
        }
    }

    /// An h2 server on one end of an in-memory pipe, and the gateway's sender on the other.
    async fn pair() -> (
        Sender,
        h2::server::Connection<tokio::io::DuplexStream, Bytes>,
    ) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(h2::server::handshake(server));
        let sender = handshake(client).await.unwrap();
        (sender, server.await.unwrap().unwrap())
    }

    #[tokio::test]
    async fn a_streamed_body_goes_whole_and_connection_headers_do_not() {
        let (mut sender, mut server) = pair().await;
        let (feed, fed) = tokio::sync::mpsc::unbounded_channel();
        let request = Request::post("https://target.example/upload")
            .header("connection", "x-private")
            .header("x-private", "1")
            .header("keep-alive", "timeout=5")
            .header("te", "gzip")
            .header("x-kept", "2")
            .body(Fed(fed))
            .unwrap();
        let served = tokio::spawn(async move {
            let (request, mut respond) = server.accept().await.unwrap().unwrap();
            // The connection is driven while the body is read.
            tokio::spawn(async move { while server.accept().await.is_some() {} });
            let headers = request.headers().clone();
            let mut recv = request.into_body();
            let mut body = Vec::new();
            while let Some(chunk) = recv.data().await {
                let chunk = chunk.unwrap();
                let _ = recv.flow_control().release_capacity(chunk.len());
                body.extend_from_slice(&chunk);
            }
            let answer = hyper::Response::builder()
                .header("content-length", "2")
                .body(())
                .unwrap();
            let mut stream = respond.send_response(answer, false).unwrap();
            stream.send_data(Bytes::from_static(b"ok"), true).unwrap();
            (headers, body)
        });
        // The body is not in hand when the request goes: its task sends it.
        let sent = tokio::spawn(async move { sender.send(request).await });
        for chunk in [&b"abc"[..], b"def"] {
            tokio::task::yield_now().await;
            feed.send(Bytes::from_static(chunk)).unwrap();
        }
        drop(feed);
        let (headers, body) = served.await.unwrap();
        assert_eq!(body, b"abcdef");
        for name in ["connection", "x-private", "keep-alive", "te"] {
            assert!(!headers.contains_key(name), "{name} is not sent");
        }
        assert_eq!(headers["x-kept"], "2");
        let response = sent.await.unwrap().unwrap();
        assert_eq!(response.body().size_hint().exact(), Some(2));
        let answer = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(answer, "ok");
    }

    #[tokio::test]
    async fn a_request_given_up_before_its_answer_resets_its_stream() {
        let (mut sender, mut server) = pair().await;
        let (feed, fed) = tokio::sync::mpsc::unbounded_channel();
        let request = Request::post("https://target.example/slow")
            .body(Fed(fed))
            .unwrap();
        let sent = tokio::spawn(async move { sender.send(request).await });
        let (request, _respond) = server.accept().await.unwrap().unwrap();
        let driven = tokio::spawn(async move { while server.accept().await.is_some() {} });
        let mut body = request.into_body();
        feed.send(Bytes::from_static(b"x")).unwrap();
        assert_eq!(body.data().await.unwrap().unwrap(), "x");
        // The caller goes away: the body's task resets the stream, which the target sees.
        sent.abort();
        let error = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                match body.data().await {
                    Some(Ok(_)) => {}
                    Some(Err(error)) => break error,
                    None => panic!("the stream ended cleanly"),
                }
            }
        })
        .await
        .expect("the stream is reset");
        assert_eq!(error.reason(), Some(h2::Reason::CANCEL));
        drop(feed);
        driven.abort();
    }

    #[tokio::test]
    async fn a_get_carries_no_content_length_and_a_closed_connection_shows() {
        let (mut sender, mut server) = pair().await;
        let request = Request::get("https://target.example/")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let (answered, told) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            let (request, mut respond) = server.accept().await.unwrap().unwrap();
            let had_length = request.headers().contains_key("content-length");
            respond
                .send_response(hyper::Response::new(()), true)
                .unwrap();
            // Once the answer is in, the server goes away.
            let mut told = std::pin::pin!(told);
            loop {
                tokio::select! {
                    _ = &mut told => break,
                    _ = server.accept() => {}
                }
            }
            server.abrupt_shutdown(h2::Reason::NO_ERROR);
            while server.accept().await.is_some() {}
            had_length
        });
        let response = sender.send(request).await.unwrap();
        answered.send(()).unwrap();
        assert!(response.body().is_end_stream());
        assert!(!served.await.unwrap(), "no Content-Length on a GET");
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while !sender.is_closed() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the closed connection is seen");
    }

    /// The client's end of the pipe, counting how often the connection's task reads it (once
    /// per run of the task).
    struct Counted {
        io: tokio::io::DuplexStream,
        reads: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl AsyncRead for Counted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            Pin::new(&mut self.io).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counted {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.io).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    /// Serves every stream with `answer` (its first `sent` bytes), until the client goes
    /// away; tells, for each stream, the reset the client sent on it.
    async fn serve_all(
        mut server: h2::server::Connection<tokio::io::DuplexStream, Bytes>,
        answer: &'static [u8],
        sent: usize,
        tell: tokio::sync::mpsc::UnboundedSender<Option<h2::Reason>>,
    ) {
        while let Some(accepted) = server.accept().await {
            let (request, mut respond) = accepted.unwrap();
            drop(request);
            // Each stream is answered by a task of its own, while the connection is driven.
            let tell = tell.clone();
            tokio::spawn(async move {
                let head = hyper::Response::builder()
                    .header("content-length", answer.len())
                    .body(())
                    .unwrap();
                let mut stream = respond.send_response(head, false).unwrap();
                stream
                    .send_data(Bytes::from_static(&answer[..sent]), sent == answer.len())
                    .unwrap();
                let reset = if sent == answer.len() {
                    None
                } else {
                    // A stream left open waits for the client's reset.
                    tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        std::future::poll_fn(|cx| stream.poll_reset(cx)),
                    )
                    .await
                    .ok()
                    .and_then(Result::ok)
                };
                let _ = tell.send(reset);
            });
        }
    }

    #[tokio::test]
    async fn a_finished_answer_wakes_no_connection_task_and_the_connection_still_closes() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Counted {
            io: client,
            reads: Arc::clone(&reads),
        };
        let server = tokio::spawn(h2::server::handshake(server));
        let mut sender = handshake(counted).await.unwrap();
        let (tell, mut told) = tokio::sync::mpsc::unbounded_channel();
        let served = tokio::spawn(serve_all(server.await.unwrap().unwrap(), b"done", 4, tell));
        for _ in 0..3 {
            let request = Request::get("https://target.example/")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap();
            let mut body = sender.send(request).await.unwrap().into_body();
            while let Some(frame) = body.frame().await {
                frame.unwrap();
            }
            assert!(body.is_end_stream());
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            let before = reads.load(Ordering::Relaxed);
            // The answer is done: letting it go costs the connection's task no run.
            drop(body);
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert_eq!(reads.load(Ordering::Relaxed), before, "the task ran again");
        }
        // With its last handle gone, the connection ends (the parked stream holds it not).
        drop(sender);
        tokio::time::timeout(std::time::Duration::from_secs(5), served)
            .await
            .expect("the connection ends")
            .unwrap();
        for _ in 0..3 {
            assert_eq!(told.recv().await, Some(None), "no stream was reset");
        }
    }

    #[tokio::test]
    async fn an_answer_given_up_before_its_end_still_resets_its_stream() {
        let (mut sender, server) = pair().await;
        let (tell, mut told) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(serve_all(server, b"long answer", 4, tell));
        let request = Request::get("https://target.example/")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let mut body = sender.send(request).await.unwrap().into_body();
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "long"
        );
        // Given up: the target hears of it at once, not when the connection goes.
        drop(body);
        assert_eq!(told.recv().await, Some(Some(h2::Reason::CANCEL)));
        drop(sender);
    }

    #[tokio::test]
    async fn a_parked_stream_does_not_keep_a_connection_the_target_leaves() {
        let (mut sender, mut server) = pair().await;
        let (answered, told) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            let (request, mut respond) = server.accept().await.unwrap().unwrap();
            let head = hyper::Response::builder()
                .header("content-length", "2")
                .body(())
                .unwrap();
            let mut stream = respond.send_response(head, false).unwrap();
            stream.send_data(Bytes::from_static(b"ok"), true).unwrap();
            drop((request, respond, stream));
            // Once the answer is in, the target goes away.
            let mut told = std::pin::pin!(told);
            loop {
                tokio::select! {
                    _ = &mut told => break,
                    _ = server.accept() => {}
                }
            }
            server.abrupt_shutdown(h2::Reason::NO_ERROR);
            while server.accept().await.is_some() {}
        });
        let request = Request::get("https://target.example/")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send(request).await.unwrap();
        let answer = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(answer, "ok");
        assert!(
            sender.parked.lock().unwrap().is_some(),
            "the stream is parked"
        );
        answered.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while !sender.is_closed() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the connection the target left is seen closed");
        tokio::time::timeout(std::time::Duration::from_secs(5), served)
            .await
            .expect("the target's side ends")
            .unwrap();
    }
}
