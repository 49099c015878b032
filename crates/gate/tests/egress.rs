//! Egress over real sockets: a TLS upstream whose certificate comes from a test CA trusted
//! through `[egress] ca_file` (success, and the typed failure without it), connection reuse after
//! streams over TLS, and the same upstream reached through an HTTP CONNECT proxy and a SOCKS5
//! proxy written here, plus a dead proxy's typed error. An HTTP/2 upstream (hyper's server, by
//! ALPN): concurrent turns share one connection, each pool account gets its own, and a connection
//! the server closed is replaced.

mod common;

use common::http::post;
use common::{Gate, TempDir};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

/// A test CA (its PEM) and a server config for `localhost` signed by it, offering HTTP/1.1 only.
fn test_pki() -> (String, Arc<rustls::ServerConfig>) {
    test_pki_alpn(&[b"http/1.1"])
}

/// As [`test_pki`], offering these protocols by ALPN.
fn test_pki_alpn(alpn: &[&[u8]]) -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "codex-gate test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (ca_cert.pem(), Arc::new(cfg))
}

const STREAM: &[&str] = &[
    r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_tls","object":"response","created_at":1,"status":"in_progress","model":"m","output":[]}}"#,
    r#"{"type":"response.output_text.delta","sequence_number":1,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"over TLS"}"#,
    r#"{"type":"response.completed","sequence_number":2,"response":{"id":"resp_tls","object":"response","created_at":1,"status":"completed","model":"m","output":[{"type":"message","id":"msg_1","role":"assistant","status":"completed","content":[{"type":"output_text","text":"over TLS","annotations":[]}]}],"usage":{"input_tokens":3,"output_tokens":2,"total_tokens":5}}}"#,
];

/// An HTTPS Responses upstream: every request gets a short chunked SSE stream, keep-alive.
/// Returns its port and the number of TLS handshakes it completed.
async fn tls_upstream(cfg: Arc<rustls::ServerConfig>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let h = handshakes.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, h) = (acceptor.clone(), h.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                h.fetch_add(1, Ordering::SeqCst);
                let mut buf = Vec::new();
                loop {
                    // Read one request: head, then Content-Length bytes.
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 16384];
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0);
                    while buf.len() < end + len {
                        let mut chunk = [0u8; 16384];
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + len);
                    let mut out =
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                            .to_vec();
                    for ev in STREAM {
                        let data = format!("data: {ev}\n\n");
                        out.extend_from_slice(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes());
                    }
                    if tls.write_all(&out).await.is_err() {
                        return;
                    }
                    // The chunked end comes a moment after the terminal event, as from real servers.
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    if tls.write_all(b"0\r\n\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, handshakes)
}

/// What the HTTP/2 upstream saw.
#[derive(Default)]
struct Seen {
    handshakes: AtomicUsize,
    h2_requests: AtomicUsize,
    in_flight: AtomicUsize,
    /// The most requests it held at once.
    peak: AtomicUsize,
}

/// An HTTPS upstream on hyper's server (HTTP/2 or 1.1, whichever ALPN chose): each request is
/// held for `delay`, then answered with the short SSE stream; with `life`, every connection is
/// cut that long after its handshake.
async fn h2_upstream(
    cfg: Arc<rustls::ServerConfig>,
    delay: std::time::Duration,
    life: Option<std::time::Duration>,
) -> (u16, Arc<Seen>) {
    use http_body_util::BodyExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, s) = (acceptor.clone(), s.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                s.handshakes.fetch_add(1, Ordering::SeqCst);
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let s = s.clone();
                    async move {
                        if req.version() == http::Version::HTTP_2 {
                            s.h2_requests.fetch_add(1, Ordering::SeqCst);
                        }
                        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        s.peak.fetch_max(now, Ordering::SeqCst);
                        let _ = req.into_body().collect().await;
                        tokio::time::sleep(delay).await;
                        s.in_flight.fetch_sub(1, Ordering::SeqCst);
                        let body: String = STREAM.iter().map(|e| format!("data: {e}\n\n")).collect();
                        let resp = http::Response::builder()
                            .header("content-type", "text/event-stream")
                            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), svc);
                match life {
                    Some(life) => {
                        let _ = tokio::time::timeout(life, conn).await;
                    }
                    None => {
                        let _ = conn.await;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// Copy both ways until either side closes.
async fn pipe(a: TcpStream, b: TcpStream) {
    let (mut ar, mut aw) = a.into_split();
    let (mut br, mut bw) = b.into_split();
    let _ = tokio::join!(tokio::io::copy(&mut ar, &mut bw), tokio::io::copy(&mut br, &mut aw));
}

/// A proxy on 127.0.0.1 that runs `handle` for each client; `handle` records each target it
/// was asked for in the shared list.
async fn proxy_server<F, Fut>(handle: F) -> (u16, Arc<Mutex<Vec<String>>>)
where
    F: Fn(TcpStream, Arc<Mutex<Vec<String>>>) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((c, _)) = listener.accept().await else { return };
            tokio::spawn(handle(c, s.clone()));
        }
    });
    (port, seen)
}

