//! The upstream HTTP/1.1 client against raw TCP servers that write exactly the bytes a test
//! scripts: every body framing, answers cut into pieces, connection reuse and its limits,
//! servers that close idle connections, and broken answers that must be errors, not hangs.

use bytes::Bytes;
use codex_gate::upstream::client::UpstreamClient;
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request as the server read it.
#[derive(Debug, Clone)]
struct Seen {
    conn: usize,
    head: String,
    body: Vec<u8>,
}

enum After {
    Keep,
    Close,
}

/// What to write: pieces (each flushed alone, 2 ms apart when there are several), then whether
/// the connection stays open.
type Script = dyn Fn(&Seen, usize) -> (Vec<Vec<u8>>, After) + Send + Sync;

struct Server {
    url: String,
    accepted: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn read_request(tcp: &mut TcpStream, buf: &mut Vec<u8>, conn: usize) -> Option<Seen> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end + 4].to_vec()).unwrap();
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let mut more = [0u8; 65536];
                let n = tcp.read(&mut more).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&more[..n]);
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return Some(Seen { conn, head, body });
        }
        let mut more = [0u8; 65536];
        let n = tcp.read(&mut more).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&more[..n]);
    }
}

async fn start(script: impl Fn(&Seen, usize) -> (Vec<Vec<u8>>, After) + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let script: Arc<Script> = Arc::new(script);
    let (a, s) = (accepted.clone(), seen.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else { return };
            let conn = a.fetch_add(1, Ordering::SeqCst);
            let (script, seen) = (script.clone(), s.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut n = 0;
                while let Some(req) = read_request(&mut tcp, &mut buf, conn).await {
                    seen.lock().unwrap().push(req.clone());
                    let (pieces, after) = script(&req, n);
                    n += 1;
                    let several = pieces.len() > 1;
                    for p in pieces {
                        if tcp.write_all(&p).await.is_err() {
                            return;
                        }
                        if several {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                    if let After::Close = after {
                        return;
                    }
                }
            });
        }
    });
    Server { url, accepted, seen }
}

fn get(url: &str) -> http::Request<Bytes> {
    http::Request::get(url).body(Bytes::new()).unwrap()
}

/// The whole answer; a client that hangs fails the test instead of stalling it.
async fn fetch(client: &UpstreamClient, req: http::Request<Bytes>) -> Result<(http::StatusCode, Bytes), String> {
    let whole = async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), whole).await.expect("the client hung")
}

fn bytes_in_pieces(all: &[u8], size: usize) -> Vec<Vec<u8>> {
    all.chunks(size).map(<[u8]>::to_vec).collect()
}

#[tokio::test]
async fn content_length_answers_reuse_one_connection_and_requests_arrive_exactly() {
    let srv =
        start(|_, _| (vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-up: 1\r\n\r\nhello".to_vec()], After::Keep))
            .await;
    let client = UpstreamClient::new(&[]);
    let big = Bytes::from(vec![b'x'; 40 << 10]);
    for body in [Bytes::from_static(b"{\"a\":1}"), big.clone(), Bytes::new()] {
        let req = http::Request::post(format!("{}/v1/responses?x=1", srv.url))
            .header("authorization", "Bearer k")
            .body(body)
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-up"], "1");
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "hello");
    }
    assert_eq!(srv.accepted.load(Ordering::SeqCst), 1, "keep-alive connection reused");
    let seen = srv.seen.lock().unwrap().clone();
    let host = srv.url.trim_start_matches("http://");
    assert!(seen[0].head.starts_with("POST /v1/responses?x=1 HTTP/1.1\r\n"), "{}", seen[0].head);
    assert!(seen[0].head.contains(&format!("host: {host}\r\n")), "{}", seen[0].head);
    assert!(seen[0].head.contains("authorization: Bearer k\r\n"));
    assert_eq!(seen[0].body, b"{\"a\":1}");
    assert_eq!(seen[1].body, big, "a body larger than the inline limit arrives whole");
    assert!(seen[2].head.contains("content-length: 0\r\n"), "an empty POST says so: {}", seen[2].head);
}

#[tokio::test]
async fn chunked_answers_cut_anywhere_decode_exactly_and_keep_the_connection() {
    let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: t\r\n\r\n";
    for size in [1, 3, 7, wire.len()] {
        let srv = start(move |_, _| (bytes_in_pieces(wire, size), After::Keep)).await;
        let client = UpstreamClient::new(&[]);
        for _ in 0..2 {
            let (status, body) = fetch(&client, get(&srv.url)).await.unwrap();
            assert_eq!(status, 200);
            assert_eq!(body, "helloabcdefghijklmnopqrstuvwxyz", "pieces of {size}");
        }
        assert_eq!(srv.accepted.load(Ordering::SeqCst), 1, "pieces of {size}");
        let seen = srv.seen.lock().unwrap().clone();
        assert!(!seen[0].head.contains("content-length"), "a GET carries no length: {}", seen[0].head);
    }
}

#[tokio::test]
async fn a_streamed_answer_arrives_piece_by_piece_before_its_end() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rx = Arc::new(Mutex::new(Some(rx)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        read_request(&mut tcp, &mut Vec::new(), 0).await.unwrap();
        tcp.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\ndata 1\r\n").await.unwrap();
        let rx = rx.lock().unwrap().take().unwrap();
        rx.await.unwrap();
        tcp.write_all(b"6\r\ndata 2\r\n0\r\n\r\n").await.unwrap();
    });
    let client = UpstreamClient::new(&[]);
    let mut body = client.request(get(&url)).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "data 1", "the first piece is delivered while the server still holds the rest");
    tx.send(()).unwrap();
    let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(second, "data 2");
    assert!(body.frame().await.is_none());
}

