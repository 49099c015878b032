//! Translation between the Responses API and Chat Completions, both ways, requests and streams.
//!
//! - [`request`]: Responses request → Chat request (with a [`ToolMap`] to undo tool renaming),
//!   and Chat request → Responses request.
//! - [`chat_stream`]: [`ChatToResponses`], a state machine turning Chat chunks into Responses
//!   events as they arrive (a Responses client in front of a chat upstream).
//! - [`responses_stream`]: [`ResponsesToChat`], the reverse (a chat client in front of a
//!   Responses upstream).
//!
//! Each state machine is `push(event) -> bytes` and `finish() -> bytes`; nothing is buffered
//! beyond the item being built, except text that may be a leaked tool call (see `chat_stream`).

pub mod chat_stream;
pub mod request;
pub mod responses_stream;

pub use chat_stream::ChatToResponses;
pub use request::{chat_to_responses_request, responses_to_chat_request, ChatDialect, ChatRequest, ToolMap};
pub use responses_stream::ResponsesToChat;
