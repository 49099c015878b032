//! Events between instances over one Redis pub/sub channel: an account cooled down, its quota
//! learned, a session's account chosen, an account's tokens refreshed. Each is a small JSON
//! object with `t` (the kind) and `from` (the sending instance, whose own events it ignores).
//! Publishing goes through a queue drained by a task of its own, so no request waits on it.

use super::Cluster;
use futures_util::StreamExt;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const CHANNEL: &str = "codex-gate:events";

/// Send queued events until `stop`.
pub async fn publish_loop(cluster: Arc<Cluster>, stop: CancellationToken) {
    let Some(mut rx) = cluster.take_outbox() else { return };
    loop {
        let msg = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => break },
            () = stop.cancelled() => break,
        };
        let _: Option<i64> = cluster
            .call(|mut c| async move { redis::cmd("PUBLISH").arg(CHANNEL).arg(msg).query_async(&mut c).await })
            .await;
    }
}

/// Hand every event from another instance to `handle` until `stop`, resubscribing after a
/// lost connection.
pub async fn listen(cluster: Arc<Cluster>, stop: CancellationToken, handle: impl Fn(Value) + Send + 'static) {
    loop {
        let session = async {
            let mut ps = cluster.redis_client().get_async_pubsub().await?;
            ps.subscribe(CHANNEL).await?;
            cluster.subscribed.store(true, std::sync::atomic::Ordering::Relaxed);
            let mut stream = ps.on_message();
            while let Some(m) = stream.next().await {
                let Ok(text) = m.get_payload::<String>() else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                if v["from"].as_str() != Some(cluster.instance.as_str()) {
                    handle(v);
                }
            }
            Ok::<(), redis::RedisError>(())
        };
        let r = tokio::select! {
            r = session => Some(r),
            () = stop.cancelled() => None,
        };
        cluster.subscribed.store(false, std::sync::atomic::Ordering::Relaxed);
        let Some(r) = r else { return };
        if let Err(e) = r {
            tracing::debug!(error = %e, "cluster events: subscription lost; resubscribing");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// An event from this instance.
pub fn event(cluster: &Cluster, kind: &str, mut fields: Value) -> Value {
    if let Some(o) = fields.as_object_mut() {
        o.insert("t".into(), kind.into());
        o.insert("from".into(), cluster.instance.clone().into());
    }
    fields
}
