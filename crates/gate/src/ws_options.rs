//! The WebSocket settings both of the gateway's sides share (the client's Responses WebSocket
//! and its own sockets upstream): permessage-deflate (RFC 7692) with one deflate pool for the
//! process. Client connections run without context takeover in either direction, so an open one
//! holds about 2 KiB of compression state instead of the ~370 KiB of its own compressor and
//! decompressor — thousands of idle Codex sessions stay cheap — and frames below
//! [`THRESHOLD`] (most events: a text delta is ~150 bytes) go out as they are. The gateway's
//! sockets upstream ask for the same ([`OFFER`]). Deflate runs on zlib-rs (yawc's `zlib`
//! feature), not miniz_oxide: inflating each small event from a fresh state spent most of its
//! time building Huffman tables there (bench `ws`, docs/benchmarks.md).

use std::sync::OnceLock;
use yawc::{DeflatePool, Options};

/// Smaller frames are not worth compressing without a shared dictionary.
pub const THRESHOLD: usize = 512;

/// The offer the gateway's own sockets make upstream: no context takeover either way, as on the
/// client side. Letting the upstream keep its context was measured (bench `ws`): the same CPU
/// per turn and twice the memory per idle session (a ~40 KiB inflater per upstream socket).
pub const OFFER: &str = "permessage-deflate; client_no_context_takeover; server_no_context_takeover";

fn pool() -> DeflatePool {
    static POOL: OnceLock<DeflatePool> = OnceLock::new();
    // Sized for the messages compressed at one moment (about one per worker thread).
    POOL.get_or_init(|| DeflatePool::new(64)).clone()
}

/// Settings for a socket whose messages may be up to `limit` bytes (after inflation).
pub fn options(limit: usize) -> Options {
    Options::default()
        .with_low_latency_compression()
        .server_no_context_takeover()
        .client_no_context_takeover()
        .with_deflate_pool(pool())
        .with_compression_threshold(THRESHOLD)
        .with_max_payload_read(limit.saturating_add(1))
        .with_max_read_buffer(limit.saturating_add(1))
        .with_utf8()
        .with_no_delay()
}

/// The first of the client's offers (`Sec-WebSocket-Extensions`) that [`options`] can honour:
/// permessage-deflate without a server window below 15 bits. Smaller windows would give the
/// shared pool one kind of compressor per size, and zlib cannot make an 8-bit one (it widens
/// it to 9, which such a client could not inflate). An offer asking for one is declined, as
/// RFC 7692 §7.1.2.1 says; with none left the connection runs uncompressed.
pub fn acceptable_offer(header: &str) -> Option<&str> {
    header.split(',').map(str::trim).find(|one| {
        let mut params = one.split(';').map(str::trim);
        params.next() == Some("permessage-deflate")
            && !params.any(|p| {
                p.strip_prefix("server_max_window_bits")
                    .and_then(|v| v.trim().strip_prefix('='))
                    .is_some_and(|v| v.trim().trim_matches('"').parse::<u8>().map_or(true, |b| b < 15))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_needing_a_smaller_server_window_are_declined() {
        assert_eq!(
            acceptable_offer("permessage-deflate; client_max_window_bits"),
            Some("permessage-deflate; client_max_window_bits")
        );
        assert_eq!(
            acceptable_offer("permessage-deflate; server_max_window_bits=15"),
            Some("permessage-deflate; server_max_window_bits=15")
        );
        assert_eq!(acceptable_offer("permessage-deflate; server_max_window_bits=10"), None);
        assert_eq!(acceptable_offer("permessage-deflate; server_max_window_bits=\"9\""), None);
        assert_eq!(
            acceptable_offer("permessage-deflate; server_max_window_bits=10, permessage-deflate"),
            Some("permessage-deflate")
        );
        assert_eq!(acceptable_offer("x-webkit-deflate-frame"), None);
    }
}
