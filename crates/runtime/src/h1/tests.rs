//! [`exchange`] against scripted sockets: the test holds the target's end of an in-memory
//! pipe and writes, reads, stalls or hangs up exactly when the case needs it.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use super::*;

/// A request body the test feeds frame by frame; it ends when the sender is dropped.
struct Fed {
    frames: mpsc::UnboundedReceiver<Bytes>,
}

impl HttpBody for Fed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.frames
            .poll_recv(cx)
            .map(|frame| frame.map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// A connection whose other end the test holds.
fn scripted() -> (Box<Conn>, DuplexStream) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    (Conn::new(Stream::Scripted(ours)), theirs)
}

fn fed(method: &str) -> (Request<Fed>, mpsc::UnboundedSender<Bytes>) {
    let (sender, frames) = mpsc::unbounded_channel();
    let request = Request::builder()
        .method(method)
        .uri("https://target.example/upload")
        .body(Fed { frames })
        .unwrap();
    (request, sender)
}

fn empty_get() -> Request<http_body_util::Empty<Bytes>> {
    Request::get("https://target.example/")
        .body(http_body_util::Empty::new())
        .unwrap()
}

/// Reads from the target's end until `bytes` have come, and returns them.
async fn read_exactly(theirs: &mut DuplexStream, bytes: usize) -> Vec<u8> {
    let mut got = vec![0u8; bytes];
    theirs.read_exact(&mut got).await.unwrap();
    got
}

/// The request head as the target reads it.
async fn read_head(theirs: &mut DuplexStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(theirs.read_u8().await.unwrap());
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn a_reused_connection_closed_before_answering_is_given_up_only_when_safe() {
    // An idempotent request without a body, on a reused connection: another connection may
    // take it.
    let (mut conn, mut theirs) = scripted();
    let mut request = empty_get();
    let encoded = Encoded::new(&request, Some("target.example")).unwrap();
    let target = tokio::spawn(async move {
        read_head(&mut theirs).await;
        drop(theirs);
    });
    let outcome = exchange(&mut conn, &mut request, &encoded, true, || {}).await;
    target.await.unwrap();
    assert!(matches!(outcome, Err(Failed::Retry)), "{outcome:?}");

    // The same on a new connection: the target's close is the answer.
    let (mut conn, mut theirs) = scripted();
    let target = tokio::spawn(async move {
        read_head(&mut theirs).await;
        drop(theirs);
    });
    let outcome = exchange(&mut conn, &mut request, &encoded, false, || {}).await;
    target.await.unwrap();
    assert!(matches!(outcome, Err(Failed::Error(_))), "{outcome:?}");

    // A request with a body is never repeated, reused connection or not.
    let (mut conn, mut theirs) = scripted();
    let (mut request, body) = fed("POST");
    let encoded = Encoded::new(&request, Some("target.example")).unwrap();
    body.send(Bytes::from_static(b"payload")).unwrap();
    drop(body);
    let target = tokio::spawn(async move {
        read_head(&mut theirs).await;
        drop(theirs);
    });
    let outcome = exchange(&mut conn, &mut request, &encoded, true, || {}).await;
    target.await.unwrap();
    assert!(matches!(outcome, Err(Failed::Error(_))), "{outcome:?}");

    // Once a byte of an answer came, a close is a failure, not a reason to send again.
    let (mut conn, mut theirs) = scripted();
    let mut request = empty_get();
    let encoded = Encoded::new(&request, Some("target.example")).unwrap();
    let target = tokio::spawn(async move {
        read_head(&mut theirs).await;
        theirs.write_all(b"HTTP/1.1 200").await.unwrap();
        drop(theirs);
    });
    let outcome = exchange(&mut conn, &mut request, &encoded, true, || {}).await;
    target.await.unwrap();
    assert!(matches!(outcome, Err(Failed::Error(_))), "{outcome:?}");
}

#[tokio::test]
async fn an_early_final_answer_ends_the_upload_and_the_connection() {
    for status in [StatusCode::OK, StatusCode::PAYLOAD_TOO_LARGE] {
        let (mut conn, mut theirs) = scripted();
        let (mut request, body) = fed("POST");
        let encoded = Encoded::new(&request, Some("target.example")).unwrap();
        body.send(Bytes::from_static(b"first part")).unwrap();
        let answer = format!(
            "HTTP/1.1 {} Whatever\r\ncontent-length: 2\r\n\r\n{{}}",
            status.as_u16()
        );
        // The target reads the head and the first chunk, answers, then reads what else comes
        // until the gateway closes.
        let target = tokio::spawn(async move {
            let head = read_head(&mut theirs).await;
            assert!(head.contains("transfer-encoding: chunked"), "{head}");
            let first = read_exactly(&mut theirs, b"a\r\nfirst part\r\n".len()).await;
            assert_eq!(first, b"a\r\nfirst part\r\n");
            theirs.write_all(answer.as_bytes()).await.unwrap();
            let mut rest = Vec::new();
            theirs.read_to_end(&mut rest).await.unwrap();
            rest
        });
        let head = exchange(&mut conn, &mut request, &encoded, false, || {})
            .await
            .unwrap();
        assert_eq!(head.status, status);
        // More of the body is ready now: it must not go out.
        body.send(Bytes::from_static(b"second part")).unwrap();
        let mut response = Body::new(conn, &head);
        let collected = (&mut response).collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"{}");
        assert!(
            response.reusable().is_none(),
            "{status}: an answer before the end of the upload closes the connection"
        );
        drop(response);
        drop(request);
        let rest = target.await.unwrap();
        assert!(rest.is_empty(), "{status}: sent after the answer: {rest:?}");
    }
}

