//! Reading a request body: size limit, a deadline for the whole body, `Content-Encoding: zstd`
//! (Codex compresses bodies with ChatGPT auth, codex-protocol §2.2) with the same limit applied
//! after decompression, the decoder's window bounded before it allocates, and the decoding done
//! on a blocking thread so a large frame never stalls the async workers.

use crate::error::GateError;
use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderMap};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::io::Read;
use std::time::Duration;

/// Largest zstd window accepted unless the frame declares its (allowed) size: 8 MiB is what
/// zstd's levels up to 19 use.
const MAX_ZSTD_WINDOW: u64 = 8 << 20;

pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize, within: Duration) -> Result<Bytes, GateError> {
    let raw = match tokio::time::timeout(within, Limited::new(body, limit).collect()).await {
        Err(_) => return Err(GateError::RequestTimeout(within.as_secs())),
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(GateError::PayloadTooLarge(limit)),
        Ok(Err(e)) => return Err(GateError::bad_request(format!("failed to read the request body: {e}"), None)),
    };
    let encoding = headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity") => Ok(raw),
        Some("zstd") => {
            check_zstd_header(&raw, limit)?;
            tokio::task::spawn_blocking(move || unzstd(&raw, limit))
                .await
                .map_err(|e| GateError::Internal(format!("zstd decoding task failed: {e}")))?
        }
        Some(other) => Err(GateError::UnsupportedEncoding(other.to_owned())),
    }
}

/// Read the zstd frame header (RFC 8878 §3.1.1.1) and refuse a frame whose window or declared
/// size is over the bounds before any decoder allocates for it.
fn check_zstd_header(raw: &[u8], limit: usize) -> Result<(), GateError> {
    let bad = |m: &str| GateError::bad_request(format!("request body is not valid zstd: {m}"), None);
    if raw.len() < 5 || raw[..4] != [0x28, 0xb5, 0x2f, 0xfd] {
        return Err(bad("no zstd frame magic"));
    }
    let fhd = raw[4];
    let single_segment = fhd & 0x20 != 0;
    let fcs_len = match fhd >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let dict_len = [0, 1, 2, 4][usize::from(fhd & 3)];
    let mut at = 5;
    let window = if single_segment {
        None
    } else {
        let wd = *raw.get(at).ok_or_else(|| bad("truncated frame header"))?;
        at += 1;
        let base = 1u64 << (10 + u64::from(wd >> 3));
        Some(base + base / 8 * u64::from(wd & 7))
    };
    at += dict_len;
    let fcs_bytes = raw.get(at..at + fcs_len).ok_or_else(|| bad("truncated frame header"))?;
    let mut fcs = fcs_bytes.iter().rev().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
    if fcs_len == 2 {
        fcs += 256;
    }
    if fcs_len > 0 && fcs > limit as u64 {
        return Err(GateError::PayloadTooLarge(limit));
    }
    match window {
        Some(w) if w > MAX_ZSTD_WINDOW.min(limit as u64).max(1 << 20) => {
            Err(bad(&format!("window of {w} bytes is larger than the gateway accepts")))
        }
        _ => Ok(()),
    }
}

fn unzstd(raw: &[u8], limit: usize) -> Result<Bytes, GateError> {
    let bad = |e: &dyn std::fmt::Display| GateError::bad_request(format!("request body is not valid zstd: {e}"), None);
    let decoder = ruzstd::decoding::StreamingDecoder::new(raw).map_err(|e| bad(&e))?;
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(limit));
    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    decoder.take(limit as u64 + 1).read_to_end(&mut out).map_err(|e| bad(&e))?;
    if out.len() > limit {
        return Err(GateError::PayloadTooLarge(limit));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    /// A frame header that declares `window_log` and nothing else, followed by junk blocks.
    fn bomb(wd: u8) -> Vec<u8> {
        let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, wd];
        f.extend(std::iter::repeat_n(0u8, 16 << 10));
        f
    }

    #[test]
    fn zstd_headers_over_the_bounds_are_refused_before_decoding() {
        // 1 TiB window (exponent 30): refused from the header alone.
        let e = check_zstd_header(&bomb(30 << 3), 32 << 20).unwrap_err();
        assert!(e.to_string().contains("window"), "{e}");
        // 16 MiB window: over the 8 MiB bound.
        assert!(check_zstd_header(&bomb(14 << 3), 32 << 20).is_err());
        // A declared content size over the limit is a 413 at once.
        let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0x80 | 0x20];
        f.extend_from_slice(&(64u32 << 20).to_le_bytes());
        assert!(matches!(check_zstd_header(&f, 32 << 20), Err(GateError::PayloadTooLarge(_))));
        // Real frames pass.
        let data = br#"{"model":"m","input":"hello"}"#.repeat(1000);
        check_zstd_header(&zstd(&data), 32 << 20).unwrap();
        assert!(check_zstd_header(b"\x28\xb5", 1 << 20).is_err());
    }

    #[test]
    fn zstd_round_trip_and_limits() {
        let data = br#"{"model":"m","input":"hello hello hello hello"}"#.repeat(100);
        assert_eq!(unzstd(&zstd(&data), data.len()).unwrap(), Bytes::from(data.clone()));
        assert!(matches!(unzstd(&zstd(&data), data.len() - 1), Err(GateError::PayloadTooLarge(_))));
        assert!(matches!(unzstd(b"not zstd at all", 1 << 20), Err(GateError::BadRequest { .. })));
        let mut cut = zstd(&data);
        cut.truncate(cut.len() / 2);
        assert!(matches!(unzstd(&cut, 1 << 20), Err(GateError::BadRequest { .. })));
    }
}
