//! `[web_search]`: the searches a chat model asks for through the gateway's `web_search`
//! function, run against SearXNG, Brave, Tavily or Exa over the gateway's egress client; each
//! answer is read bounded and in time, and anything that goes wrong becomes the text the model
//! reads (a failed search never fails the turn).

use super::client::UpstreamBody;
use super::relay::{attempt, for_provider, Answer, Expect, USER_AGENT};
use crate::app::App;
use crate::config::raw::RawWebSearch;
use crate::config::Secret;
use crate::routing::Target;
use bytes::Bytes;
use codex_gate_protocol::translate::chat_stream::PendingSearch;
use codex_gate_protocol::websearch::{results_text, tool_message, Hit, MAX_RESULTS};
use http::{header, HeaderMap, Request};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Largest search answer read.
const MAX_ANSWER: usize = 2 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchProvider {
    Searxng,
    Brave,
    Tavily,
    Exa,
}

/// `[web_search]`, validated.
#[derive(Debug, Clone)]
pub struct WebSearchConfig {
    pub provider: SearchProvider,
    /// The search endpoint (SearXNG: the instance's base URL).
    pub url: String,
    pub api_key: Option<Secret>,
    pub max_results: usize,
    pub timeout: Duration,
    /// How many times one response may search before the model must answer.
    pub max_rounds: u8,
}

impl WebSearchConfig {
    /// `None` when `[web_search]` is absent or has no `provider` (off, the default).
    pub fn from_raw(raw: RawWebSearch) -> Result<Option<WebSearchConfig>, (String, String)> {
        let key = |k: &str| format!("web_search.{k}");
        let Some(name) = raw.provider.filter(|p| !p.trim().is_empty()) else {
            if raw.url.is_some() || raw.api_key.is_some() {
                return Err((key("provider"), "set it to \"searxng\", \"brave\", \"tavily\" or \"exa\"".into()));
            }
            return Ok(None);
        };
        let (provider, default_url, needs_key) = match name.trim().to_ascii_lowercase().as_str() {
            "searxng" => (SearchProvider::Searxng, None, false),
            "brave" => (SearchProvider::Brave, Some("https://api.search.brave.com/res/v1/web/search"), true),
            "tavily" => (SearchProvider::Tavily, Some("https://api.tavily.com/search"), true),
            "exa" => (SearchProvider::Exa, Some("https://api.exa.ai/search"), true),
            other => {
                return Err((
                    key("provider"),
                    format!("{other:?} is not one of \"searxng\", \"brave\", \"tavily\", \"exa\""),
                ))
            }
        };
        let url = match (raw.url.filter(|u| !u.trim().is_empty()), default_url) {
            (Some(u), _) => u.trim().trim_end_matches('/').to_owned(),
            (None, Some(d)) => d.to_owned(),
            (None, None) => return Err((key("url"), "SearXNG needs the instance's URL (http://host:8080)".into())),
        };
        let parsed: http::Uri = url.parse().map_err(|_| (key("url"), format!("{url:?} is not a URL")))?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
            return Err((key("url"), format!("{url:?} must be an http:// or https:// URL")));
        }
        let api_key = raw.api_key.filter(|k| !k.is_empty()).map(Secret::new);
        if needs_key && api_key.is_none() {
            return Err((key("api_key"), format!("{name} needs an API key")));
        }
        Ok(Some(WebSearchConfig {
            provider,
            url,
            api_key,
            max_results: raw.max_results.unwrap_or(5).clamp(1, MAX_RESULTS),
            timeout: Duration::from_millis(raw.timeout_ms.unwrap_or(10_000).clamp(100, 120_000)),
            max_rounds: raw.max_rounds.unwrap_or(3).clamp(1, 10),
        }))
    }
}

/// The provider's request for `query`.
fn request(cfg: &WebSearchConfig, query: &str) -> Result<Request<Bytes>, String> {
    let n = cfg.max_results;
    let q = crate::pool::login::enc(query);
    let key = cfg.api_key.as_ref().map(Secret::expose).unwrap_or_default();
    let (builder, body) = match cfg.provider {
        SearchProvider::Searxng => (Request::get(format!("{}/search?q={q}&format=json", cfg.url)), Bytes::new()),
        SearchProvider::Brave => {
            (Request::get(format!("{}?q={q}&count={n}", cfg.url)).header("x-subscription-token", key), Bytes::new())
        }
        SearchProvider::Tavily => (
            Request::post(&cfg.url).header(header::AUTHORIZATION, format!("Bearer {key}")),
            Bytes::from(json!({"query": query, "max_results": n}).to_string()),
        ),
        SearchProvider::Exa => (
            Request::post(&cfg.url).header("x-api-key", key),
            Bytes::from(json!({"query": query, "numResults": n, "contents": {"highlights": true}}).to_string()),
        ),
    };
    let mut req = builder
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, concat!("codex-gate/", env!("CARGO_PKG_VERSION")))
        .body(body)
        .map_err(|e| format!("bad search request: {e}"))?;
    for name in [header::AUTHORIZATION.as_str(), "x-subscription-token", "x-api-key"] {
        if let Some(v) = req.headers_mut().get_mut(name) {
            v.set_sensitive(true);
        }
    }
    Ok(req)
}

