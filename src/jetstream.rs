//! The JetStream answers natsup acts on, read from the errors' types and codes (nats-server's
//! `server/errors.json`), never from their text.

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::PublishErrorKind;

/// 10005, "no suitable peers for placement": just after a cluster formed, the meta leader has
/// not heard from every peer yet and refuses to place replicas on one. Asked again, it does.
pub const NO_PEERS_FOR_PLACEMENT: ErrorCode = ErrorCode::CLUSTER_NO_PEERS;

/// 10059, "stream not found": a server that does not know a stream made through another one
/// yet.
pub const STREAM_NOT_FOUND: ErrorCode = ErrorCode::STREAM_NOT_FOUND;

/// The JetStream API error code anywhere in `error`'s chain of causes.
pub fn error_code(error: &(dyn std::error::Error + 'static)) -> Option<ErrorCode> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(js) = e.downcast_ref::<async_nats::jetstream::Error>() {
            return Some(js.error_code());
        }
        cause = e.source();
    }
    None
}

/// Whether a publish (a KV put) found no stream for its subject: in a cluster, a new stream's
/// interest reaches the other servers a moment after its creation is acknowledged.
pub fn no_stream_yet(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(publish) = e.downcast_ref::<async_nats::jetstream::context::PublishError>() {
            return publish.kind() == PublishErrorKind::StreamNotFound;
        }
        cause = e.source();
    }
    false
}