/// An HTTP CONNECT proxy; records each CONNECT target.
async fn connect_proxy() -> (u16, Arc<Mutex<Vec<String>>>) {
    proxy_server(|mut c: TcpStream, s: Arc<Mutex<Vec<String>>>| async move {
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut b = [0u8; 1];
            if c.read_exact(&mut b).await.is_err() {
                return;
            }
            head.push(b[0]);
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let target = text.split_whitespace().nth(1).unwrap_or("").to_owned();
        s.lock().unwrap().push(target.clone());
        let (host, port) = target.rsplit_once(':').unwrap();
        let Ok(up) = TcpStream::connect((host, port.parse::<u16>().unwrap())).await else { return };
        c.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await.unwrap();
        pipe(c, up).await;
    })
    .await
}

/// A SOCKS5 proxy (no auth; domain, IPv4 targets); records each target host.
async fn socks5_proxy() -> (u16, Arc<Mutex<Vec<String>>>) {
    proxy_server(|mut c: TcpStream, s: Arc<Mutex<Vec<String>>>| async move {
        let mut greet = [0u8; 2];
        c.read_exact(&mut greet).await.unwrap();
        let mut methods = vec![0u8; greet[1] as usize];
        c.read_exact(&mut methods).await.unwrap();
        c.write_all(&[5, 0]).await.unwrap();
        let mut req = [0u8; 4];
        c.read_exact(&mut req).await.unwrap();
        let host = match req[3] {
            3 => {
                let mut len = [0u8; 1];
                c.read_exact(&mut len).await.unwrap();
                let mut name = vec![0u8; len[0] as usize];
                c.read_exact(&mut name).await.unwrap();
                String::from_utf8(name).unwrap()
            }
            1 => {
                let mut ip = [0u8; 4];
                c.read_exact(&mut ip).await.unwrap();
                std::net::Ipv4Addr::from(ip).to_string()
            }
            _ => return,
        };
        let mut p = [0u8; 2];
        c.read_exact(&mut p).await.unwrap();
        s.lock().unwrap().push(host.clone());
        let Ok(up) = TcpStream::connect((host.as_str(), u16::from_be_bytes(p))).await else { return };
        c.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await.unwrap();
        pipe(c, up).await;
    })
    .await
}

fn provider(name: &str, port: u16, extra: &str) -> String {
    format!(
        "[[providers]]\nname = \"{name}\"\nkind = \"responses\"\nbase_url = \"https://localhost:{port}/v1\"\napi_key = \"sk-{name}\"\n{extra}\n"
    )
}

async fn turn(gate: &Gate, model: &str) -> common::http::Resp {
    post(&gate.url("/v1/responses"), &json!({"model": model, "input": "hi", "stream": true})).await
}

