//! The log writer: keeps write syscalls and the stderr lock off the request path. Each log line
//! is appended to a shared buffer; a background thread writes what has gathered to stderr every
//! 50 ms. Idle, the thread sleeps until a line arrives. [`FlushGuard`] writes the rest on exit.

use parking_lot::{Condvar, Mutex};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// How long lines may gather before they are written.
const GATHER: Duration = Duration::from_millis(50);
/// Past this many waiting bytes (stderr blocked), lines are dropped instead of growing memory.
const CAP: usize = 8 << 20;

#[derive(Default)]
struct Shared {
    buf: Mutex<Vec<u8>>,
    arrived: Condvar,
    /// Held while a batch is taken and written, so batches reach stderr in order.
    writing: Mutex<()>,
}

impl Shared {
    fn write_out(&self) {
        let _order = self.writing.lock();
        let batch = std::mem::take(&mut *self.buf.lock());
        if !batch.is_empty() {
            let _ = std::io::stderr().lock().write_all(&batch);
        }
    }
}

/// A `MakeWriter` for `tracing_subscriber::fmt` that buffers.
#[derive(Clone)]
pub struct Sink(Arc<Shared>);

/// Writes what is still buffered when dropped (at the end of `main`).
pub struct FlushGuard(Arc<Shared>);

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.0.write_out();
    }
}

impl Sink {
    /// Start the writer thread. Keep the guard alive for as long as logging may happen.
    pub fn start() -> (Sink, FlushGuard) {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let spawned = std::thread::Builder::new().name("log-writer".into()).spawn(move || loop {
            {
                let mut buf = s.buf.lock();
                while buf.is_empty() {
                    s.arrived.wait(&mut buf);
                }
            }
            std::thread::sleep(GATHER);
            s.write_out();
        });
        if spawned.is_err() {
            // No thread: lines still gather and the guard writes them at exit.
            eprintln!("warning: cannot start the log writer thread; logs appear at exit");
        }
        (Sink(shared.clone()), FlushGuard(shared))
    }
}

/// One log event's bytes (the fmt layer writes each event with a single `write_all`).
pub struct Line<'a>(&'a Shared);

impl Write for Line<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let mut buf = self.0.buf.lock();
        if buf.len() + b.len() <= CAP {
            let was_empty = buf.is_empty();
            buf.extend_from_slice(b);
            if was_empty {
                self.0.arrived.notify_one();
            }
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Sink {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_gather_in_order_and_respect_the_cap() {
        let shared = Shared::default();
        for i in 0..3 {
            let mut l = Line(&shared);
            l.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        assert_eq!(&*shared.buf.lock(), b"line 0\nline 1\nline 2\n");
        let huge = vec![b'x'; CAP];
        Line(&shared).write_all(&huge).unwrap();
        assert_eq!(shared.buf.lock().len(), 21, "a line past the cap is dropped, not buffered");
    }
}
