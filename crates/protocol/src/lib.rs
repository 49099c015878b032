//! Pure protocol code for codex-gate: no I/O, no async runtime, no sockets.
//!
//! Map of the crate:
//! - [`sse`]: incremental Server-Sent-Events decoder (bytes split anywhere → events) and encoder.
//! - [`error`]: the OpenAI error envelope `{"error":{"message","type","code"}}`.
//! - [`usage`]: token usage normalized across the Responses and Chat Completions APIs.
//! - [`compaction`]: remote compaction emulated for upstreams without it (summary request, item, stream).
//! - [`body`]: cheap inspection of request bodies (model, stream) and byte-exact model rewriting.
//! - [`observe`]: stream observers that read usage and terminal events while bytes are relayed.
//! - [`translate`]: Responses ⇄ Chat Completions, requests and streams, both ways.
//! - [`grammar`]: checkers of the Responses and Chat stream grammars (used by the tests).
//! - [`repair`]: Responses stream repair (created first, added before deltas, output backfill, usage).
//! - [`served_model`]: the model an upstream says served, reported by the client's own name.
//! - [`synth`]: events the gateway writes itself (a terminal failure after the first byte).
//! - [`websearch`]: web search for chat models (the function offered, results as a tool message).
//! - [`h1`]: HTTP/1.1 answer framing (response head, Content-Length / chunked / close bodies).
//!
//! Everything here is synchronous and deterministic so it can be unit-, snapshot- and
//! property-tested without sockets.

pub mod body;
pub mod compaction;
pub mod error;
pub mod grammar;
pub mod h1;
pub mod observe;
pub mod repair;
pub mod served_model;
pub mod sse;
pub mod synth;
pub mod translate;
pub mod usage;
pub mod websearch;

/// Which OpenAI API a request, response or upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// `POST /v1/responses` (the API Codex speaks).
    Responses,
    /// `POST /v1/chat/completions`.
    Chat,
}

impl Api {
    /// Short stable name, used in logs, metrics labels and the request log.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Responses => "responses",
            Api::Chat => "chat",
        }
    }
}