#[tokio::test]
async fn a_tls_upstream_from_a_test_ca_through_direct_connect_and_socks5_paths() {
    let (ca_pem, server_cfg) = test_pki();
    let dir = TempDir::new();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let (port, handshakes) = tls_upstream(server_cfg).await;
    let (pport, connects) = connect_proxy().await;
    let (sport, socks) = socks5_proxy().await;
    let cfg = format!(
        "[egress]\nca_file = \"{}\"\nenv_proxy = false\n{}{}{}{}",
        ca_file.display(),
        provider("tls", port, ""),
        provider("viaconnect", port, &format!("proxy = \"http://127.0.0.1:{pport}\"")),
        provider("viasocks", port, &format!("proxy = \"socks5h://127.0.0.1:{sport}\"")),
        provider("deadproxy", port, "proxy = \"http://127.0.0.1:9\""),
    );
    let gate = Gate::start(&cfg).await;

    // Direct, five turns back to back: one TLS handshake serves them all.
    for i in 0..5 {
        let r = turn(&gate, "tls/m").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.event_types().last().map(String::as_str), Some("response.completed"), "turn {i}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(handshakes.load(Ordering::SeqCst), 1, "connections are reused after streams");

    let r = turn(&gate, "viaconnect/m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("over TLS"));
    assert_eq!(*connects.lock().unwrap(), [format!("localhost:{port}")], "tunnelled by CONNECT");

    let r = turn(&gate, "viasocks/m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(*socks.lock().unwrap(), ["localhost"], "socks5h: the proxy resolves the name");
    assert_eq!(handshakes.load(Ordering::SeqCst), 3, "each route has connections of its own");

    let r = turn(&gate, "deadproxy/m").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"]["code"], "upstream_proxy_failed", "{}", r.text());
    let rows = gate.records(8).await;
    assert_eq!(rows[0].error_code.as_deref(), Some("upstream_proxy_failed"));
}

#[tokio::test]
async fn without_the_ca_the_handshake_fails_with_its_own_code() {
    let (_ca, server_cfg) = test_pki();
    let (port, _) = tls_upstream(server_cfg).await;
    let gate = Gate::start(&format!("[egress]\nenv_proxy = false\n{}", provider("tls", port, ""))).await;
    let r = turn(&gate, "tls/m").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"]["code"], "upstream_tls_failed", "{}", r.text());
    let text = common::http::get(&gate.url("/metrics")).await.text();
    assert!(text.contains(r#"code="upstream_tls_failed"} 1"#), "{text}");
}

#[test]
fn a_bad_ca_file_is_refused_naming_the_key() {
    let dir = TempDir::new();
    let f = dir.path().join("ca.pem");
    std::fs::write(&f, "not a certificate").unwrap();
    let e =
        codex_gate::config::Config::from_toml_str(&format!("[egress]\nca_file = \"{}\"", f.display()), None, &|_| None)
            .unwrap_err();
    assert_eq!(e.key, "egress.ca_file", "{e}");
    let e = codex_gate::config::Config::from_toml_str("[egress]\nproxy = \"ftp://x\"", None, &|_| None).unwrap_err();
    assert_eq!(e.key, "egress.proxy");
}

#[tokio::test]
async fn a_pool_account_with_its_own_proxy_egresses_through_it_and_the_others_do_not() {
    use codex_gate_mock::{MockOptions, MockUpstream};
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-p", false);
    mock.add_chatgpt_account("acc-d", false);
    let (pport, connects) = connect_proxy().await;
    let cfg = format!(
        "[egress]\nenv_proxy = false\n[pool]\nissuer = \"{}\"\n[[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"{}\"\n",
        mock.issuer_url(),
        mock.backend_url()
    );
    let gate = Gate::start(&cfg).await;
    let proxied = gate.add_account(&mock, "acc-p", "plus").await;
    let direct = gate.add_account(&mock, "acc-d", "plus").await;
    let proxy = format!("http://127.0.0.1:{pport}");
    let sealed = gate.app.pool.cipher().seal(&proxy, &codex_gate::secrets::place("accounts", &proxied, "proxy"));
    assert!(gate.store.set_account_proxy(&proxied, Some(&sealed)).await.unwrap());
    let only = |on: &str, off: &str| {
        let (on, off, store) = (on.to_owned(), off.to_owned(), gate.store.clone());
        async move {
            store.set_account_status(&on, "active", None).await.unwrap();
            store.set_account_status(&off, "paused", None).await.unwrap();
        }
    };
    only(&proxied, &direct).await;
    gate.app.pool.load().await.unwrap();
    let r = turn(&gate, "pool/gpt-5.5").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let backend = mock.backend_url().parse::<http::Uri>().unwrap();
    let target = format!("{}:{}", backend.host().unwrap(), backend.port_u16().unwrap());
    assert_eq!(*connects.lock().unwrap(), [target], "the proxied account went through its proxy");

    only(&direct, &proxied).await;
    gate.app.pool.load().await.unwrap();
    let r = turn(&gate, "pool/gpt-5.5").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(connects.lock().unwrap().len(), 1, "the other account connects directly");
}

/// `[egress]` trusting a fresh test CA, and a server config offering h2 and HTTP/1.1.
fn h2_setup(dir: &TempDir) -> (String, Arc<rustls::ServerConfig>) {
    let (ca_pem, server_cfg) = test_pki_alpn(&[b"h2", b"http/1.1"]);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    (format!("[egress]\nca_file = \"{}\"\nenv_proxy = false\n", ca_file.display()), server_cfg)
}

#[tokio::test]
async fn an_http2_upstream_carries_concurrent_turns_on_one_connection() {
    let dir = TempDir::new();
    let (egress, server_cfg) = h2_setup(&dir);
    let (port, seen) = h2_upstream(server_cfg, std::time::Duration::from_millis(300), None).await;
    let gate = Gate::start(&format!("{egress}{}", provider("h2", port, ""))).await;
    // A first turn opens the connection; eight at once then share it.
    let r = turn(&gate, "h2/m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let turns = (0..8).map(|_| turn(&gate, "h2/m"));
    for r in futures_util::future::join_all(turns).await {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.event_types().last().map(String::as_str), Some("response.completed"));
        assert!(r.text().contains("over TLS"));
    }
    assert_eq!(seen.h2_requests.load(Ordering::SeqCst), 9, "every turn went over HTTP/2");
    assert_eq!(seen.handshakes.load(Ordering::SeqCst), 1, "one connection");
    assert!(seen.peak.load(Ordering::SeqCst) >= 4, "streams ran at once: {}", seen.peak.load(Ordering::SeqCst));
    let rows = gate.records(9).await;
    assert!(rows.iter().all(|r| r.status == 200 && r.error_code.is_none()));
}

#[tokio::test]
async fn an_http2_connection_the_server_closed_is_replaced_without_failing_the_turn() {
    let dir = TempDir::new();
    let (egress, server_cfg) = h2_setup(&dir);
    let life = std::time::Duration::from_millis(400);
    let (port, seen) = h2_upstream(server_cfg, std::time::Duration::ZERO, Some(life)).await;
    let gate = Gate::start(&format!("{egress}{}", provider("h2", port, ""))).await;
    for i in 0..3 {
        let r = turn(&gate, "h2/m").await;
        assert_eq!(r.status, 200, "turn {i}: {}", r.text());
        assert_eq!(r.event_types().last().map(String::as_str), Some("response.completed"));
        tokio::time::sleep(life + std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(seen.handshakes.load(Ordering::SeqCst), 3, "a new connection after each close");
    assert_eq!(seen.h2_requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn each_pool_account_gets_its_own_http2_connection() {
    use codex_gate_mock::{MockOptions, MockUpstream};
    let dir = TempDir::new();
    let (egress, server_cfg) = h2_setup(&dir);
    let (port, seen) = h2_upstream(server_cfg, std::time::Duration::ZERO, None).await;
    // The mock is the token issuer; the backend is the HTTP/2 upstream.
    let mock = MockUpstream::start(MockOptions::default()).await.unwrap();
    mock.add_chatgpt_account("acc-1", false);
    mock.add_chatgpt_account("acc-2", false);
    let cfg = format!(
        "{egress}[pool]\nissuer = \"{}\"\n[[providers]]\nname = \"pool\"\nkind = \"chatgpt\"\nbase_url = \"https://localhost:{port}/backend-api/codex\"\n",
        mock.issuer_url()
    );
    let gate = Gate::start(&cfg).await;
    let one = gate.add_account(&mock, "acc-1", "plus").await;
    let two = gate.add_account(&mock, "acc-2", "plus").await;
    for (on, off) in [(&one, &two), (&two, &one), (&one, &two), (&two, &one)] {
        gate.store.set_account_status(on, "active", None).await.unwrap();
        gate.store.set_account_status(off, "paused", None).await.unwrap();
        gate.app.pool.load().await.unwrap();
        let r = turn(&gate, "pool/gpt-5.5").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(seen.h2_requests.load(Ordering::SeqCst), 4);
    assert_eq!(seen.handshakes.load(Ordering::SeqCst), 2, "one connection per account, each reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_from_the_environment_is_used_and_no_proxy_exempts_a_host() {
    let (ca_pem, server_cfg) = test_pki();
    let dir = TempDir::new();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let (port, _) = tls_upstream(server_cfg).await;
    let (pport, connects) = connect_proxy().await;
    // In a process of its own: the environment is read once, at start.
    for (i, no_proxy) in [None, Some("example.org,localhost")].into_iter().enumerate() {
        let gport = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cfg = dir.path().join(format!("gate{i}.toml"));
        let db = dir.path().join(format!("gate{i}.db"));
        std::fs::write(
            &cfg,
            format!(
                "[server]\nlisten = \"127.0.0.1:{gport}\"\n[store]\nurl = \"sqlite://{}\"\n[egress]\nca_file = \"{}\"\n{}",
                db.display(),
                ca_file.display(),
                provider("tls", port, "")
            ),
        )
        .unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_codex-gate"));
        cmd.args(["--config", cfg.to_str().unwrap(), "serve"])
            .env("HOME", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for v in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy", "https_proxy"] {
            cmd.env_remove(v);
        }
        cmd.env("HTTPS_PROXY", format!("http://127.0.0.1:{pport}"));
        if let Some(n) = no_proxy {
            cmd.env("NO_PROXY", n);
        }
        let mut child = cmd.spawn().unwrap();
        let base = format!("http://127.0.0.1:{gport}");
        let mut up = false;
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", gport)).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(up, "the gateway did not start");
        let r = post(&format!("{base}/v1/responses"), &json!({"model": "tls/m", "input": "hi", "stream": true})).await;
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("over TLS"));
        // The first gateway tunnelled through the proxy; the second, with the host in NO_PROXY,
        // connected directly and added nothing to the proxy's list.
        assert_eq!(*connects.lock().unwrap(), [format!("localhost:{port}")], "NO_PROXY={no_proxy:?}");
    }
}
