//! The HTTP/1.1 answer framing never panics on hostile bytes, decodes the same body however the
//! bytes are cut into reads, hands out no byte it was not given, and a Content-Length body that
//! completes has exactly its declared length.
#![no_main]

use bytes::Bytes;
use codex_gate_protocol::h1::{parse_head, Framing, Malformed, Step};
use http::Method;
use libfuzzer_sys::fuzz_target;

/// What decoding made of an answer: status, framing at the start, body, whether it completed.
#[derive(Debug, PartialEq)]
struct Outcome {
    status: u16,
    framing: Framing,
    body: Vec<u8>,
    complete: bool,
}

fn decode(method: &Method, pieces: &[&[u8]]) -> Result<Option<Outcome>, Malformed> {
    let mut buf = Bytes::new();
    let mut next = pieces.iter();
    let mut feed = |buf: &mut Bytes| match next.next() {
        Some(p) => {
            *buf = [&buf[..], p].concat().into();
            true
        }
        None => false,
    };
    // Interim answers come before the real one, as the client skips them.
    let head = loop {
        match parse_head(&buf)? {
            Some((n, head)) => {
                buf = buf.slice(n..);
                if head.status.is_informational() {
                    continue;
                }
                break head;
            }
            None if feed(&mut buf) => {}
            None => return Ok(None),
        }
    };
    let mut framing = Framing::of(&head, method)?;
    let start = framing;
    let mut body = Vec::new();
    let complete = loop {
        match framing.step(&mut buf)? {
            Step::Data(d) => body.extend_from_slice(&d),
            Step::End => break true,
            Step::NeedMore if feed(&mut buf) => {}
            Step::NeedMore => break framing.ends_at_close(),
        }
    };
    Ok(Some(Outcome { status: head.status.as_u16(), framing: start, body, complete }))
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, bytes)) = data.split_first() else { return };
    let method = [Method::POST, Method::GET, Method::HEAD][usize::from(ctl % 3)].clone();
    let whole = decode(&method, &[bytes]);
    // Cut into reads at up to three places chosen by the control byte.
    let mut cuts: Vec<usize> = (1..4).map(|k| usize::from(ctl.rotate_left(k * 2)) * bytes.len() / 256).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for c in cuts.into_iter().chain([bytes.len()]) {
        pieces.push(&bytes[from..c]);
        from = c;
    }
    let cut = decode(&method, &pieces);
    match (&whole, &cut) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "cutting the reads changed the answer"),
        // A line too long is seen only once enough of it has arrived, so only the kind of
        // failure has to agree, not the moment.
        (Err(_), Err(_)) => {}
        _ => {
            let long_line =
                |r: &Result<Option<Outcome>, Malformed>| matches!(r, Err(e) if e.0.contains("line too long"));
            assert!(long_line(&whole) || long_line(&cut), "{whole:?} vs {cut:?}");
        }
    }
    if let Ok(Some(o)) = &whole {
        assert!(o.body.len() <= bytes.len());
        if let (Framing::Length(n), true) = (o.framing, o.complete) {
            assert_eq!(o.body.len() as u64, n);
        }
    }
});