#[tokio::test]
async fn answers_without_keep_alive_are_read_to_the_end_and_not_reused() {
    let srv = start(|_, _| {
        let close_delimited = b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec();
        (vec![close_delimited], After::Close)
    })
    .await;
    let close_header = start(|_, _| {
        (vec![b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok".to_vec()], After::Keep)
    })
    .await;
    let http10 = start(|_, _| (vec![b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()], After::Keep)).await;
    // Both framings at once: read by the chunked one, and the connection is not trusted again.
    let both = start(|_, _| {
        let wire = b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        (vec![wire.to_vec()], After::Keep)
    })
    .await;
    let client = UpstreamClient::new(&[]);
    for _ in 0..2 {
        assert_eq!(fetch(&client, get(&srv.url)).await.unwrap().1, "until the end");
        assert_eq!(fetch(&client, get(&close_header.url)).await.unwrap().1, "ok");
        assert_eq!(fetch(&client, get(&http10.url)).await.unwrap().1, "ok");
        assert_eq!(fetch(&client, get(&both.url)).await.unwrap().1, "ok");
    }
    for s in [&srv, &close_header, &http10, &both] {
        assert_eq!(s.accepted.load(Ordering::SeqCst), 2, "{}", s.url);
    }
}

/// Conn 0 answers its first request, then reads the second and hangs up without a word: what a
/// server whose keep-alive timer fired at that moment does. Other connections answer "second".
async fn drops_the_second_request() -> Server {
    start(|seen, n| match (seen.conn, n) {
        (0, 0) => (vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst".to_vec()], After::Keep),
        (0, _) => (vec![], After::Close),
        _ => (vec![b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond".to_vec()], After::Keep),
    })
    .await
}

#[tokio::test]
async fn a_pooled_connection_the_server_dropped_is_replaced_without_an_error() {
    // A GET may be sent again on a fresh connection.
    let srv = drops_the_second_request().await;
    let client = UpstreamClient::new(&[]);
    assert_eq!(fetch(&client, get(&srv.url)).await.unwrap().1, "first");
    assert_eq!(fetch(&client, get(&srv.url)).await.unwrap().1, "second");
    assert_eq!(srv.accepted.load(Ordering::SeqCst), 2);
    let seen = srv.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "sent on the stale connection, then once more on a fresh one");

    // A server that closed its idle connection before the next request: noticed in the pool.
    let idle_close =
        start(|_, _| (vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()], After::Close)).await;
    for _ in 0..3 {
        assert_eq!(fetch(&client, get(&idle_close.url)).await.unwrap().1, "ok");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(idle_close.accepted.load(Ordering::SeqCst), 3);
    assert_eq!(idle_close.seen.lock().unwrap().len(), 3, "no request was lost on a closed connection");
}

#[tokio::test]
async fn a_post_already_written_is_never_sent_again() {
    // Conn 0 answers the first POST, then reads the second one whole and hangs up: the server
    // may have run it, so the client must report the failure instead of sending it again.
    let srv = drops_the_second_request().await;
    let client = UpstreamClient::new(&[]);
    let post = || http::Request::post(&srv.url).body(Bytes::from_static(br#"{"model":"m"}"#)).unwrap();
    assert_eq!(fetch(&client, post()).await.unwrap().1, "first");
    let err = fetch(&client, post()).await.unwrap_err();
    assert!(err.contains("closed before an answer"), "{err}");
    let seen = srv.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "the second POST reached the server once and was not resent: {seen:?}");
    assert_eq!(srv.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection_unless_the_rest_arrives_soon() {
    let srv =
        start(|_, _| (vec![b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial".to_vec()], After::Keep)).await;
    let client = UpstreamClient::new(&[]);
    for _ in 0..2 {
        let mut body = client.request(get(&srv.url)).await.unwrap().into_body();
        assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "partial");
        drop(body);
    }
    assert_eq!(srv.accepted.load(Ordering::SeqCst), 2, "a connection whose answer never ends is not reused");

    // A stream read up to its terminal event: the chunked end follows a moment later. The
    // connection is drained in the background and serves the next request.
    let stream = start(|_, _| {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        let event = b"data: {\"type\":\"response.completed\"}\n\n";
        let first = [&head[..], format!("{:x}\r\n", event.len()).as_bytes(), event, b"\r\n"].concat();
        (vec![first, b"e\r\ndata: [DONE]\n\n\r\n".to_vec(), b"0\r\n\r\n".to_vec()], After::Keep)
    })
    .await;
    for _ in 0..3 {
        let mut body = client.request(get(&stream.url)).await.unwrap().into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(first.starts_with(b"data: {"), "{first:?}");
        drop(body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stream.accepted.load(Ordering::SeqCst), 1, "one connection served every stream");
}

#[tokio::test]
async fn interim_answers_are_skipped_and_bodiless_answers_end_at_once() {
    let srv = start(|seen, _| {
        let wire: &[u8] = if seen.head.starts_with("HEAD") {
            b"HTTP/1.1 200 OK\r\ncontent-length: 999\r\n\r\n"
        } else if seen.head.contains("/nocontent") {
            b"HTTP/1.1 204 No Content\r\n\r\n"
        } else {
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\ndone"
        };
        (vec![wire.to_vec()], After::Keep)
    })
    .await;
    let client = UpstreamClient::new(&[]);
    assert_eq!(fetch(&client, get(&srv.url)).await.unwrap(), (http::StatusCode::CREATED, Bytes::from("done")));
    let head = http::Request::head(&srv.url).body(Bytes::new()).unwrap();
    assert_eq!(fetch(&client, head).await.unwrap(), (http::StatusCode::OK, Bytes::new()));
    let nc = get(&format!("{}/nocontent", srv.url));
    assert_eq!(fetch(&client, nc).await.unwrap(), (http::StatusCode::NO_CONTENT, Bytes::new()));
    assert_eq!(srv.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn broken_answers_are_errors_that_say_what_broke() {
    let cases: [(&[u8], &str); 6] = [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf", "closed before the answer's end"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel", "closed before the answer's end"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", "data longer than its size"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nab", "conflicting Content-Length"),
        (b"HTTX/1.1 twohundred\r\n\r\n", "malformed answer head"),
    ];
    let client = UpstreamClient::new(&[]);
    for (wire, want) in cases {
        let srv = start(move |_, _| (vec![wire.to_vec()], After::Close)).await;
        let err = fetch(&client, get(&srv.url)).await.expect_err(want);
        assert!(err.contains(want), "{err:?} should say {want:?}");
    }
    // Nothing listening: the error names where it tried to connect.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let err = fetch(&client, get(&format!("http://127.0.0.1:{port}/"))).await.unwrap_err();
    assert!(err.contains(&format!("connect to 127.0.0.1:{port}")), "{err}");
    let err = fetch(&client, get("ftp://127.0.0.1/")).await.unwrap_err();
    assert!(err.contains("unsupported URL scheme"), "{err}");
    // https to a server that answers in plain text: the handshake fails and says so.
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = plain.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = plain.accept().await.unwrap();
        let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
    });
    let err = fetch(&client, get(&format!("https://{addr}/"))).await.unwrap_err();
    assert!(err.contains(&format!("TLS handshake with {addr}")), "{err}");
    // A head that never ends is refused at its limit instead of buffered without end.
    let endless = start(|_, _| {
        let mut wire = b"HTTP/1.1 200 OK\r\nx-filler: ".to_vec();
        wire.resize(wire.len() + (80 << 10), b'a');
        (vec![wire], After::Keep)
    })
    .await;
    let err = fetch(&client, get(&endless.url)).await.unwrap_err();
    assert!(err.contains("larger than 64 KB"), "{err}");
}