/// The hits of a provider's answer.
fn parse(provider: SearchProvider, body: &[u8], max: usize) -> Result<Vec<Hit>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "the search answer is not JSON".to_owned())?;
    let s = |r: &Value, keys: &[&str]| {
        keys.iter().find_map(|k| r.get(*k).and_then(Value::as_str)).unwrap_or_default().to_owned()
    };
    let list = match provider {
        SearchProvider::Brave => v.pointer("/web/results"),
        _ => v.get("results"),
    };
    let Some(list) = list.and_then(Value::as_array) else {
        return match list {
            None if provider == SearchProvider::Brave && v.get("web").is_none() && v.get("type").is_some() => {
                Ok(vec![])
            }
            _ => Err("the search answer has no results list".into()),
        };
    };
    Ok(list
        .iter()
        .take(max)
        .map(|r| {
            let snippet = match provider {
                SearchProvider::Exa => r
                    .get("highlights")
                    .and_then(Value::as_array)
                    .map(|h| h.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" … "))
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| s(r, &["text", "summary"])),
                _ => s(r, &["content", "description", "snippet"]),
            };
            Hit { title: s(r, &["title"]), url: s(r, &["url"]), snippet }
        })
        .collect())
}

/// Run one search; the error is a short reason the model can be told.
pub async fn search(app: &App, cfg: &WebSearchConfig, query: &str) -> Result<Vec<Hit>, String> {
    if query.is_empty() {
        return Err("the search had no query".into());
    }
    let req = request(cfg, query)?;
    let run = async {
        let resp = app.client.request(req).await.map_err(|e| format!("the search provider is unreachable: {e}"))?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("reading the search answer failed: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("the search provider answered HTTP {}", status.as_u16()));
        }
        parse(cfg.provider, &body, cfg.max_results)
    };
    let out = match tokio::time::timeout(cfg.timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(format!("the search took longer than {} ms", cfg.timeout.as_millis())),
    };
    app.metrics.web_searches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Err(e) = &out {
        app.metrics.web_search_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(error = %e, "web search failed");
    }
    out
}

/// What a streamed response needs to go on after its chat model's searches: the conversation
/// so far (the translated chat request, which grows by each round) and where it goes.
pub struct Searching {
    pub app: Arc<App>,
    pub target: Target,
    pub chat: Value,
    /// The client's headers (their continuity headers go on every request of the response).
    pub headers: HeaderMap,
}

/// One round done: the searches' outcomes (`ok[i]`) and the upstream's next answer.
pub struct Leg {
    pub search: Box<Searching>,
    pub ok: Vec<bool>,
    pub answer: Result<(Bytes, UpstreamBody), String>,
}

pub type NextLeg = Pin<Box<dyn Future<Output = Leg> + Send>>;

impl Searching {
    /// Run `searches` (at once), add what the model said (`said`) and the results to the
    /// conversation, and ask the upstream for the next answer.
    pub fn next_leg(mut self: Box<Self>, searches: Vec<PendingSearch>, said: Vec<Value>) -> NextLeg {
        Box::pin(async move {
            let outcomes = match self.app.config.web_search.clone() {
                Some(cfg) => {
                    let runs = searches.iter().map(|p| async { search(&self.app, &cfg, &p.query).await });
                    futures_util::future::join_all(runs).await
                }
                None => searches.iter().map(|_| Err("web search is not configured".to_owned())).collect(),
            };
            let ok = outcomes.iter().map(Result::is_ok).collect();
            if let Some(messages) = self.chat.get_mut("messages").and_then(Value::as_array_mut) {
                messages.extend(said);
                for (p, r) in searches.iter().zip(&outcomes) {
                    messages.push(tool_message(&p.call_id, &results_text(&p.query, r)));
                }
            }
            let answer = self.ask().await;
            Leg { search: self, ok, answer }
        })
    }

