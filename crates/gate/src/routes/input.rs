//! Reading a request body: size limit, `Content-Encoding: zstd` (Codex compresses bodies with
//! ChatGPT auth, codex-protocol §2.2) with the same limit applied after decompression.

use crate::error::GateError;
use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderMap};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::io::Read;

pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, GateError> {
    let raw = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(GateError::PayloadTooLarge(limit)),
        Err(e) => return Err(GateError::bad_request(format!("failed to read the request body: {e}"), None)),
    };
    let encoding = headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity") => Ok(raw),
        Some("zstd") => unzstd(&raw, limit),
        Some(other) => Err(GateError::UnsupportedEncoding(other.to_owned())),
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
