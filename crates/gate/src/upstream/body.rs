//! [`RelayBody`]: the response body of a committed stream. Each upstream chunk is passed on as
//! it arrives (never buffered) while an observer decodes it to learn usage and the terminal
//! event. After the first byte a failure can only be told inside the stream, so an upstream
//! error, an idle timeout or an end without the terminal event becomes one final synthesized
//! event, and the stream closes right after it.

use crate::tally::Tally;
use bytes::Bytes;
use codex_gate_protocol::observe::{ChatObserver, Outcome, ResponsesObserver};
use codex_gate_protocol::sse::{SseDecoder, SseEvent};
use codex_gate_protocol::{synth, Api};
use http_body::{Body, Frame};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::time::Sleep;

enum Observer {
    Responses(ResponsesObserver),
    Chat(ChatObserver),
}

impl Observer {
    fn observe(&mut self, ev: &SseEvent) {
        match self {
            Observer::Responses(o) => o.observe(ev),
            Observer::Chat(o) => o.observe(ev),
        }
    }

    /// The stream is over as far as the client is concerned.
    fn ended(&self) -> bool {
        match self {
            Observer::Responses(o) => o.outcome.is_terminal(),
            Observer::Chat(o) => o.done,
        }
    }
}

enum State {
    Streaming,
    /// One last synthesized chunk to send, then the end.
    Tail(Bytes),
    Done,
}

pub struct RelayBody {
    first: Option<Bytes>,
    inner: Incoming,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    observer: Observer,
    decoder: SseDecoder,
    decode_ok: bool,
    events: Vec<SseEvent>,
    state: State,
    failure: Option<String>,
    tally: Tally,
}

impl RelayBody {
    /// `first` is the first chunk, already read to commit the response.
    pub fn new(api: Api, first: Bytes, inner: Incoming, idle: Duration, tally: Tally) -> RelayBody {
        RelayBody {
            first: Some(first),
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            observer: match api {
                Api::Responses => Observer::Responses(ResponsesObserver::default()),
                Api::Chat => Observer::Chat(ChatObserver::default()),
            },
            decoder: SseDecoder::default(),
            decode_ok: true,
            events: Vec::new(),
            state: State::Streaming,
            failure: None,
            tally,
        }
    }

    fn on_data(&mut self, data: &[u8]) {
        let t = Instant::now();
        if self.decode_ok {
            if self.decoder.push(data, &mut self.events).is_err() {
                // Keep relaying; we only lose the ability to read the rest.
                self.decode_ok = false;
            }
            for ev in self.events.drain(..) {
                self.observer.observe(&ev);
            }
        }
        self.tally.stream_work += t.elapsed();
        if self.observer.ended() {
            // Close right after the terminal event: Codex waits for the body to end.
            self.finish();
        }
    }

    fn on_eof(&mut self) {
        if self.decode_ok && self.decoder.finish(&mut self.events).is_ok() {
            for ev in self.events.drain(..) {
                self.observer.observe(&ev);
            }
        }
        match &self.observer {
            Observer::Responses(o) if !o.outcome.is_terminal() => {
                self.fail("stream_incomplete", "upstream closed the stream before response.completed")
            }
            // Some chat servers end after `finish_reason` without `[DONE]`; that is complete.
            Observer::Chat(o) if !o.done && !o.outcome.is_terminal() => {
                self.fail("stream_incomplete", "upstream closed the stream before finishing")
            }
            _ => self.finish(),
        }
    }

    fn fail(&mut self, code: &str, message: &str) {
        let tail = match &self.observer {
            Observer::Responses(o) => {
                let id = o.response_id.clone().unwrap_or_else(|| format!("resp_{}", self.tally.id()));
                synth::responses_failed(&id, code, message)
            }
            Observer::Chat(_) => synth::chat_error(code, message),
        };
        tracing::warn!(id = %self.tally.id(), code, message, "upstream stream failed after the first byte");
        self.failure = Some(code.to_owned());
        self.state = State::Tail(Bytes::from(tail));
    }

    fn finish(&mut self) {
        if !matches!(self.state, State::Tail(_)) {
            self.state = State::Done;
        }
        let (outcome, usage) = match &self.observer {
            Observer::Responses(o) => (&o.outcome, o.usage),
            Observer::Chat(o) => (&o.outcome, o.usage),
        };
        let error = self.failure.clone().or_else(|| match outcome {
            Outcome::Completed => None,
            other => other.error_code(),
        });
        self.tally.close(200, error, usage);
    }
}

impl Body for RelayBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            this.on_data(&first);
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        match std::mem::replace(&mut this.state, State::Done) {
            State::Done => return Poll::Ready(None),
            State::Tail(bytes) => {
                this.finish();
                this.state = State::Done;
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            State::Streaming => this.state = State::Streaming,
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else { continue }; // trailers carry nothing for us
                    if data.is_empty() {
                        continue;
                    }
                    let deadline = tokio::time::Instant::now() + this.idle;
                    this.sleep.as_mut().reset(deadline);
                    this.on_data(&data);
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => {
                    let msg = format!("upstream stream failed: {e}");
                    this.fail("upstream_stream_error", &msg);
                }
                Poll::Ready(None) => this.on_eof(),
                Poll::Pending => {
                    if this.sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let msg = format!("upstream sent nothing for {} ms", this.idle.as_millis());
                    this.fail("upstream_idle_timeout", &msg);
                }
            }
            // fail/on_eof/finish changed the state: emit the tail or end.
            return match std::mem::replace(&mut this.state, State::Done) {
                State::Tail(bytes) => {
                    this.finish();
                    Poll::Ready(Some(Ok(Frame::data(bytes))))
                }
                _ => Poll::Ready(None),
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && matches!(self.state, State::Done)
    }
}