    async fn ask(&self) -> Result<(Bytes, UpstreamBody), String> {
        let mut req = Request::post(format!("{}/chat/completions", self.target.provider.base_url))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "text/event-stream")
            .header(header::USER_AGENT, USER_AGENT)
            .body(Bytes::from(self.chat.to_string()))
            .map_err(|e| format!("bad upstream request: {e}"))?;
        for_provider(&self.target, &self.headers, &mut req).map_err(|e| e.to_string())?;
        match attempt(&self.app, &self.target, req, Expect::Events).await {
            Ok(Answer::Stream { first, body, .. }) => Ok((first, body)),
            Ok(Answer::Whole { .. }) => Err("the upstream answered without a stream".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(provider: &str, url: Option<&str>, key: Option<&str>) -> Result<Option<WebSearchConfig>, (String, String)> {
        WebSearchConfig::from_raw(RawWebSearch {
            provider: Some(provider.into()),
            url: url.map(str::to_owned),
            api_key: key.map(str::to_owned),
            ..Default::default()
        })
    }

    #[test]
    fn config_names_the_key_at_fault() {
        assert!(WebSearchConfig::from_raw(RawWebSearch::default()).unwrap().is_none(), "off by default");
        assert_eq!(cfg("searxng", None, None).unwrap_err().0, "web_search.url");
        assert_eq!(cfg("brave", None, None).unwrap_err().0, "web_search.api_key");
        assert_eq!(cfg("bing", None, None).unwrap_err().0, "web_search.provider");
        assert_eq!(cfg("searxng", Some("ftp://x"), None).unwrap_err().0, "web_search.url");
        let only_url = RawWebSearch { url: Some("http://s".into()), ..Default::default() };
        assert_eq!(WebSearchConfig::from_raw(only_url).unwrap_err().0, "web_search.provider");
        let c = cfg("Tavily", None, Some("tvly-1")).unwrap().unwrap();
        assert_eq!(
            (c.provider, c.url.as_str(), c.max_results),
            (SearchProvider::Tavily, "https://api.tavily.com/search", 5)
        );
    }

    #[test]
    fn each_provider_is_asked_its_own_way() {
        let q = "rust & tokio?";
        let r = request(&cfg("searxng", Some("http://s:8080/"), None).unwrap().unwrap(), q).unwrap();
        assert_eq!(r.uri(), "http://s:8080/search?q=rust%20%26%20tokio%3F&format=json");
        let r = request(&cfg("brave", None, Some("bk")).unwrap().unwrap(), q).unwrap();
        assert!(r.uri().to_string().ends_with("?q=rust%20%26%20tokio%3F&count=5"));
        assert_eq!(r.headers()["x-subscription-token"], "bk");
        assert!(r.headers()["x-subscription-token"].is_sensitive());
        let r = request(&cfg("tavily", None, Some("tk")).unwrap().unwrap(), q).unwrap();
        assert_eq!((r.method().as_str(), r.headers()["authorization"].to_str().unwrap()), ("POST", "Bearer tk"));
        assert_eq!(serde_json::from_slice::<Value>(r.body()).unwrap()["query"], q);
        let r = request(&cfg("exa", None, Some("ek")).unwrap().unwrap(), q).unwrap();
        assert_eq!(r.headers()["x-api-key"], "ek");
        assert_eq!(serde_json::from_slice::<Value>(r.body()).unwrap()["numResults"], 5);
    }

    #[test]
    fn each_providers_answer_is_read() {
        let searx = br#"{"query":"q","results":[{"url":"https://a","title":"A","content":"about a"},{"url":"https://b","title":"B"}]}"#;
        let hits = parse(SearchProvider::Searxng, searx, 5).unwrap();
        assert_eq!(hits[0], Hit { title: "A".into(), url: "https://a".into(), snippet: "about a".into() });
        assert_eq!(hits.len(), 2);
        assert_eq!(parse(SearchProvider::Searxng, searx, 1).unwrap().len(), 1, "max_results");
        let brave = br#"{"type":"search","web":{"results":[{"title":"T","url":"https://t","description":"d"}]}}"#;
        assert_eq!(parse(SearchProvider::Brave, brave, 5).unwrap()[0].snippet, "d");
        assert!(parse(SearchProvider::Brave, br#"{"type":"search"}"#, 5).unwrap().is_empty(), "no web results");
        let tavily = br#"{"results":[{"title":"T","url":"https://t","content":"c","score":0.9}]}"#;
        assert_eq!(parse(SearchProvider::Tavily, tavily, 5).unwrap()[0].snippet, "c");
        let exa = br#"{"results":[{"title":"E","url":"https://e","highlights":["one","two"]},{"title":"F","url":"https://f","text":"full"}]}"#;
        let hits = parse(SearchProvider::Exa, exa, 5).unwrap();
        assert_eq!((hits[0].snippet.as_str(), hits[1].snippet.as_str()), ("one … two", "full"));
        assert!(parse(SearchProvider::Searxng, b"<html>", 5).is_err());
        assert!(parse(SearchProvider::Searxng, br#"{"error":"x"}"#, 5).is_err());
    }
}
