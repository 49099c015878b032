//! [`RelayBody`]: the response body of a committed stream. Each upstream chunk is passed on as
//! it arrives (never buffered) while an observer decodes it to learn usage and the terminal
//! event; when client and upstream speak different APIs, a translator turns each decoded event
//! into the client's API instead. After the first byte a failure can only be told inside the
//! stream, so an upstream error, an idle timeout or an end without the terminal event becomes
//! one final event in the client's API, and the stream closes right after it.

use super::client::UpstreamBody;
use super::websearch::Searching;
use crate::tally::Tally;
use bytes::Bytes;
use codex_gate_protocol::observe::{ChatHead, ChatObserver, Outcome, ResponsesHead, ResponsesObserver};
use codex_gate_protocol::repair::{ResponsesRepair, Verdict};
use codex_gate_protocol::sse::{encode, SseDecoder, SseEvent};
use codex_gate_protocol::translate::{ChatToResponses, ResponsesToChat};
use codex_gate_protocol::{synth, Api};
use http_body::{Body, Frame};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::time::Sleep;

/// The code a stream failure carries to the client (both APIs' own).
const STREAM_ERROR: &str = "server_error";

enum Observer {
    Responses(ResponsesObserver),
    Chat(ChatObserver),
}

/// How upstream events become client bytes.
pub enum Translate {
    /// Same API: the upstream bytes go out unchanged.
    None,
    /// Chat on both sides, and the gateway asked for the usage chunk the client did not: it
    /// is read and kept from the client (every other byte passes unchanged).
    StripUsage,
    /// Responses on both sides: events pass through the grammar repair.
    Repair(Box<ResponsesRepair>),
    /// Chat upstream, Responses client.
    ChatToResponses(Box<ChatToResponses>),
    /// Responses upstream, Chat client.
    ResponsesToChat(Box<ResponsesToChat>),
}

impl Translate {
    /// A translator (not a pass-through) has written its terminal event.
    fn finished(&self) -> bool {
        match self {
            Translate::None | Translate::StripUsage | Translate::Repair(_) => false,
            Translate::ChatToResponses(m) => m.is_finished(),
            Translate::ResponsesToChat(m) => m.is_finished(),
        }
    }
}

enum State {
    Streaming,
    /// One last chunk to send, then the end.
    Tail(Bytes),
    Done,
}

/// Per-stream settings.
#[derive(Debug, Clone, Copy)]
pub struct RelayOptions {
    /// The API the upstream speaks.
    pub upstream: Api,
    /// The API the client speaks.
    pub client: Api,
    /// Longest upstream silence before the stream is failed.
    pub idle: Duration,
    /// Upstream silence after which a keep-alive goes to the client (so its idle timer does not fire).
    pub keepalive: Option<Duration>,
}

pub struct RelayBody {
    first: Option<Bytes>,
    inner: UpstreamBody,
    opts: RelayOptions,
    sleep: Pin<Box<Sleep>>,
    keepalive: Option<Pin<Box<Sleep>>>,
    observer: Observer,
    translate: Translate,
    out: Vec<u8>,
    decoder: SseDecoder,
    decode_ok: bool,
    events: Vec<SseEvent>,
    state: State,
    failure: Option<String>,
    tally: Tally,
    /// Chat passthrough: bytes of an event not yet complete. Only whole events leave, so an
    /// error event or a keep-alive the gateway adds never lands inside one.
    held: Vec<u8>,
    /// Resolves when shutdown's drain deadline passes: the stream ends with a failure event.
    cut: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    /// The upstream sent an event that is neither API's: the stream fails there.
    bad_event: bool,
    /// With `[web_search]`: how the response goes on after the searches its model asks for.
    search: Option<Box<Searching>>,
    /// The searches running and the next upstream answer, between two answers of one response.
    next_leg: Option<super::websearch::NextLeg>,
    /// Usage of the earlier answers of this response (a chat model's search rounds).
    prior_usage: Option<codex_gate_protocol::usage::Usage>,
}

