//! Publishing one checked event, for both publisher endpoints (`/publish` and
//! `POST /api/send-event`): the key's rate budget, then the engine, then the
//! counters.

use std::sync::Arc;

use rtet_protocol::limits::nesting_depth;
use rtet_protocol::{ErrorCode, FrameError, PublishFrame};

use crate::engine::{BoxFuture, Published};
use crate::state::{KeyId, Relay};
use rtet_protocol::clock::unix_ms as now_millis;

/// Publishes `frame` for the key `key`. The caller has already checked the
/// frame's size and names; this checks how deep its data nests.
pub async fn publish(
    relay: &Relay,
    key: KeyId,
    frame: &PublishFrame,
) -> Result<Published, FrameError> {
    let fail = |code, message: String| FrameError {
        code,
        message,
        id: Some(frame.id.clone()),
        channel: Some(frame.channel.clone()),
    };
    let max_depth = relay.config.limits.max_data_depth;
    if nesting_depth(frame.data.get(), max_depth + 1) > max_depth {
        return Err(fail(
            ErrorCode::Invalid,
            format!("data nests deeper than {max_depth} levels of arrays and objects"),
        ));
    }
    if !relay.keys.take_publish(key) {
        return Err(fail(
            ErrorCode::RateLimited,
            format!(
                "more than {} publishes per second for this key",
                relay.config.limits.publishes_per_sec_per_key
            ),
        ));
    }
    let ts = frame.ts.unwrap_or_else(now_millis);
    match relay.engine.publish(frame, ts).await {
        Ok(p) => {
            if p.duplicate {
                relay.metrics.duplicates.inc();
            } else {
                relay.metrics.events_published.inc();
            }
            Ok(p)
        }
        Err(e) => {
            if let Some(budget) = e.budget() {
                relay.metrics.budget_refused(budget);
            }
            Err(fail(e.code(), e.to_string()))
        }
    }
}

/// [`publish`] with owned arguments: the future hands the event to the
/// engine the first time it is polled, and resolves to the frame and its
/// result. A publisher connection polls each one once as it reads it, so a
/// pipelined burst reaches the engine in the order it was sent while the
/// answers (a Redis round trip each) are awaited together.
pub fn publish_owned(
    relay: Arc<Relay>,
    key: KeyId,
    frame: PublishFrame,
) -> BoxFuture<'static, (PublishFrame, Result<Published, FrameError>)> {
    Box::pin(async move {
        let result = publish(&relay, key, &frame).await;
        (frame, result)
    })
}
