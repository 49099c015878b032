//! The SSE decoder yields the same events however the bytes are split, never panics, and the
//! boundaries it reports fall exactly between events.
#![no_main]

use codex_gate_protocol::sse::SseDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else { return };
    let mut whole = Vec::new();
    let mut d = SseDecoder::new(1 << 16);
    let whole_ok = d.push(bytes, &mut whole).is_ok() && d.finish(&mut whole).is_ok();

    let at = usize::from(cut) * bytes.len() / 256;
    let mut split = Vec::new();
    let mut d = SseDecoder::new(1 << 16);
    let mut sent = 0;
    let mut ok = true;
    for (offset, piece) in [(0, &bytes[..at]), (at, &bytes[at..])] {
        match d.push_tracked(piece, &mut split) {
            Ok(Some(n)) => sent = offset + n,
            Ok(None) => {}
            Err(_) => ok = false,
        }
    }
    ok = ok && d.finish(&mut split).is_ok();
    if whole_ok && ok {
        assert_eq!(whole, split, "split at {at} changed the events");
        // An event the gateway adds right after the reported boundary arrives as itself, and
        // changes none of the events before it.
        let decode = |b: &[u8]| {
            let mut d = SseDecoder::new(1 << 17);
            let mut evs = Vec::new();
            d.push(b, &mut evs).unwrap();
            d.finish(&mut evs).unwrap();
            evs
        };
        let mut before = decode(&bytes[..sent]);
        let after = decode(&[&bytes[..sent], &b"data: gate\n\n"[..]].concat());
        before.push(codex_gate_protocol::sse::SseEvent { event: None, data: "gate".into() });
        assert_eq!(before, after, "boundary {sent} is inside an event");
    }
});