impl RelayBody {
    /// `first` is the first chunk, already read to commit the response; `upstream` is the API
    /// the upstream speaks.
    pub fn new(
        opts: RelayOptions,
        translate: Translate,
        first: Bytes,
        inner: UpstreamBody,
        tally: Tally,
        cut: tokio_util::sync::CancellationToken,
    ) -> RelayBody {
        RelayBody {
            first: Some(first),
            inner,
            opts,
            sleep: Box::pin(tokio::time::sleep(opts.idle)),
            keepalive: opts.keepalive.map(|k| Box::pin(tokio::time::sleep(k))),
            observer: match opts.upstream {
                Api::Responses => Observer::Responses(ResponsesObserver::default()),
                Api::Chat => Observer::Chat(ChatObserver::default()),
            },
            translate,
            out: Vec::new(),
            decoder: SseDecoder::default(),
            decode_ok: true,
            events: Vec::new(),
            state: State::Streaming,
            failure: None,
            tally,
            held: Vec::new(),
            cut: Box::pin(cut.cancelled_owned()),
            bad_event: false,
            search: None,
            next_leg: None,
            prior_usage: None,
        }
    }

    /// Let the response go on after the web searches its chat model asks for.
    pub fn with_search(mut self, search: Searching) -> RelayBody {
        self.search = Some(Box::new(search));
        self
    }

    /// The translator stopped at web searches: run them and ask the upstream again.
    fn start_next_leg(&mut self) {
        let Translate::ChatToResponses(m) = &self.translate else { return };
        if !m.is_suspended() || self.next_leg.is_some() {
            return;
        }
        let Some(s) = self.search.take() else { return };
        self.next_leg = Some(s.next_leg(m.searches(), m.continuation(&[])));
    }

    /// The searches ran and the upstream answered again: the next answer continues the stream.
    fn on_next_leg(&mut self, leg: super::websearch::Leg) {
        let super::websearch::Leg { search, ok, answer } = leg;
        self.search = Some(search);
        if let Translate::ChatToResponses(m) = &mut self.translate {
            m.searched(&ok, &mut self.out);
        }
        let used = match &mut self.observer {
            Observer::Chat(o) => std::mem::take(o).usage,
            Observer::Responses(_) => None,
        };
        if let Some(u) = used {
            *self.prior_usage.get_or_insert_default() += u;
        }
        match answer {
            Ok((first, body)) => {
                self.inner = body;
                self.decoder = SseDecoder::default();
                self.decode_ok = true;
                self.first = Some(first);
                self.sleep.as_mut().reset(tokio::time::Instant::now() + self.opts.idle);
            }
            Err(e) => self.fail("upstream_after_search", &format!("the upstream failed after a web search: {e}")),
        }
    }

