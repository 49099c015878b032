//! The mock's HTTP server: an accept loop on hyper, request recording, and scripted answers
//! played step by step so delays and cuts happen on the wire, not in a buffer.

use crate::render::*;
use crate::Scenario;
use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub(crate) type MockBody = BoxBody<Bytes, io::Error>;

/// Defaults for scenarios that do not set their own parameters.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Text deltas per answer.
    pub deltas: usize,
    /// Bytes per delta.
    pub delta_bytes: usize,
    /// Time between deltas.
    pub delay: Duration,
    /// Time before the first byte of the answer.
    pub ttft: Duration,
    /// Keep copies of the last this-many requests (0: record nothing, for benchmarks).
    pub record: usize,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self { deltas: 5, delta_bytes: 0, delay: Duration::ZERO, ttft: Duration::ZERO, record: 1000 }
    }
}

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RecordedRequest {
    /// A header's value as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON (Null if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// The request fields the mock acts on.
#[derive(Default, serde::Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
}

#[derive(serde::Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// (model, chat, stream, include_usage, tool): answers are pure functions of these.
type RenderKey = (String, bool, bool, bool, bool);

pub(crate) struct Shared {
    pub(crate) chatgpt: crate::chatgpt::ChatgptState,
    /// Answers rendered once and replayed, so a benchmark measures the relay, not the mock's JSON.
    rendered: Mutex<HashMap<RenderKey, Arc<[Step]>>>,
    pub(crate) opts: MockOptions,
    pub(crate) hits: AtomicUsize,
    log: Mutex<VecDeque<RecordedRequest>>,
    /// `/v1/responses` answers a WebSocket upgrade (as OpenAI's API does); off, it is refused
    /// the way an API without WebSocket refuses it.
    api_websocket: AtomicBool,
    /// TLS handshakes completed (an HTTPS mock): how often clients opened a new connection.
    tls_handshakes: AtomicUsize,
}

impl Shared {
    /// Keep a copy of a request (the last `opts.record` of them).
    pub(crate) fn record(&self, r: RecordedRequest) {
        if self.opts.record == 0 {
            return;
        }
        let mut log = self.log.lock();
        if log.len() >= self.opts.record {
            log.pop_front();
        }
        log.push_back(r);
    }
}

