//! What a driver error means for the event store: a duplicate key on one of our unique
//! indexes, a transaction worth retrying, a commit whose outcome is unknown, or a replica set
//! that cannot serve now.
//!
//! The driver's error is first reduced to plain parts (kind, code, labels, message) so the
//! classification itself is a pure function that tests can feed directly, including labels
//! that only a server attaches.

use super::indexes::{CLAIM_INDEX, EVENT_VERSION_INDEX};
use domain::ports::StoreError;
use mongodb::error::{Error, ErrorKind, WriteFailure, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};

/// Server error code of a duplicate key.
pub const DUPLICATE_KEY: i32 = 11000;
/// Server error code of a write conflict between transactions.
const WRITE_CONFLICT: i32 = 112;

/// Server codes that mean the replica set cannot serve now (no primary, stepping down,
/// shutting down, network trouble between members, a time limit).
const UNAVAILABLE_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    50,    // MaxTimeMSExpired
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// The broad kind of a driver error, as far as the store cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The server answered with an error (command, write or write-concern error).
    Server,
    /// No server could be selected within the server selection timeout.
    ServerSelection,
    /// The connection failed: I/O, DNS, a cleared pool, a client shut down.
    Network,
    /// Credentials were refused.
    Authentication,
    /// A stored document could not be decoded.
    Decoding,
    Other,
}

/// The parts of a driver error that decide what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorParts {
    pub origin: Origin,
    pub code: Option<i32>,
    pub labels: Vec<String>,
    pub message: String,
}

/// Which unique index a duplicate key hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicate {
    /// `{streamId, version}` in `events`: another writer took the version.
    EventVersion,
    /// `{scope, value}` in `claims`: another stream holds the value.
    Claim,
    /// Any other index (e.g. `_id`).
    Other,
}

/// What the store does about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Duplicate(Duplicate),
    /// Retry the whole transaction (`TransientTransactionError`, write conflicts).
    Transient,
    /// Retry the commit (`UnknownTransactionCommitResult`).
    UnknownCommitResult,
    /// The replica set cannot serve now: answer "unavailable", nothing was written.
    Unavailable,
    /// Stored data cannot be decoded.
    Corrupt,
    /// Anything else; still reported as unavailable, but logged as unexpected.
    Other,
}

/// Reduces a driver error to the parts that matter here.
pub fn parts(error: &Error) -> ErrorParts {
    let (origin, code, message) = match error.kind.as_ref() {
        ErrorKind::Command(command) => (Origin::Server, Some(command.code), command.message.clone()),
        ErrorKind::Write(WriteFailure::WriteError(write)) => (Origin::Server, Some(write.code), write.message.clone()),
        ErrorKind::Write(WriteFailure::WriteConcernError(concern)) => {
            (Origin::Server, Some(concern.code), concern.message.clone())
        }
        ErrorKind::InsertMany(insert) => match insert.write_errors.as_ref().and_then(|errors| errors.first()) {
            Some(write) => (Origin::Server, Some(write.code), write.message.clone()),
            None => match &insert.write_concern_error {
                Some(concern) => (Origin::Server, Some(concern.code), concern.message.clone()),
                None => (Origin::Server, None, error.kind.to_string()),
            },
        },
        ErrorKind::ServerSelection { message, .. } => (Origin::ServerSelection, None, message.clone()),
        ErrorKind::Io(_)
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::Shutdown => (Origin::Network, None, error.kind.to_string()),
        ErrorKind::Authentication { message, .. } => (Origin::Authentication, None, message.clone()),
        ErrorKind::BsonDeserialization(_) => (Origin::Decoding, None, error.kind.to_string()),
        _ => (Origin::Other, None, error.kind.to_string()),
    };
    let mut labels: Vec<String> = error.labels().iter().cloned().collect();
    for label in [TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT] {
        // Labels may sit on a wrapped source error.
        if error.contains_label(label) && !labels.iter().any(|l| l == label) {
            labels.push(label.to_owned());
        }
    }
    labels.sort();
    ErrorParts { origin, code, labels, message }
}