    /// Feed the decoded events to the observer and the translator. `verbatim` says the chunk
    /// they came from holds whole events only; the answer says whether it can still go to the
    /// client as it came (every event kept, nothing added), so a healthy passthrough stream is
    /// relayed without re-encoding a byte.
    fn observe_events(&mut self, verbatim: bool) -> bool {
        let mut verbatim = verbatim && matches!(self.translate, Translate::Repair(_) | Translate::StripUsage);
        let mut events = std::mem::take(&mut self.events);
        if !verbatim && !events.is_empty() {
            // Each chunk's output leaves as its own `Bytes`: size the buffer once instead of
            // growing it from empty through every event of the chunk.
            self.out.reserve(events.iter().map(|e| e.data.len() * 2 + 64).sum());
        }
        for (i, ev) in events.iter().enumerate() {
            if !is_api_event(&ev.data) {
                // Not an event of either API (an HTML error page, garbage): what came before it
                // goes out whole, it and everything after it do not, and the stream fails.
                if verbatim || matches!(self.translate, Translate::None) {
                    self.out.clear();
                    for kept in &events[..i] {
                        encode(kept.event.as_deref(), &kept.data, &mut self.out);
                    }
                }
                self.bad_event = true;
                verbatim = false;
                break;
            }
            match (&mut self.observer, &mut self.translate) {
                (Observer::Responses(o), Translate::Repair(r)) => {
                    // One parse of the event serves both the observer and the repair.
                    let head = ResponsesHead::parse(&ev.data);
                    o.observe_head(head.as_ref(), &ev.data);
                    // A pool turn's quota snapshot shows the pool (the observer kept the original).
                    let pooled = head
                        .as_ref()
                        .filter(|h| h.kind == "codex.rate_limits")
                        .and_then(|_| self.tally.pooled_rate_limits_event(&ev.data))
                        .map(|data| SseEvent { event: ev.event.clone(), data });
                    let ev = pooled.as_ref().unwrap_or(ev);
                    let before = self.out.len();
                    let verdict = r.push_head(head.as_ref(), ev, &mut self.out);
                    if verbatim && (verdict == Verdict::Replaced || self.out.len() != before || pooled.is_some()) {
                        // From here on the chunk is re-encoded: the kept events before this one
                        // go first, then what the repair wrote.
                        verbatim = false;
                        let written = std::mem::take(&mut self.out);
                        for kept in &events[..i] {
                            encode(kept.event.as_deref(), &kept.data, &mut self.out);
                        }
                        self.out.extend_from_slice(&written);
                    }
                    if verdict == Verdict::Keep && !verbatim {
                        encode(ev.event.as_deref(), &ev.data, &mut self.out);
                    }
                }
                (Observer::Chat(o), Translate::StripUsage) => {
                    let head = ChatHead::parse(&ev.data);
                    o.observe_head(head.as_ref(), &ev.data);
                    let usage_only = head
                        .as_ref()
                        .is_some_and(|h| h.usage.is_some() && h.choices.as_ref().is_some_and(Vec::is_empty));
                    if usage_only && verbatim {
                        verbatim = false;
                        for kept in &events[..i] {
                            encode(kept.event.as_deref(), &kept.data, &mut self.out);
                        }
                    } else if !usage_only && !verbatim {
                        encode(ev.event.as_deref(), &ev.data, &mut self.out);
                    }
                }
                (Observer::Chat(o), Translate::ChatToResponses(m)) => {
                    let head = ChatHead::parse(&ev.data);
                    o.observe_head(head.as_ref(), &ev.data);
                    m.push_head(head.as_ref(), &ev.data, &mut self.out);
                }
                (Observer::Responses(o), Translate::ResponsesToChat(m)) => {
                    let head = ResponsesHead::parse(&ev.data);
                    o.observe_head(head.as_ref(), &ev.data);
                    m.push_head(head.as_ref(), &ev.data, &mut self.out);
                }
                // Same API on both sides with nothing to rewrite (chat passthrough): the bytes
                // go out as they came and are only observed. The observer follows the upstream
                // API and the translator the pair of APIs, so no other pairing exists.
                (Observer::Responses(o), _) => o.observe(ev),
                (Observer::Chat(o), _) => o.observe(ev),
            }
        }
        events.clear();
        self.events = events;
        verbatim
    }

    /// The stream is over as far as the client is concerned.
    fn ended(&self) -> bool {
        match (&self.translate, &self.observer) {
            (Translate::None | Translate::Repair(_), Observer::Responses(o)) => o.outcome.is_terminal(),
            (Translate::None | Translate::StripUsage | Translate::Repair(_), Observer::Chat(o)) => o.done,
            (t, _) => t.finished(),
        }
    }

