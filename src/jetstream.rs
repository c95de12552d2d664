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

/// The JetStream API error code anywhere in `error`'s chain of causes. async-nats carries the
/// server's error as a cause, or inside the kind of a stream request's error
/// (`CreateStreamErrorKind::JetStream`, `GetStreamErrorKind::JetStream`, which deleting a
/// stream also returns), which is where KV buckets' creation and deletion put it.
pub fn error_code(error: &(dyn std::error::Error + 'static)) -> Option<ErrorCode> {
    use async_nats::jetstream::context::{
        CreateStreamError, CreateStreamErrorKind, GetStreamError, GetStreamErrorKind,
    };
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(js) = e.downcast_ref::<async_nats::jetstream::Error>() {
            return Some(js.error_code());
        }
        if let Some(create) = e.downcast_ref::<CreateStreamError>()
            && let CreateStreamErrorKind::JetStream(js) = create.kind()
        {
            return Some(js.error_code());
        }
        if let Some(get) = e.downcast_ref::<GetStreamError>()
            && let GetStreamErrorKind::JetStream(js) = get.kind()
        {
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

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream::context::{
        CreateKeyValueError, CreateKeyValueErrorKind, CreateStreamError, CreateStreamErrorKind,
        GetStreamError, GetStreamErrorKind, KeyValueError, KeyValueErrorKind,
    };

    fn server_error(code: u64) -> async_nats::jetstream::Error {
        serde_json::from_str(&format!(
            r#"{{"code": 404, "err_code": {code}, "description": "from the server"}}"#
        ))
        .unwrap()
    }

    #[test]
    fn codes_are_found_where_async_nats_puts_them() {
        // Deleting a bucket: KeyValueError caused by a stream request's error whose kind
        // holds the server's answer.
        let deleted = KeyValueError::with_source(
            KeyValueErrorKind::JetStream,
            GetStreamError::new(GetStreamErrorKind::JetStream(server_error(10059))),
        );
        assert_eq!(error_code(&deleted), Some(STREAM_NOT_FOUND));
        // Creating one: the same, through CreateStreamError.
        let created = CreateKeyValueError::with_source(
            CreateKeyValueErrorKind::BucketCreate,
            CreateStreamError::new(CreateStreamErrorKind::JetStream(server_error(10005))),
        );
        assert_eq!(error_code(&created), Some(NO_PEERS_FOR_PLACEMENT));
        let timed_out = CreateKeyValueError::new(CreateKeyValueErrorKind::TimedOut);
        assert_eq!(error_code(&timed_out), None);
    }
}