#[tokio::test]
async fn the_start_of_a_final_answer_is_told_once_and_not_for_100_continue() {
    let (mut conn, mut theirs) = scripted();
    let mut request = empty_get();
    let encoded = Encoded::new(&request, Some("target.example")).unwrap();
    let (told, mut told_rx) = mpsc::unbounded_channel();
    // Lets the exchange, polled in the same task, read what was just written.
    async fn settle() {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }
    let script = async {
        read_head(&mut theirs).await;
        // The interim answer in two pieces: its start alone must not count.
        theirs.write_all(b"HTTP/1.1 100 Cont").await.unwrap();
        settle().await;
        theirs.write_all(b"inue\r\n\r\n").await.unwrap();
        settle().await;
        assert!(told_rx.try_recv().is_err(), "not told for 100 Continue");
        theirs.write_all(b"HTTP/1.1 2").await.unwrap();
        settle().await;
        assert!(told_rx.try_recv().is_ok(), "told when the 200 began");
        theirs
            .write_all(b"00 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
    };
    let exchanged = exchange(&mut conn, &mut request, &encoded, false, || {
        told.send(()).unwrap();
    });
    let (head, ()) = tokio::join!(exchanged, script);
    assert_eq!(head.unwrap().status, StatusCode::OK);
    assert!(told_rx.try_recv().is_err(), "told only once");
}

#[tokio::test]
async fn a_write_error_does_not_hide_a_readable_answer() {
    // The target answers and hangs up before reading anything: writing the request fails, and
    // the answer already in is what the caller gets.
    let (mut conn, mut theirs) = scripted();
    let (mut request, body) = fed("PUT");
    let encoded = Encoded::new(&request, Some("target.example")).unwrap();
    body.send(Bytes::from(vec![b'x'; 256 * 1024])).unwrap();
    theirs
        .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno")
        .await
        .unwrap();
    drop(theirs);
    let head = exchange(&mut conn, &mut request, &encoded, false, || {})
        .await
        .unwrap();
    assert_eq!(head.status, StatusCode::FORBIDDEN);
    let mut response = Body::new(conn, &head);
    let collected = (&mut response).collect().await.unwrap().to_bytes();
    assert_eq!(&collected[..], b"no");
    assert!(response.reusable().is_none());

    // Without an answer, the write error is what is reported.
    let (mut conn, theirs) = scripted();
    drop(theirs);
    let mut request = empty_get();
    let encoded = Encoded::new(&request, Some("target.example")).unwrap();
    match exchange(&mut conn, &mut request, &encoded, false, || {}).await {
        Err(Failed::Error(error)) => {
            let io = error.downcast_ref::<std::io::Error>();
            assert_eq!(
                io.map(std::io::Error::kind),
                Some(std::io::ErrorKind::BrokenPipe),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_stalled_body_holds_nothing_up() {
    // The caller's upload stalls: the target's answer is read all the same, and the
    // connection, whose request never ended, is not reused.
    let (mut conn, mut theirs) = scripted();
    let (mut request, body) = fed("POST");
    let encoded = Encoded::new(&request, Some("target.example")).unwrap();
    body.send(Bytes::from_static(b"some")).unwrap();
    let target = tokio::spawn(async move {
        read_head(&mut theirs).await;
        theirs
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab")
            .await
            .unwrap();
        theirs
    });
    let head = exchange(&mut conn, &mut request, &encoded, false, || {})
        .await
        .unwrap();
    assert_eq!(head.status, StatusCode::OK);
    // The answer's body stalls after two of its four bytes: it is pending, neither ended nor
    // failed, until more comes.
    let mut response = Body::new(conn, &head);
    let mut cx = Context::from_waker(Waker::noop());
    let first = Pin::new(&mut response).poll_frame(&mut cx);
    let data = match first {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().ok(),
        _ => None,
    };
    assert_eq!(data.as_deref(), Some(&b"ab"[..]));
    assert!(Pin::new(&mut response).poll_frame(&mut cx).is_pending());
    assert!(!response.is_end_stream());
    let mut theirs = target.await.unwrap();
    theirs.write_all(b"cd").await.unwrap();
    let rest = (&mut response).collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"cd");
    assert!(response.reusable().is_none(), "the upload never ended");
    drop(body);
}