    /// Bytes for the client from this upstream chunk (`None`: nothing to send yet).
    fn on_data(&mut self, data: Bytes) -> Option<Bytes> {
        let t = Instant::now();
        let mut verbatim = false;
        let mut boundary = None;
        if self.decode_ok {
            let started_clean = self.decoder.at_boundary();
            let pushed = self.decoder.push_tracked(&data, &mut self.events);
            boundary = pushed.as_ref().ok().copied().flatten();
            if pushed.is_err() {
                // Passthrough keeps relaying; we only lose the ability to read the rest.
                self.decode_ok = false;
                if !matches!(self.translate, Translate::None) {
                    self.fail("upstream_event_too_large", "upstream sent an event larger than the gateway accepts");
                }
            }
            let whole_events = started_clean && self.decode_ok && self.decoder.at_boundary();
            verbatim = self.observe_events(whole_events);
            if self.bad_event {
                self.held.clear();
                self.decode_ok = false;
                self.tally.stream_work += t.elapsed();
                self.fail("upstream_bad_answer", "upstream sent an event that is not the API's JSON");
                return None;
            }
        }
        let out = match self.translate {
            Translate::None => self.whole_events(data, boundary),
            _ if verbatim => Some(data),
            _ => (!self.out.is_empty()).then(|| Bytes::from(std::mem::take(&mut self.out))),
        };
        self.start_next_leg();
        self.tally.stream_work += t.elapsed();
        if self.ended() && matches!(self.state, State::Streaming) {
            // Close right after the terminal event: Codex waits for the body to end.
            self.finish();
        }
        out
    }

    /// Chat passthrough: the part of `data` (after what was held) that ends at the last event
    /// boundary; the rest waits for its event's end. Usually the whole chunk, unchanged.
    fn whole_events(&mut self, data: Bytes, boundary: Option<usize>) -> Option<Bytes> {
        if !self.decode_ok {
            // The decoder gave up (an oversized event): relay as it comes.
            if self.held.is_empty() {
                return Some(data);
            }
            let mut all = std::mem::take(&mut self.held);
            all.extend_from_slice(&data);
            return Some(Bytes::from(all));
        }
        match boundary {
            Some(n) if self.held.is_empty() && n == data.len() => Some(data),
            Some(n) if self.held.is_empty() => {
                self.held.extend_from_slice(&data[n..]);
                (n > 0).then(|| data.slice(..n))
            }
            Some(n) => {
                let mut out = std::mem::take(&mut self.held);
                out.extend_from_slice(&data[..n]);
                self.held.extend_from_slice(&data[n..]);
                Some(Bytes::from(out))
            }
            None => {
                self.held.extend_from_slice(&data);
                None
            }
        }
    }

    fn on_eof(&mut self) {
        let before = self.events.len();
        if self.decode_ok && self.decoder.finish(&mut self.events).is_ok() {
            // A last event without its blank line still completes what was held.
            if self.events.len() > before && !self.held.is_empty() {
                let mut held = std::mem::take(&mut self.held);
                held.extend_from_slice(b"\n\n");
                self.out.extend_from_slice(&held);
            }
            self.observe_events(false);
        }
        // An event cut off by the end of the stream is never sent half.
        self.held.clear();
        match (&mut self.translate, &self.observer) {
            // A chat upstream that ends cleanly has finished, `finish_reason` or not.
            (Translate::ChatToResponses(m), _) if !m.is_finished() => {
                m.finish(&mut self.out);
                if m.is_suspended() {
                    return self.start_next_leg();
                }
            }
            (Translate::ResponsesToChat(m), _) if !m.is_finished() => {
                return self.fail("stream_incomplete", "upstream closed the stream before response.completed")
            }
            (Translate::None | Translate::Repair(_), Observer::Responses(o)) if !o.outcome.is_terminal() => {
                return self.fail("stream_incomplete", "upstream closed the stream before response.completed")
            }
            // Some chat servers end after `finish_reason` without `[DONE]`; that is complete.
            (Translate::None | Translate::StripUsage, Observer::Chat(o)) if !o.done && !o.outcome.is_terminal() => {
                return self.fail("stream_incomplete", "upstream closed the stream before finishing")
            }
            _ => {}
        }
        let tail = std::mem::take(&mut self.out);
        self.state = if tail.is_empty() { State::Done } else { State::Tail(Bytes::from(tail)) };
    }