/// A running mock upstream; stops accepting when dropped.
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for MockUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockUpstream").field("addr", &self.addr).finish()
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockUpstream {
    /// Bind 127.0.0.1 on an ephemeral port and start serving.
    pub async fn start(opts: MockOptions) -> io::Result<MockUpstream> {
        Self::start_on("127.0.0.1:0", opts).await
    }

    /// Bind `addr` and start serving.
    pub async fn start_on(addr: &str, opts: MockOptions) -> io::Result<MockUpstream> {
        Self::serve(addr, opts, None).await
    }

    /// Bind `addr` and serve HTTPS with `tls` (its ALPN list decides HTTP/2 or HTTP/1.1).
    pub async fn start_tls_on(
        addr: &str,
        opts: MockOptions,
        tls: Arc<tokio_rustls::rustls::ServerConfig>,
    ) -> io::Result<MockUpstream> {
        Self::serve(addr, opts, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn serve(addr: &str, opts: MockOptions, tls: Option<tokio_rustls::TlsAcceptor>) -> io::Result<MockUpstream> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            chatgpt: Default::default(),
            opts,
            rendered: Mutex::new(HashMap::new()),
            hits: AtomicUsize::new(0),
            log: Mutex::new(VecDeque::new()),
            api_websocket: AtomicBool::new(false),
            tls_handshakes: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                let s = s.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let svc = {
                        let s = s.clone();
                        hyper::service::service_fn(move |req| handle(s.clone(), req))
                    };
                    match tls {
                        None => drop(builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await),
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else { return };
                            s.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                            drop(builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await)
                        }
                    }
                });
            }
        });
        Ok(MockUpstream { addr, shared, task })
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL a provider config points at.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Requests received so far (including ones answered with errors or resets).
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::Relaxed)
    }

    /// TLS handshakes completed so far (an HTTPS mock).
    pub fn tls_handshakes(&self) -> usize {
        self.shared.tls_handshakes.load(Ordering::Relaxed)
    }

    /// Copies of the recorded requests, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.log.lock().iter().cloned().collect()
    }

    /// Register a ChatGPT account: returns (access token, refresh token). `expired` makes the
    /// access token's `exp` lie in the past (it is still accepted, so proactive refresh is
    /// what is tested).
    pub fn add_chatgpt_account(&self, account_id: &str, expired: bool) -> (String, String) {
        let exp = if expired { 1_000 } else { 4_000_000_000 };
        let a = crate::chatgpt::MockAccount {
            access_token: crate::chatgpt::access_token(account_id, 0, exp),
            refresh_token: format!("rt-{account_id}-0"),
            behavior: None,
            refresh_error: None,
            serial: 0,
            usage_primary: 0.0,
            turns_left: None,
        };
        let out = (a.access_token.clone(), a.refresh_token.clone());
        self.shared.chatgpt.accounts.lock().insert(account_id.to_owned(), a);
        out
    }

    /// Open accounts: each takes any bearer token (and any `rt-<account>-<n>` refresh token), so
    /// a pool whose tokens were made outside this process can be served; the benchmark's
    /// `mock --open-accounts N` names them `bench-00000`, `bench-00001`, …
    pub fn open_chatgpt_accounts(&self, ids: impl IntoIterator<Item = String>) {
        self.shared.chatgpt.open.write().extend(ids);
    }

    /// Force a scenario for every request of an account (`None`: follow the model).
    pub fn set_account_behavior(&self, account_id: &str, behavior: Option<&str>) {
        match (self.shared.chatgpt.accounts.lock().get_mut(account_id), behavior) {
            (Some(a), _) => a.behavior = behavior.map(str::to_owned),
            // An account that signs in later (a login code's) gets it when its code is exchanged.
            (None, Some(b)) => {
                drop(self.shared.chatgpt.behavior_at_login.lock().insert(account_id.to_owned(), b.into()))
            }
            (None, None) => drop(self.shared.chatgpt.behavior_at_login.lock().remove(account_id)),
        }
    }

    /// Let the account answer `turns` more turns (HTTP or WebSocket), then reach its usage limit
    /// (`None`: no limit), so a limit can be reached inside one client's turn.
    pub fn set_turns_left(&self, account_id: &str, turns: Option<usize>) {
        if let Some(a) = self.shared.chatgpt.accounts.lock().get_mut(account_id) {
            a.turns_left = turns;
        }
    }

    /// What `wham/usage` and each turn's `x-codex-primary-*` headers report for the account's 5-hour window.
    pub fn set_usage(&self, account_id: &str, primary_used: f64) {
        if let Some(a) = self.shared.chatgpt.accounts.lock().get_mut(account_id) {
            a.usage_primary = primary_used;
        }
    }

    /// Make the account's refreshes fail: a numeric `code` is an HTTP status (transient, e.g.
    /// `503`), anything else a permanent 401 with that error code.
    pub fn set_refresh_error(&self, account_id: &str, code: Option<&str>) {
        if let Some(a) = self.shared.chatgpt.accounts.lock().get_mut(account_id) {
            a.refresh_error = code.map(str::to_owned);
        }
    }

    /// Revoke the current access token server-side (the next request gets 401).
    pub fn revoke_access(&self, account_id: &str) {
        if let Some(a) = self.shared.chatgpt.accounts.lock().get_mut(account_id) {
            a.access_token = format!("revoked-{}", a.access_token);
        }
    }

    /// An authorization code that logs `account` (plan `plan`) in when exchanged.
    pub fn add_login_code(&self, code: &str, account: &str, plan: &str) {
        self.shared.chatgpt.codes.lock().insert(code.to_owned(), (account.to_owned(), plan.to_owned()));
    }

    /// The device flow hands out `code` after `pending` polls answered "pending".
    pub fn set_device_code(&self, code: &str, pending: usize) {
        *self.shared.chatgpt.device.lock() = Some((code.to_owned(), pending));
    }

    /// The account's current tokens on the mock issuer.
    pub fn chatgpt_tokens(&self, account_id: &str) -> Option<(String, String)> {
        self.shared.chatgpt.accounts.lock().get(account_id).map(|a| (a.access_token.clone(), a.refresh_token.clone()))
    }

    /// Calls to the token endpoint so far.
    pub fn token_calls(&self) -> usize {
        self.shared.chatgpt.token_calls.load(Ordering::SeqCst)
    }

    /// Offer the Responses WebSocket on `/v1/responses` to API-key clients too.
    pub fn set_api_websocket(&self, on: bool) {
        self.shared.api_websocket.store(on, Ordering::SeqCst);
    }

    pub fn set_token_delay_ms(&self, ms: usize) {
        self.shared.chatgpt.token_delay_ms.store(ms, Ordering::SeqCst);
    }

    /// `…/backend-api` of this mock, for `kind = "chatgpt"` providers.
    pub fn backend_url(&self) -> String {
        format!("http://{}/backend-api", self.addr)
    }

    /// The issuer URL of this mock.
    pub fn issuer_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The most recent request.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.log.lock().back().cloned()
    }
}

impl Shared {
    fn rendered(&self, key: RenderKey, render: impl FnOnce() -> Vec<Step>) -> Arc<[Step]> {
        if let Some(steps) = self.rendered.lock().get(&key) {
            return steps.clone();
        }
        let steps: Arc<[Step]> = render().into();
        let mut cache = self.rendered.lock();
        if cache.len() >= 256 {
            cache.clear();
        }
        cache.insert(key, steps.clone());
        steps
    }
}

#[derive(Debug)]
struct Reset;
impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mock reset")
    }
}
impl std::error::Error for Reset {}

