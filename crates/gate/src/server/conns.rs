//! The set of open client connections: a cap on how many, and who makes room at the cap. A
//! connection that has no request in flight (idle keep-alive, or a client that never finished
//! its request head) is "idle"; at the cap the longest-idle one is closed so a new client (say,
//! `/health`) is still served, and when every connection is busy the newcomer is turned away.
//! At shutdown the idle ones are closed at once and the rest when the drain deadline passes.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::Notify;

/// One connection's shared state.
#[derive(Debug, Default)]
pub struct ConnState {
    /// Requests whose answer has not been sent to its end.
    active: AtomicUsize,
    /// When the connection last became idle (ms since the epoch).
    idle_since_ms: AtomicI64,
    /// Notified to close the connection now.
    pub kill: Notify,
    /// A request head has arrived on this connection at least once.
    started: std::sync::atomic::AtomicBool,
}

impl ConnState {
    /// A request started on this connection; the guard ends it when the answer is done.
    pub fn begin(self: &Arc<Self>) -> Active {
        self.started.store(true, Relaxed);
        self.active.fetch_add(1, Relaxed);
        Active(self.clone())
    }
}

impl ConnState {
    /// Resolves if no request head has arrived `within` of connecting. hyper's header timeout
    /// starts only once it knows the protocol; this also covers a client that sends nothing.
    pub async fn first_request_deadline(&self, within: std::time::Duration) {
        tokio::time::sleep(within).await;
        if self.started.load(Relaxed) {
            std::future::pending::<()>().await;
        }
    }
}

/// Held by a request's answer body; dropping it marks the request done.
#[derive(Debug)]
pub struct Active(Arc<ConnState>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.idle_since_ms.store(crate::now_ms(), Relaxed);
        self.0.active.fetch_sub(1, Relaxed);
    }
}

/// A response body that holds its connection's [`Active`] guard until it is finished or dropped.
pub struct Tracked<B> {
    pub inner: B,
    pub active: Option<Active>,
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) {
            self.active = None;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[derive(Debug)]
pub struct Conns {
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
    next: AtomicUsize,
    cap: usize,
    /// Notified whenever a connection closes.
    pub closed: Notify,
}

/// What to do with a connection just accepted.
#[derive(Debug)]
pub enum Admit {
    Yes(u64, Arc<ConnState>),
    /// At the cap with every connection busy.
    Full,
}

impl Conns {
    pub fn new(cap: usize) -> Conns {
        Conns { open: Mutex::default(), next: AtomicUsize::new(0), cap, closed: Notify::new() }
    }

    pub fn len(&self) -> usize {
        self.open.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Register a new connection, closing the longest-idle one first when at the cap.
    pub fn admit(&self) -> Admit {
        let mut open = self.open.lock();
        if open.len() >= self.cap {
            let victim = open
                .iter()
                .filter(|(_, c)| c.active.load(Relaxed) == 0)
                .min_by_key(|(_, c)| c.idle_since_ms.load(Relaxed))
                .map(|(id, _)| *id);
            match victim.and_then(|id| open.remove(&id)) {
                Some(c) => c.kill.notify_one(),
                None => return Admit::Full,
            }
        }
        let id = self.next.fetch_add(1, Relaxed) as u64;
        let state = Arc::new(ConnState::default());
        state.idle_since_ms.store(crate::now_ms(), Relaxed);
        open.insert(id, state.clone());
        Admit::Yes(id, state)
    }

    /// The connection's task ended.
    pub fn remove(&self, id: u64) {
        self.open.lock().remove(&id);
        self.closed.notify_waiters();
    }

    /// Close every connection with nothing in flight (or every one, with `all`).
    pub fn close_idle(&self, all: bool) {
        for c in self.open.lock().values() {
            if all || c.active.load(Relaxed) == 0 {
                c.kill.notify_one();
            }
        }
    }

    /// Connections with a request in flight.
    pub fn busy(&self) -> usize {
        self.open.lock().values().filter(|c| c.active.load(Relaxed) > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_longest_idle_makes_room_and_busy_ones_never_do() {
        let conns = Conns::new(2);
        let Admit::Yes(a, sa) = conns.admit() else { panic!() };
        let Admit::Yes(_b, sb) = conns.admit() else { panic!() };
        sa.idle_since_ms.store(1, Relaxed); // a has been idle longest
        let Admit::Yes(_c, _) = conns.admit() else { panic!("an idle connection makes room") };
        assert!(!conns.open.lock().contains_key(&a));
        let _busy_b = sb.begin();
        let Admit::Yes(_, sc) = conns.admit() else { panic!("c was idle") };
        let _busy_c = sc.begin();
        // Now b and the newest are both busy.
        assert_eq!(conns.len(), 2);
        assert!(matches!(conns.admit(), Admit::Full));
        drop(_busy_b);
        assert!(matches!(conns.admit(), Admit::Yes(..)), "b is idle again");
    }
}