    /// End the stream with a failure event. The client gets the API's own code, `server_error`
    /// (Codex and OpenClaw retry it; invented codes are final for OpenClaw), with the gateway's
    /// detail in the message; the request log keeps the gateway's code.
    fn fail(&mut self, code: &str, message: &str) {
        tracing::warn!(id = %self.tally.id(), code, message, "upstream stream failed after the first byte");
        self.failure = Some(code.to_owned());
        self.held.clear();
        let message = format!("{message} ({code})");
        let mut tail = std::mem::take(&mut self.out);
        match (&mut self.translate, &self.observer) {
            (Translate::ChatToResponses(m), _) => m.fail(STREAM_ERROR, &message, &mut tail),
            (Translate::ResponsesToChat(m), _) => m.fail(STREAM_ERROR, &message, &mut tail),
            (_, Observer::Responses(o)) => {
                let id = o.response_id.clone().unwrap_or_else(|| format!("resp_{}", self.tally.id()));
                let so_far = synth::StreamSoFar {
                    response_id: &id,
                    model: o.model.as_deref(),
                    created_at: o.created_at,
                    last_sequence: o.last_sequence,
                };
                tail.extend_from_slice(&synth::responses_failed(&so_far, STREAM_ERROR, &message));
            }
            (_, Observer::Chat(_)) => tail.extend_from_slice(&synth::chat_error(STREAM_ERROR, &message)),
        }
        self.state = State::Tail(Bytes::from(tail));
    }

    /// Close the tally once, from what the observer saw.
    fn finish(&mut self) {
        if matches!(self.state, State::Streaming) {
            self.state = State::Done;
        }
        if let Observer::Responses(o) = &self.observer {
            if let Some(rl) = &o.rate_limits {
                self.tally.rate_limits(rl);
            }
        }
        let (outcome, mut usage) = match &self.observer {
            Observer::Responses(o) => (&o.outcome, o.usage),
            Observer::Chat(o) => (&o.outcome, o.usage),
        };
        if let Some(prior) = self.prior_usage {
            let u = usage.get_or_insert_default();
            *u += prior;
        }
        let error = self.failure.clone().or_else(|| match outcome {
            Outcome::Completed => None,
            // A translated chat stream without a terminal chunk was completed by the translator.
            Outcome::Unfinished if self.translate.finished() => None,
            other => other.error_code(),
        });
        self.tally.close(200, error, usage);
    }

    /// A keep-alive for the client when the upstream has been silent for the keep-alive period:
    /// `response.in_progress` for Responses clients (Codex ignores it but its idle timer sees an
    /// event), an SSE comment for chat clients.
    fn poll_keepalive(&mut self, cx: &mut Context<'_>) -> Option<Bytes> {
        let (k, every) = (self.keepalive.as_mut()?, self.opts.keepalive?);
        if k.as_mut().poll(cx).is_pending() {
            return None;
        }
        k.as_mut().reset(tokio::time::Instant::now() + every);
        // Register the timer again so this task is woken for the next keep-alive.
        let _ = k.as_mut().poll(cx);
        Some(match self.opts.client {
            Api::Responses => {
                let id = match (&self.observer, &self.translate) {
                    (Observer::Responses(o), _) if o.response_id.is_some() => o.response_id.clone().unwrap_or_default(),
                    _ => format!("resp_{}", self.tally.id()),
                };
                let v = serde_json::json!({"type": "response.in_progress", "response": {"id": id, "object": "response", "status": "in_progress"}});
                let mut out = Vec::new();
                codex_gate_protocol::sse::encode(Some("response.in_progress"), &v.to_string(), &mut out);
                Bytes::from(out)
            }
            Api::Chat => Bytes::from_static(b": keep-alive\n\n"),
        })
    }