fn send(s: String) -> Step {
    Step::Send(Bytes::from(s))
}

pub(crate) enum Step {
    Send(Bytes),
    Sleep(u64),
    Cut,
    Hang,
}

pub(crate) fn full(status: StatusCode, v: &Value) -> Response<MockBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(v.to_string())).map_err(|e| match e {}).boxed())
        .unwrap()
}

async fn handle(s: Arc<Shared>, req: Request<Incoming>) -> Result<Response<MockBody>, Reset> {
    s.hits.fetch_add(1, Ordering::Relaxed);
    let upgrade = req.headers().get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if upgrade && req.uri().path().ends_with("/codex/responses") {
        return Ok(crate::ws::upgrade(s, req, false));
    }
    if upgrade && req.uri().path() == "/v1/responses" && s.api_websocket.load(Ordering::SeqCst) {
        return Ok(crate::ws::upgrade(s, req, true));
    }
    let (parts, body) = req.into_parts();
    let raw = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let body = if parts.headers.get(header::CONTENT_ENCODING).is_some_and(|v| v == "zstd") {
        let mut out = Vec::new();
        let ok = ruzstd::decoding::StreamingDecoder::new(&raw[..]).is_ok_and(|mut d| d.read_to_end(&mut out).is_ok());
        match ok {
            true => Bytes::from(out),
            false => {
                return Ok(full(StatusCode::BAD_REQUEST, &error_body("invalid_request_error", "bad_zstd", "bad zstd")))
            }
        }
    } else {
        raw
    };
    s.record(RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let path = parts.uri.path();
    // Counters for a mock in another process (the benchmark's).
    if parts.method == Method::GET && path == "/mock/stats" {
        let stats =
            json!({"hits": s.hits.load(Ordering::Relaxed), "tls_handshakes": s.tls_handshakes.load(Ordering::Relaxed)});
        return Ok(full(StatusCode::OK, &stats));
    }
    if parts.method == Method::GET && path.ends_with("/codex/models") {
        let h = |k: &str| parts.headers.get(k).and_then(|v| v.to_str().ok());
        return Ok(match s.chatgpt.check(h("authorization"), h("chatgpt-account-id")) {
            crate::chatgpt::Auth::Ok { .. } => full(StatusCode::OK, &crate::render::codex_catalog()),
            crate::chatgpt::Auth::Unauthorized => {
                full(StatusCode::UNAUTHORIZED, &error_body("invalid_request_error", "token_invalidated", "bad token"))
            }
        });
    }
    if parts.method == Method::GET && path.ends_with("/models") {
        return Ok(full(
            StatusCode::OK,
            &json!({"object": "list", "data": [{"id": "mock-model", "object": "model", "created": 0, "owned_by": "mock"}]}),
        ));
    }
    if parts.method == Method::GET && path == "/oauth/authorize" {
        // The sign-in page, signed in at once: back to the client's redirect_uri with a code
        // registered by `add_login_code` (the browser end-to-end test drives this).
        let q: HashMap<String, String> = parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (pct_decode(k), pct_decode(v)))
            .collect();
        let code = s.chatgpt.codes.lock().keys().min().cloned();
        return Ok(match (code, q.get("redirect_uri"), q.get("state")) {
            (Some(code), Some(back), Some(state)) => {
                let to = format!("{back}?code={}&state={}", pct_encode(&code), pct_encode(state));
                let mut r = full(StatusCode::FOUND, &json!({}));
                r.headers_mut().insert(header::LOCATION, to.parse().unwrap_or(http::HeaderValue::from_static("/")));
                r
            }
            _ => full(StatusCode::BAD_REQUEST, &json!({"error": "no login code registered, or no redirect_uri/state"})),
        });
    }
    if parts.method == Method::POST && path == "/oauth/token" {
        let delay = s.chatgpt.token_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay as u64)).await;
        }
        let form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/x-www-form-urlencoded"));
        let (status, v) = if form {
            let text = String::from_utf8_lossy(&body).into_owned();
            let fields = text
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (pct_decode(k), pct_decode(v)))
                .collect();
            s.chatgpt.exchange(&fields)
        } else {
            s.chatgpt.refresh(&serde_json::from_slice(&body).unwrap_or(Value::Null))
        };
        return Ok(full(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), &v));
    }
    // A SearXNG instance's JSON API: two results about the query; a query with "fail" in it
    // gets a 500, one with "slow" answers after 3 s.
    if parts.method == Method::GET && path == "/search" {
        let q: HashMap<String, String> = parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (pct_decode(k), pct_decode(&v.replace('+', " "))))
            .collect();
        let query = q.get("q").cloned().unwrap_or_default();
        if query.contains("fail") || q.get("format").map(String::as_str) != Some("json") {
            return Ok(full(StatusCode::INTERNAL_SERVER_ERROR, &json!({"error": "search backend down"})));
        }
        if query.contains("slow") {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let slug: String = query.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        return Ok(full(
            StatusCode::OK,
            &json!({"query": query, "number_of_results": 2, "results": [
                {"url": format!("https://example.org/{slug}"), "title": format!("Result for {query}"),
                 "content": format!("The first thing the web says about {query}."), "engine": "mock"},
                {"url": format!("https://example.com/{slug}"), "title": format!("More on {query}"),
                 "content": "A second opinion.", "engine": "mock"}]}),
        ));
    }
    if parts.method == Method::POST && path == "/api/accounts/deviceauth/usercode" {
        return Ok(full(
            StatusCode::OK,
            &json!({"device_auth_id": "dev-1", "user_code": "CODE-1234", "interval": "0"}),
        ));
    }
    if parts.method == Method::POST && path == "/api/accounts/deviceauth/token" {
        let (status, v) = s.chatgpt.device_poll();
        return Ok(full(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), &v));
    }
    if parts.method == Method::GET && path.ends_with("/wham/usage") {
        let h = |k: &str| parts.headers.get(k).and_then(|v| v.to_str().ok());
        return Ok(match s.chatgpt.check(h("authorization"), h("chatgpt-account-id")) {
            crate::chatgpt::Auth::Ok { usage_primary, .. } => full(
                StatusCode::OK,
                &json!({"plan_type": "plus", "rate_limit": {
                "allowed": true, "limit_reached": false,
                "primary_window": {"used_percent": usage_primary, "limit_window_seconds": 18000, "reset_after_seconds": 600, "reset_at": 4_000_000_000u64},
                "secondary_window": {"used_percent": 1, "limit_window_seconds": 604800, "reset_after_seconds": 6000, "reset_at": 4_000_100_000u64}}}),
            ),
            crate::chatgpt::Auth::Unauthorized => {
                full(StatusCode::UNAUTHORIZED, &error_body("invalid_request_error", "token_invalidated", "bad token"))
            }
        });
    }
    let mut forced: Option<String> = None;
    // The backend reports the account's windows on every turn (codex-protocol §5).
    let mut account_used: Option<f64> = None;
    let mut serving: Option<String> = None;
    // Every Codex path of the ChatGPT backend wants an account's token.
    if path.contains("/codex/") {
        let h = |k: &str| parts.headers.get(k).and_then(|v| v.to_str().ok());
        match s.chatgpt.check(h("authorization"), h("chatgpt-account-id")) {
            crate::chatgpt::Auth::Unauthorized => {
                return Ok(full(
                    StatusCode::UNAUTHORIZED,
                    &error_body("invalid_request_error", "token_invalidated", "bad token"),
                ));
            }
            crate::chatgpt::Auth::Ok { behavior, usage_primary, account } => {
                let turn = parts.method == Method::POST && (path.ends_with("/responses") || path.ends_with("/compact"));
                forced = if turn && !s.chatgpt.take_turn(&account) { Some("usage-limit".into()) } else { behavior };
                account_used = Some(usage_primary);
                serving = Some(account);
            }
        }
    }
    let chat = path.ends_with("/chat/completions");
    // The image endpoints (the ChatGPT backend's and the API's), and any other backend path,
    // which the mock answers with what it was asked (`/codex/mock-missing` is the backend's 404).
    let images =
        parts.method == Method::POST && (path.ends_with("/images/generations") || path.ends_with("/images/edits"));
    let echo = serving.is_some() && !images && !path.ends_with("/responses") && !path.ends_with("/responses/compact");
    // Compaction as OpenAI's backends do it: the older unary endpoint answers the new history;
    // a `/responses` turn ending in `compaction_trigger` answers one `compaction` item, which
    // the ChatGPT backend sends only in `output_item.done` (its `completed.output` is empty).
    if parts.method == Method::POST && path.ends_with("/responses/compact") {
        let n = s.hits.load(Ordering::SeqCst);
        return Ok(full(
            StatusCode::OK,
            &json!({"output": [{"type": "compaction", "encrypted_content": format!("mock-compaction-v1-{n}")}]}),
        ));
    }
    if parts.method == Method::POST
        && !chat
        && path.ends_with("/responses")
        && memfind(&body, b"\"compaction_trigger\"")
    {
        return Ok(compaction_answer(s.hits.load(Ordering::SeqCst), &body));
    }
    if path.ends_with("/codex/mock-missing")
        || !(images || echo) && (parts.method != Method::POST || !(chat || path.ends_with("/responses")))
    {
        return Ok(full(
            StatusCode::NOT_FOUND,
            &error_body("invalid_request_error", "not_found", "no such mock route"),
        ));
    }
    // Only the few fields the mock needs; the rest of a 400 KB body is skipped, not built.
    let head: Head = serde_json::from_slice(&body).unwrap_or_default();
    let model = forced.unwrap_or_else(|| head.model.as_deref().unwrap_or("ok").to_owned());
    let stream = head.stream.unwrap_or(false);
    let sc = Scenario::parse(&model, &s.opts);
    let has_tool_output = matches!(sc.name.as_str(), "tool" | "view-image")
        && (memfind(&body, b"function_call_output") || memfind(&body, b"\"role\":\"tool\""));

    match sc.name.as_str() {
        "reset" => return Err(Reset),
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Err(Reset);
        }
        "429" => {
            let mut r = full(
                StatusCode::TOO_MANY_REQUESTS,
                &error_body("requests", "rate_limit_exceeded", "Rate limit reached. Please try again in 1s."),
            );
            r.headers_mut().insert("retry-after", sc.retry_after.into());
            return Ok(r);
        }
        "usage-limit" => {
            let mut r = full(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached",
                                  "plan_type": "plus", "resets_at": 1_900_000_000}}),
            );
            let h = r.headers_mut();
            h.insert("x-codex-primary-used-percent", "100.0".parse().unwrap());
            h.insert("x-codex-primary-window-minutes", "300".parse().unwrap());
            h.insert("x-codex-primary-reset-at", "1900000000".parse().unwrap());
            return Ok(r);
        }
        "400" => {
            return Ok(full(
                StatusCode::BAD_REQUEST,
                &error_body("invalid_request_error", "invalid_value", "mock says the request is invalid"),
            ))
        }
        "500" => {
            return Ok(full(
                StatusCode::INTERNAL_SERVER_ERROR,
                &error_body("server_error", "internal_error", "mock internal error"),
            ))
        }
        // 200s that are not the API's answer: a captive portal's page, garbage, HTML labelled
        // as an event stream.
        "html-200" | "garbage-200" | "html-as-sse" => {
            let (ct, body): (&str, &[u8]) = match sc.name.as_str() {
                "html-200" => {
                    ("text/html; charset=utf-8", b"<!doctype html><html><body>Sign in to the Wi-Fi</body></html>")
                }
                "garbage-200" => ("application/json", b"\x00\x01 not json at all {"),
                _ => ("text/event-stream", b"<!doctype html><html><body>proxy error</body></html>"),
            };
            return Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, ct)
                .body(Full::new(Bytes::from_static(body)).map_err(|e| match e {}).boxed())
                .unwrap());
        }
        _ => {}
    }
    if images {
        return Ok(full(StatusCode::OK, &image_answer(path.ends_with("/edits"), &body)));
    }
    if echo {
        return Ok(full(
            StatusCode::OK,
            &json!({"method": parts.method.as_str(), "path": path, "query": parts.uri.query(),
                    "account": serving, "body_bytes": body.len()}),
        ));
    }
    if sc.name == "search" && chat && stream {
        let include_usage = head.stream_options.is_some_and(|o| o.include_usage);
        return Ok(sse_response(search_steps(&model, &body, include_usage)));
    }
    let tool = matches!(sc.name.as_str(), "tool" | "view-image") && !has_tool_output;
    let include_usage = head.stream_options.is_some_and(|o| o.include_usage);
    let key = (model.clone(), chat, stream, include_usage, tool);
    if !stream {
        if sc.ttft_ms > 0 {
            tokio::time::sleep(Duration::from_millis(sc.ttft_ms)).await;
        }
        let steps = s.rendered(key, || {
            let out = if chat { chat_whole(&sc, &model, tool) } else { responses_whole(&sc, &model, tool) };
            vec![send(out.to_string())]
        });
        let body = match steps.first() {
            Some(Step::Send(b)) => b.clone(),
            _ => Bytes::new(),
        };
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header("openai-model", served_model(&sc, &model))
            .body(Full::new(body).map_err(|e| match e {}).boxed())
            .unwrap());
    }
    let steps = s.rendered(key, || {
        let steps =
            if chat { chat_steps(&sc, &model, tool, include_usage) } else { responses_steps(&sc, &model, tool) };
        match sc.name.as_str() {
            "ragged" => ragged(steps),
            "pings" => pings(steps),
            _ => steps,
        }
    });
    // The backend's quota snapshot for the serving account, after the first step.
    let snapshot = account_used.filter(|_| !chat).map(|used| {
        Bytes::from(crate::render::sse(&json!({"type": "codex.rate_limits", "rate_limits": {
            "primary": {"used_percent": used, "window_minutes": 300, "reset_at": 1_900_000_000},
            "secondary": null}})))
    });
    let frames = futures_util::stream::unfold((steps, 0usize, snapshot), |(steps, mut i, mut snapshot)| async move {
        loop {
            if i > 0 {
                if let Some(b) = snapshot.take() {
                    return Some((Ok(Frame::data(b)), (steps, i, None)));
                }
            }
            let step = steps.get(i)?;
            i += 1;
            match step {
                Step::Send(b) => return Some((Ok(Frame::data(b.clone())), (steps, i, snapshot))),
                Step::Sleep(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
                Step::Cut => return Some((Err(io::Error::other("mock cut")), (steps, i, snapshot))),
                Step::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
            }
        }
    });
    let mut resp = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header("x-codex-turn-state", "mock-turn-state")
        .header("openai-model", served_model(&sc, &model))
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .unwrap();
    if let Some(used) = account_used {
        let h = resp.headers_mut();
        h.insert("x-codex-primary-used-percent", used.to_string().parse().unwrap());
        h.insert("x-codex-primary-window-minutes", "300".parse().unwrap());
        h.insert("x-codex-primary-reset-at", "1900000000".parse().unwrap());
        // The backend names the version of its own model catalog (Codex refreshes on a change).
        h.insert("x-models-etag", "\"mock-backend-models-1\"".parse().unwrap());
    }
    Ok(resp)
}

