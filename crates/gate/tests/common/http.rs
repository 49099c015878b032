//! A minimal HTTP client for tests (hyper), which keeps the arrival time of every body chunk.

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::Instant;

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// (arrival, chunk) for every body chunk.
    pub chunks: Vec<(Instant, Bytes)>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// The `data:` payloads of an SSE body, parsed as JSON where they are JSON.
    pub fn events(&self) -> Vec<Value> {
        sse_data(&self.body).iter().map(|d| serde_json::from_str(d).unwrap_or(Value::String(d.clone()))).collect()
    }
    /// The `type` of every Responses event.
    pub fn event_types(&self) -> Vec<String> {
        self.events().iter().filter_map(|e| e["type"].as_str().map(str::to_owned)).collect()
    }
}

pub fn sse_data(body: &[u8]) -> Vec<String> {
    let mut d = codex_gate_protocol::sse::SseDecoder::default();
    let mut out = Vec::new();
    d.push(body, &mut out).unwrap();
    d.finish(&mut out).unwrap();
    out.into_iter().map(|e| e.data).collect()
}

pub async fn send(method: &str, url: &str, body: impl Into<Bytes>, headers: &[(&str, &str)]) -> Resp {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client.request(req.body(Full::new(body.into())).unwrap()).await.expect("request failed");
    let (parts, mut body) = resp.into_parts();
    let mut chunks = Vec::new();
    let mut all = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(d) = frame.into_data() {
            all.extend_from_slice(&d);
            chunks.push((Instant::now(), d));
        }
    }
    Resp { status: parts.status, headers: parts.headers, body: Bytes::from(all), chunks }
}

pub async fn post(url: &str, body: &Value) -> Resp {
    send("POST", url, body.to_string(), &[("content-type", "application/json")]).await
}

pub async fn get(url: &str) -> Resp {
    send("GET", url, Bytes::new(), &[]).await
}