/// What an error means. Order matters: a duplicate key is an answer, not an outage; a server
/// that cannot be selected has already had its timeout, so it is not retried here.
pub fn classify(parts: &ErrorParts) -> Class {
    let has = |label: &str| parts.labels.iter().any(|l| l == label);
    if parts.code == Some(DUPLICATE_KEY) {
        return Class::Duplicate(duplicate_index(&parts.message));
    }
    match parts.origin {
        Origin::ServerSelection | Origin::Authentication => return Class::Unavailable,
        Origin::Decoding => return Class::Corrupt,
        _ => {}
    }
    if has(UNKNOWN_TRANSACTION_COMMIT_RESULT) {
        return Class::UnknownCommitResult;
    }
    if has(TRANSIENT_TRANSACTION_ERROR) || parts.code == Some(WRITE_CONFLICT) {
        return Class::Transient;
    }
    if parts.origin == Origin::Network || parts.code.is_some_and(|code| UNAVAILABLE_CODES.contains(&code)) {
        return Class::Unavailable;
    }
    Class::Other
}

/// The index named in a duplicate-key message
/// (`E11000 duplicate key error collection: lct.events index: <name> dup key: { … }`).
fn duplicate_index(message: &str) -> Duplicate {
    let index = message.split("index: ").nth(1).and_then(|rest| rest.split_whitespace().next());
    match index {
        Some(EVENT_VERSION_INDEX) => Duplicate::EventVersion,
        Some(CLAIM_INDEX) => Duplicate::Claim,
        _ => Duplicate::Other,
    }
}

/// Classifies a driver error.
pub fn class_of(error: &Error) -> Class {
    classify(&parts(error))
}