/// The model an upstream says served (`openai-model`, which Codex compares with the model it
/// asked for): the one asked for, or another one for `rerouted` (as OpenAI's backend reports a
/// fallback).
pub(crate) fn served_model(sc: &Scenario, model: &str) -> String {
    if sc.name == "rerouted" {
        "mock-fallback-model".to_owned()
    } else {
        model.to_owned()
    }
}

fn pct_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every send cut into 13-byte pieces 1 ms apart, so a relay reads events split at odd places.
fn ragged(steps: Vec<Step>) -> Vec<Step> {
    let mut out = Vec::with_capacity(steps.len() * 16);
    for step in steps {
        match step {
            Step::Send(b) => {
                for piece in b.chunks(13) {
                    out.push(Step::Send(Bytes::copy_from_slice(piece)));
                    out.push(Step::Sleep(1));
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// An SSE comment before every send, as some providers and proxies send to keep a stream alive.
fn pings(steps: Vec<Step>) -> Vec<Step> {
    let mut out = Vec::with_capacity(steps.len() * 2);
    for step in steps {
        if matches!(step, Step::Send(_)) {
            out.push(send(": keep-alive\n\n".into()));
        }
        out.push(step);
    }
    out
}

/// A stream that breaks the grammar the way real upstreams have: no `response.created`, deltas
/// without `output_item.added`, a vendor event, an empty `completed.output` and `usage: {}`.
fn sloppy_steps(model: &str) -> Vec<Step> {
    let item = message_item("msg_sloppy", "sloppy");
    let resp = response_obj("resp_sloppy", model, "completed", vec![], Some(json!({})));
    vec![send(
        sse(
            &json!({"type": "response.output_text.delta", "item_id": "msg_sloppy", "output_index": 0, "content_index": 0, "delta": "sloppy"}),
        ) + &sse(&json!({"type": "codex.rate_limits", "rate_limits": {"primary": {"used_percent": 10.0}}}))
            + &sse(&json!({"type": "response.output_item.done", "output_index": 0, "item": item}))
            + &sse(&json!({"type": "response.completed", "response": resp})),
    )]
}

/// What a broken proxy in front of an upstream may splice into a stream.
const MID_STREAM_GARBAGE: &str = "data: <html><body><h1>502 Bad Gateway</h1></body></html>\n\n";

/// Deltas sent before a scripted failure cuts in (all of them otherwise).
fn delta_count(sc: &Scenario) -> usize {
    match sc.name.as_str() {
        "truncated" | "cut-mid-event" | "garbage-mid-stream" => sc.deltas.min(2),
        "failed" => sc.deltas.min(1),
        _ => sc.deltas,
    }
}

pub(crate) fn responses_steps(sc: &Scenario, model: &str, tool: bool) -> Vec<Step> {
    if sc.name == "sloppy" {
        return sloppy_steps(model);
    }
    let id = "resp_mock";
    let mut steps = Vec::with_capacity(sc.deltas * 2 + 8);
    if sc.ttft_ms > 0 {
        steps.push(Step::Sleep(sc.ttft_ms));
    }
    let created = response_obj(id, model, "in_progress", vec![], None);
    steps.push(send(sse(&json!({"type": "response.created", "sequence_number": 0, "response": created}))));
    if sc.name == "stall" {
        steps.push(Step::Hang);
        return steps;
    }
    steps.push(send(sse(&json!({"type": "response.in_progress", "sequence_number": 1, "response": created}))));
    if tool {
        let mut item = function_item(sc);
        let args = item["arguments"].as_str().unwrap_or_default().to_owned();
        item["arguments"] = json!("");
        item["status"] = json!("in_progress");
        let done = function_item(sc);
        steps.push(send(
            sse(&json!({"type": "response.output_item.added", "output_index": 0, "item": item}))
                + &sse(&json!({"type": "response.function_call_arguments.delta", "item_id": "fc_mock_1", "output_index": 0, "delta": args}))
                + &sse(&json!({"type": "response.function_call_arguments.done", "item_id": "fc_mock_1", "output_index": 0, "arguments": args}))
                + &sse(&json!({"type": "response.output_item.done", "output_index": 0, "item": done})),
        ));
        let resp = response_obj(id, model, "completed", vec![done], Some(usage_responses()));
        steps.push(send(sse(&json!({"type": "response.completed", "response": resp}))));
        return steps;
    }
    let mid = "msg_mock_1";
    steps.push(send(
        sse(&json!({"type": "response.output_item.added", "output_index": 0,
                    "item": {"type": "message", "id": mid, "status": "in_progress", "role": "assistant", "content": []}}))
            + &sse(&json!({"type": "response.content_part.added", "item_id": mid, "output_index": 0, "content_index": 0,
                           "part": {"type": "output_text", "text": "", "annotations": []}})),
    ));
    for i in 0..delta_count(sc) {
        if i > 0 && sc.delay_ms > 0 {
            steps.push(Step::Sleep(sc.delay_ms));
        }
        steps.push(send(sse(&json!({"type": "response.output_text.delta", "item_id": mid, "output_index": 0,
                                          "content_index": 0, "delta": delta_text(i, sc.size)}))));
    }
    if sc.name == "garbage-mid-stream" {
        steps.push(Step::Sleep(20));
        steps.push(send(MID_STREAM_GARBAGE.to_owned()));
    }
    match sc.name.as_str() {
        // Pause first so what was sent is flushed: the cut then lands mid-stream, after bytes.
        "truncated" => steps.extend([Step::Sleep(50), Step::Cut]),
        "no-terminal" => {}
        "failed" => {
            let code = sc.code.as_deref().unwrap_or("server_error");
            let mut resp = response_obj(id, model, "failed", vec![], None);
            resp["error"] = json!({"code": code, "message": format!("mock failure ({code})")});
            steps.push(send(sse(&json!({"type": "response.failed", "response": resp}))));
        }
        _ => {
            let text = full_text(sc);
            let item = message_item(mid, &text);
            let resp = response_obj(id, model, "completed", vec![item.clone()], Some(usage_responses()));
            steps.push(send(
                sse(&json!({"type": "response.output_text.done", "item_id": mid, "output_index": 0, "content_index": 0, "text": text}))
                    + &sse(&json!({"type": "response.content_part.done", "item_id": mid, "output_index": 0, "content_index": 0,
                                   "part": {"type": "output_text", "text": text, "annotations": []}}))
                    + &sse(&json!({"type": "response.output_item.done", "output_index": 0, "item": item}))
                    + &sse(&json!({"type": "response.completed", "response": resp})),
            ));
        }
    }
    steps
}

fn chat_steps(sc: &Scenario, model: &str, tool: bool, include_usage: bool) -> Vec<Step> {
    let mut steps = Vec::with_capacity(sc.deltas * 2 + 6);
    if sc.ttft_ms > 0 {
        steps.push(Step::Sleep(sc.ttft_ms));
    }
    steps.push(send(sse_data(&chat_chunk(model, json!({"role": "assistant", "content": ""}), None).to_string())));
    if sc.name == "stall" {
        steps.push(Step::Hang);
        return steps;
    }
    let finish = if tool {
        let (id, name, args) = tool_call(sc);
        let (a, b) = args.split_at(args.len() / 2);
        steps.push(send(sse_data(
            &chat_chunk(model, json!({"tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": a}}]}), None)
                .to_string(),
        )));
        steps.push(send(sse_data(
            &chat_chunk(model, json!({"tool_calls": [{"index": 0, "function": {"arguments": b}}]}), None).to_string(),
        )));
        "tool_calls"
    } else {
        for i in 0..delta_count(sc) {
            if i > 0 && sc.delay_ms > 0 {
                steps.push(Step::Sleep(sc.delay_ms));
            }
            steps
                .push(send(sse_data(&chat_chunk(model, json!({"content": delta_text(i, sc.size)}), None).to_string())));
        }
        "stop"
    };
    if sc.name == "garbage-mid-stream" {
        steps.push(Step::Sleep(20));
        steps.push(send(MID_STREAM_GARBAGE.to_owned()));
    }
    match sc.name.as_str() {
        // Pause first so what was sent is flushed: the cut then lands mid-stream, after bytes.
        "truncated" => steps.extend([Step::Sleep(50), Step::Cut]),
        // Half of the next event, then the cut: the client must never see that half.
        "cut-mid-event" => {
            let next = sse_data(&chat_chunk(model, json!({"content": "never whole"}), None).to_string());
            steps.extend([send(next[..next.len() / 2].to_owned()), Step::Sleep(50), Step::Cut]);
        }
        "no-terminal" => {}
        "failed" => {
            let code = sc.code.as_deref().unwrap_or("server_error");
            steps
                .push(send(sse_data(&error_body("server_error", code, &format!("mock failure ({code})")).to_string())));
        }
        _ => {
            let mut tail = sse_data(&chat_chunk(model, json!({}), Some(finish)).to_string());
            if include_usage {
                let u = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_755_000_000,
                               "model": model, "choices": [], "usage": usage_chat()});
                tail += &sse_data(&u.to_string());
            }
            tail += &sse_data("[DONE]");
            steps.push(send(tail));
        }
    }
    steps
}