    /// After on_eof/fail: emit the tail, or end.
    fn tail_or_end(&mut self) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Tail(bytes) => {
                self.finish();
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            _ => {
                self.finish();
                Poll::Ready(None)
            }
        }
    }
}

impl Body for RelayBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            if let Some(out) = this.on_data(first) {
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
        }
        match std::mem::replace(&mut this.state, State::Done) {
            State::Done => return Poll::Ready(None),
            State::Tail(bytes) => {
                this.state = State::Tail(bytes);
                return this.tail_or_end();
            }
            State::Streaming => this.state = State::Streaming,
        }
        loop {
            if let Some(leg) = this.next_leg.as_mut() {
                // Searching: keep-alives go on (Codex's idle timer), shutdown still cuts.
                match leg.as_mut().poll(cx) {
                    Poll::Ready(done) => {
                        this.next_leg = None;
                        this.on_next_leg(done);
                        if let Some(first) = this.first.take() {
                            if let Some(out) = this.on_data(first) {
                                this.out.extend_from_slice(&out);
                            }
                        }
                        if !matches!(this.state, State::Streaming) {
                            return this.tail_or_end();
                        }
                        if !this.out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(std::mem::take(&mut this.out))))));
                        }
                        continue;
                    }
                    Poll::Pending => {
                        if this.cut.as_mut().poll(cx).is_ready() {
                            this.next_leg = None;
                            this.fail("gateway_shutdown", "the gateway is shutting down; retry the request");
                            return this.tail_or_end();
                        }
                        if let Some(frame) = this.poll_keepalive(cx) {
                            return Poll::Ready(Some(Ok(Frame::data(frame))));
                        }
                        return Poll::Pending;
                    }
                }
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else { continue }; // trailers carry nothing for us
                    if data.is_empty() {
                        continue;
                    }
                    let now = tokio::time::Instant::now();
                    this.sleep.as_mut().reset(now + this.opts.idle);
                    match this.on_data(data) {
                        Some(out) => {
                            // The keep-alive clock follows what the client sees: while a
                            // translator holds text back, keep-alives still flow.
                            if let (Some(k), Some(every)) = (this.keepalive.as_mut(), this.opts.keepalive) {
                                k.as_mut().reset(now + every);
                            }
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                        None if matches!(this.state, State::Streaming) => {
                            if let Some(frame) = this.poll_keepalive(cx) {
                                return Poll::Ready(Some(Ok(Frame::data(frame))));
                            }
                            continue;
                        }
                        None => return this.tail_or_end(),
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let msg = format!("upstream stream failed: {e}");
                    this.fail("upstream_stream_error", &msg);
                }
                Poll::Ready(None) => {
                    this.on_eof();
                    if this.next_leg.is_some() {
                        // The answer ended in searches: what it said goes now, the searches next.
                        if !this.out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(std::mem::take(&mut this.out))))));
                        }
                        continue;
                    }
                }
                Poll::Pending => {
                    if this.cut.as_mut().poll(cx).is_ready() {
                        this.fail("gateway_shutdown", "the gateway is shutting down; retry the request");
                        return this.tail_or_end();
                    }
                    if this.sleep.as_mut().poll(cx).is_pending() {
                        if let Some(frame) = this.poll_keepalive(cx) {
                            return Poll::Ready(Some(Ok(Frame::data(frame))));
                        }
                        return Poll::Pending;
                    }
                    let msg = format!("upstream sent nothing for {} ms", this.opts.idle.as_millis());
                    this.fail("upstream_idle_timeout", &msg);
                }
            }
            return this.tail_or_end();
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && matches!(self.state, State::Done)
    }
}

/// Whether an event's data can belong to either API's stream: a JSON object, or chat's `[DONE]`
/// (and an empty data line, which some servers send as a keep-alive). Only the first byte is
/// read; a broken object is the translators' and observers' to judge.
fn is_api_event(data: &str) -> bool {
    let d = data.trim_ascii_start();
    d.is_empty() || d.starts_with('{') || d == "[DONE]"
}