/// The port's error for a driver error that is not a conflict: `Corrupt` for undecodable data,
/// `Unavailable` otherwise. The message names the driver's error kind only (never credentials,
/// which the driver does not put there either).
pub fn store_error(context: &str, error: &Error) -> StoreError {
    let parts = parts(error);
    match classify(&parts) {
        Class::Corrupt => StoreError::Corrupt(format!("{context}: {}", parts.message)),
        Class::Other => {
            tracing::error!(context, code = ?parts.code, labels = ?parts.labels, error = %parts.message, "unexpected MongoDB error");
            StoreError::Unavailable(format!("{context}: {}", parts.message))
        }
        _ => StoreError::Unavailable(format!("{context}: {}", parts.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{self, doc};
    use mongodb::error::{CommandError, InsertManyError, WriteError};

    fn duplicate_message(collection: &str, index: &str) -> String {
        format!("E11000 duplicate key error collection: lct.{collection} index: {index} dup key: {{ version: 2 }}")
    }

    fn write_error(code: i32, message: &str) -> Error {
        let write: WriteError = bson::from_document(doc! { "code": code, "codeName": "X", "errmsg": message }).unwrap();
        Error::from(ErrorKind::Write(WriteFailure::WriteError(write)))
    }

    fn insert_many_error(code: i32, message: &str) -> Error {
        let insert: InsertManyError = bson::from_document(doc! {
            "writeErrors": [{ "index": 0, "code": code, "errmsg": message }],
        })
        .unwrap();
        Error::from(ErrorKind::InsertMany(insert))
    }

    fn command_error(code: i32, name: &str) -> Error {
        let command: CommandError =
            bson::from_document(doc! { "code": code, "codeName": name, "errmsg": name }).unwrap();
        Error::from(ErrorKind::Command(command))
    }

    fn server_parts(code: i32, labels: &[&str]) -> ErrorParts {
        ErrorParts {
            origin: Origin::Server,
            code: Some(code),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            message: String::new(),
        }
    }

    #[test]
    fn a_duplicate_on_the_event_version_index_is_told_apart_from_one_on_the_claims_index() {
        let on_events = insert_many_error(DUPLICATE_KEY, &duplicate_message("events", EVENT_VERSION_INDEX));
        assert_eq!(class_of(&on_events), Class::Duplicate(Duplicate::EventVersion));
        let on_claims = write_error(DUPLICATE_KEY, &duplicate_message("claims", CLAIM_INDEX));
        assert_eq!(class_of(&on_claims), Class::Duplicate(Duplicate::Claim));
        let on_id = write_error(DUPLICATE_KEY, &duplicate_message("snapshots", "_id_"));
        assert_eq!(class_of(&on_id), Class::Duplicate(Duplicate::Other));
        assert_eq!(parts(&on_claims).code, Some(DUPLICATE_KEY));
    }

    #[test]
    fn a_duplicate_key_reported_as_a_command_error_is_classified_like_a_write_error() {
        // The shape some servers and wire-compatible stand-ins use: `{ok: 0, code: 11000}`, with a
        // message that names the index but not the collection.
        let command = |index: &str| {
            let message = format!("E11000 duplicate key error index: {index} dup key: {{ streamId: 1, version: 1 }}");
            let command: CommandError =
                bson::from_document(doc! { "code": DUPLICATE_KEY, "codeName": "DuplicateKey", "errmsg": message })
                    .unwrap();
            Error::from(ErrorKind::Command(command))
        };
        assert_eq!(class_of(&command(EVENT_VERSION_INDEX)), Class::Duplicate(Duplicate::EventVersion));
        assert_eq!(class_of(&command(CLAIM_INDEX)), Class::Duplicate(Duplicate::Claim));
        let write = write_error(DUPLICATE_KEY, &duplicate_message("claims", CLAIM_INDEX));
        assert_eq!(class_of(&write), class_of(&command(CLAIM_INDEX)));
    }

    #[test]
    fn transaction_labels_decide_between_retrying_the_transaction_and_the_commit() {
        assert_eq!(classify(&server_parts(251, &[TRANSIENT_TRANSACTION_ERROR])), Class::Transient);
        assert_eq!(classify(&server_parts(WRITE_CONFLICT, &[])), Class::Transient);
        assert_eq!(classify(&server_parts(50, &[UNKNOWN_TRANSACTION_COMMIT_RESULT])), Class::UnknownCommitResult);
        let network_in_transaction = ErrorParts {
            origin: Origin::Network,
            code: None,
            labels: vec![TRANSIENT_TRANSACTION_ERROR.into()],
            message: "connection reset".into(),
        };
        assert_eq!(classify(&network_in_transaction), Class::Transient);
        // A duplicate key is an answer even where the server adds a label.
        assert_eq!(
            classify(&ErrorParts {
                message: duplicate_message("events", EVENT_VERSION_INDEX),
                ..server_parts(DUPLICATE_KEY, &[TRANSIENT_TRANSACTION_ERROR])
            }),
            Class::Duplicate(Duplicate::EventVersion)
        );
    }

    #[test]
    fn network_trouble_and_a_missing_primary_are_unavailable() {
        for kind in [std::io::ErrorKind::ConnectionRefused, std::io::ErrorKind::TimedOut] {
            assert_eq!(class_of(&Error::from(kind)), Class::Unavailable);
        }
        for (code, name) in [(10107, "NotWritablePrimary"), (189, "PrimarySteppedDown"), (91, "ShutdownInProgress")] {
            assert_eq!(class_of(&command_error(code, name)), Class::Unavailable, "{name}");
        }
        let selection =
            ErrorParts { origin: Origin::ServerSelection, code: None, labels: vec![], message: String::new() };
        assert_eq!(classify(&selection), Class::Unavailable);
        assert!(matches!(
            store_error("loading", &Error::from(std::io::ErrorKind::BrokenPipe)),
            StoreError::Unavailable(_)
        ));
    }

    #[test]
    fn other_server_errors_are_not_mistaken_for_conflicts_or_outages() {
        assert_eq!(class_of(&command_error(2, "BadValue")), Class::Other);
        assert_eq!(class_of(&write_error(121, "Document failed validation")), Class::Other);
        let decoding = ErrorParts { origin: Origin::Decoding, code: None, labels: vec![], message: String::new() };
        assert_eq!(classify(&decoding), Class::Corrupt);
    }

    #[test]
    fn index_names_are_read_from_the_server_message() {
        assert_eq!(duplicate_index(&duplicate_message("events", EVENT_VERSION_INDEX)), Duplicate::EventVersion);
        assert_eq!(duplicate_index(&duplicate_message("claims", CLAIM_INDEX)), Duplicate::Claim);
        assert_eq!(duplicate_index("E11000 duplicate key error"), Duplicate::Other);
    }
}