/// An event stream of `steps` that are all sends.
fn sse_response(steps: Vec<Step>) -> Response<MockBody> {
    let frames = futures_util::stream::iter(steps.into_iter().filter_map(|st| match st {
        Step::Send(b) => Some(Ok::<_, io::Error>(Frame::data(b))),
        _ => None,
    }));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .unwrap()
}

/// Scenario `search` on chat: a model that uses the `web_search` function it is offered. Without
/// a search result in the conversation it calls the function (the query is the last user text);
/// with one it answers with the first result's title line; without the function, it says so.
fn search_steps(model: &str, body: &[u8], include_usage: bool) -> Vec<Step> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let messages = v["messages"].as_array().cloned().unwrap_or_default();
    let offered = v["tools"].as_array().into_iter().flatten().any(|t| t["function"]["name"] == "web_search");
    let result =
        messages.iter().rev().find(|m| m["role"] == "tool").and_then(|m| m["content"].as_str().map(str::to_owned));
    let question = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.as_array().into_iter().flatten().filter_map(|p| p["text"].as_str()).collect(),
        })
        .unwrap_or_default();
    let mut steps =
        vec![send(sse_data(&chat_chunk(model, json!({"role": "assistant", "content": ""}), None).to_string()))];
    let finish = match (offered, result) {
        (true, None) => {
            let args = json!({"query": question.trim()}).to_string();
            steps.push(send(sse_data(&chat_chunk(model, json!({"content": "Searching. "}), None).to_string())));
            steps.push(send(sse_data(
                &chat_chunk(
                    model,
                    json!({"tool_calls": [{"index": 0, "id": "call_search_1", "type": "function",
                    "function": {"name": "web_search", "arguments": args}}]}),
                    None,
                )
                .to_string(),
            )));
            "tool_calls"
        }
        (_, Some(r)) => {
            let line = r
                .lines()
                .find(|l| l.starts_with("[1] "))
                .map(str::to_owned)
                .unwrap_or_else(|| format!("no results ({r})"));
            steps.push(send(sse_data(
                &chat_chunk(model, json!({"content": format!("The web says: {line}")}), None).to_string(),
            )));
            "stop"
        }
        (false, None) => {
            steps.push(send(sse_data(
                &chat_chunk(model, json!({"content": "I cannot search the web."}), None).to_string(),
            )));
            "stop"
        }
    };
    let mut tail = sse_data(&chat_chunk(model, json!({}), Some(finish)).to_string());
    if include_usage {
        let u = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_755_000_000,
                       "model": model, "choices": [], "usage": usage_chat()});
        tail += &sse_data(&u.to_string());
    }
    tail += &sse_data("[DONE]");
    steps.push(send(tail));
    steps
}

/// An image answer shaped like the Images API's (what Codex's image tool decodes): one PNG
/// (the 1×1 pixel below), the usage in tokens, and the prompt it was given.
fn image_answer(edit: bool, body: &[u8]) -> Value {
    const PIXEL: &str =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==";
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    json!({
        "created": 1_778_832_973u64,
        "background": "opaque",
        "data": [{"b64_json": PIXEL, "revised_prompt": v.get("prompt")}],
        "output_format": "png",
        "quality": "medium",
        "size": v.get("size").cloned().unwrap_or(json!("1024x1024")),
        "usage": {"input_tokens": if edit { 1474 } else { 17 }, "output_tokens": 1372, "total_tokens": if edit { 2846 } else { 1389 },
                  "input_tokens_details": {"image_tokens": if edit { 1457 } else { 0 }, "text_tokens": 17}}
    })
}

/// A compaction turn's answer: one `compaction` item, streamed with an empty `completed.output`.
fn compaction_answer(n: usize, body: &[u8]) -> Response<MockBody> {
    let head: Head = serde_json::from_slice(body).unwrap_or_default();
    let model = head.model.as_deref().unwrap_or("mock").to_owned();
    let (item, events) = crate::render::compaction_events(n, &model);
    if !head.stream.unwrap_or(false) {
        return full(
            StatusCode::OK,
            &response_obj("resp_cmp", &model, "completed", vec![item], Some(usage_responses())),
        );
    }
    let text: String = events.iter().map(sse).collect();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Full::new(Bytes::from(text)).map_err(|e| match e {}).boxed())
        .unwrap()
}

fn responses_whole(sc: &Scenario, model: &str, tool: bool) -> Value {
    let output = if tool { vec![function_item(sc)] } else { vec![message_item("msg_mock_1", &full_text(sc))] };
    response_obj("resp_mock", model, "completed", output, Some(usage_responses()))
}

fn chat_whole(sc: &Scenario, model: &str, tool: bool) -> Value {
    if tool {
        let (id, name, args) = tool_call(sc);
        let msg = json!({"role": "assistant", "content": null,
                         "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": args}}]});
        return chat_completion(model, msg, "tool_calls");
    }
    chat_completion(model, json!({"role": "assistant", "content": full_text(sc)}), "stop")
}
