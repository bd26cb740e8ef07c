//! One append as one multi-document transaction: read the stream's version, release and
//! claim unique values, insert the events, commit. Conflicting transactions are retried whole
//! with a jittered pause; a commit with an unknown outcome is retried as a commit.
//!
//! When the outcome of a commit stays unknown (no answer within the operation timeout, the
//! connection lost, retries exhausted), the append does not answer "unavailable" blindly. It
//! sends the commit again on the same session, within a second operation timeout: the server
//! answers it definitely (it commits a transaction still open, answers success for one
//! committed already, and refuses one it aborted). Only when that gets no answer either does it
//! read the stream, and answer success when the events are there (the caller goes on to publish
//! them), a conflict when other events took the versions, and "unavailable" otherwise.

use super::documents::{self, CLAIMS, EVENTS};
use super::errors::{class_of, store_error, Class, Duplicate};
use super::MongoEventStore;
use domain::ports::{AppendRequest, RecordedEvent, StoreError};
use mongodb::bson::{doc, Document};
use mongodb::options::{ReadConcern, ReadPreference, SelectionCriteria, WriteConcern};
use mongodb::{ClientSession, Collection, Database};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use uuid::Uuid;

/// Attempts of one append when transactions keep conflicting (bounded by the operation
/// timeout as well).
const MAX_TRANSACTION_ATTEMPTS: u32 = 40;
/// Attempts of one commit whose result is unknown.
const MAX_COMMIT_ATTEMPTS: u32 = 5;

/// Why an append stopped inside a transaction.
enum Stop {
    /// The port's answer (a conflict); the transaction is aborted.
    Refused(StoreError),
    /// Another writer took one of the versions: a duplicate key on `events`.
    VersionTaken,
    Driver(mongodb::error::Error),
}

impl From<mongodb::error::Error> for Stop {
    fn from(error: mongodb::error::Error) -> Self {
        Stop::Driver(error)
    }
}

impl MongoEventStore {
    async fn current_version(
        events: &Collection<Document>,
        stream_id: Uuid,
        session: Option<&mut ClientSession>,
    ) -> mongodb::error::Result<u64> {
        let find = events
            .find_one(documents::stream_filter(stream_id))
            .sort(doc! { "version": -1 })
            .projection(doc! { "_id": 0, "version": 1 });
        let last = match session {
            Some(session) => find.session(session).await?,
            None => find.await?,
        };
        Ok(last.and_then(|doc| doc.get_i64("version").ok()).map_or(0, |v| v.max(0) as u64))
    }

    /// The writes of one append inside the session's transaction.
    async fn write_commit(
        database: &Database,
        session: &mut ClientSession,
        request: &AppendRequest,
        event_documents: &[Document],
    ) -> Result<(), Stop> {
        let events = database.collection::<Document>(EVENTS);
        let claims = database.collection::<Document>(CLAIMS);
        let actual = Self::current_version(&events, request.stream_id, Some(&mut *session)).await?;
        if actual != request.expected_version {
            return Err(Stop::Refused(StoreError::VersionConflict {
                stream_id: request.stream_id,
                expected: request.expected_version,
                actual,
            }));
        }
        for key in &request.releases {
            let mut owned = documents::claim_filter(key);
            owned.insert("owner", documents::uuid_bson(request.stream_id));
            claims.delete_one(owned).session(&mut *session).await?;
        }
        for key in &request.claims {
            match claims.find_one(documents::claim_filter(key)).session(&mut *session).await? {
                Some(held) if documents::claim_owner(&held).map_err(Stop::Refused)? == request.stream_id => {}
                Some(_) => return Err(Stop::Refused(StoreError::UniqueTaken(key.clone()))),
                None => {
                    let claim = documents::claim_document(key, request.stream_id);
                    match claims.insert_one(claim).session(&mut *session).await {
                        Ok(_) => {}
                        // The only unique key of a claim is its value: another stream got it.
                        Err(e) if matches!(class_of(&e), Class::Duplicate(_)) => {
                            return Err(Stop::Refused(StoreError::UniqueTaken(key.clone())))
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        if !event_documents.is_empty() {
            match events.insert_many(event_documents).session(&mut *session).await {
                Ok(_) => {}
                // Versions are the only unique key of events (`_id`s are generated).
                Err(e) if matches!(class_of(&e), Class::Duplicate(_)) => return Err(Stop::VersionTaken),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The port's answer to a duplicate key reported when committing (servers that check unique
    /// indexes at commit): which of the append's unique keys another writer took.
    async fn duplicate_at_commit(&self, database: &Database, request: &AppendRequest, on: Duplicate) -> StoreError {
        if on != Duplicate::Claim {
            return self.version_conflict(database, request).await;
        }
        let claims = database.collection::<Document>(CLAIMS);
        for key in &request.claims {
            if let Ok(Some(held)) = claims.find_one(documents::claim_filter(key)).await {
                if documents::claim_owner(&held).is_ok_and(|owner| owner != request.stream_id) {
                    return StoreError::UniqueTaken(key.clone());
                }
            }
        }
        match request.claims.first() {
            Some(key) => StoreError::UniqueTaken(key.clone()),
            None => self.version_conflict(database, request).await,
        }
    }

    /// Commits, retrying while the outcome is unknown. Returns the last error otherwise.
    async fn commit(session: &mut ClientSession) -> mongodb::error::Result<()> {
        let mut attempt = 1;
        loop {
            match session.commit_transaction().await {
                Err(e) if class_of(&e) == Class::UnknownCommitResult && attempt < MAX_COMMIT_ATTEMPTS => attempt += 1,
                result => return result,
            }
        }
    }

    /// The port's answer to a duplicate `{streamId, version}`: the stream moved on. `actual`
    /// is read again; it is at least the version that collided.
    async fn version_conflict(&self, database: &Database, request: &AppendRequest) -> StoreError {
        let events = database.collection::<Document>(EVENTS);
        let read = Self::current_version(&events, request.stream_id, None).await.unwrap_or(0);
        StoreError::VersionConflict {
            stream_id: request.stream_id,
            expected: request.expected_version,
            actual: read.max(request.expected_version + 1),
        }
    }

    /// Appends in a transaction within the operation timeout; when the commit's outcome stays
    /// unknown, reads the stream to find it out.
    pub(super) async fn append_resolving_unknown_commits(
        &self,
        request: AppendRequest,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let committing = AtomicBool::new(false);
        let mut session = None;
        let limit = self.inner.settings.operation_timeout;
        let outcome =
            tokio::time::timeout(limit, self.append_in_transaction(&request, &committing, &mut session)).await;
        let unknown = match outcome {
            Ok(answer) if !committing.load(Ordering::SeqCst) => {
                self.note_outage(&answer);
                return answer;
            }
            Ok(Ok(recorded)) => return Ok(recorded),
            Ok(Err(error)) => error.to_string(),
            Err(_) if committing.load(Ordering::SeqCst) => format!("no answer within {} ms", limit.as_millis()),
            Err(_) => {
                let answer =
                    Err(StoreError::Unavailable(format!("MongoDB did not answer within {} ms", limit.as_millis())));
                self.note_outage(&answer);
                return answer;
            }
        };
        if let Some(session) = session.as_mut() {
            if let Some(answer) = self.commit_again(session, &request, &unknown).await {
                return answer;
            }
        }
        self.resolve_commit(&request, &unknown).await
    }

    /// Sends the commit of `session`'s transaction again, within the operation timeout: the
    /// server's answer settles a commit whose first answer was lost, or that has not reached it
    /// (the first one still on its way then finds the transaction committed). `None` when it
    /// does not answer either.
    async fn commit_again(
        &self,
        session: &mut ClientSession,
        request: &AppendRequest,
        unknown: &str,
    ) -> Option<Result<Vec<RecordedEvent>, StoreError>> {
        let limit = self.inner.settings.operation_timeout;
        let answer = match tokio::time::timeout(limit, Self::commit(session)).await {
            Ok(Ok(())) => Ok(request.recorded()),
            Ok(Err(error)) => match class_of(&error) {
                Class::Duplicate(on) => Err(self.duplicate_at_commit(&self.database().await.ok()?, request, on).await),
                // The server aborted the transaction: nothing was committed.
                Class::Transient => Err(StoreError::Unavailable(format!(
                    "appending: the commit's outcome was unknown ({unknown}); the server then answered it \
                     did not happen ({})",
                    error.kind
                ))),
                _ => return None,
            },
            Err(_) => return None,
        };
        tracing::warn!(
            stream_id = %request.stream_id,
            unknown,
            committed = answer.is_ok(),
            "a commit's outcome was unknown; the commit sent again settled it"
        );
        Some(answer)
    }

    /// Finds out from the stream whether a commit whose answer was lost happened.
    async fn resolve_commit(&self, request: &AppendRequest, unknown: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        use domain::ports::EventStore;
        let recorded = request.recorded();
        let found = self.load(request.stream_id, request.expected_version).await;
        let answer = match found {
            Ok(found) if found.len() >= recorded.len() && found[..recorded.len()] == recorded[..] => Ok(recorded),
            Ok(found) if found.is_empty() => Err(StoreError::Unavailable(format!(
                "appending: the commit's outcome is unknown ({unknown}), and its events are not in the stream"
            ))),
            Ok(found) => Err(StoreError::VersionConflict {
                stream_id: request.stream_id,
                expected: request.expected_version,
                actual: request.expected_version + found.len() as u64,
            }),
            Err(error) => Err(StoreError::Unavailable(format!(
                "appending: the commit's outcome is unknown ({unknown}) and the stream could not be read ({error})"
            ))),
        };
        tracing::warn!(
            stream_id = %request.stream_id,
            unknown,
            committed = answer.is_ok(),
            "a commit's outcome was unknown; the stream was read to find it out"
        );
        answer
    }

    /// The transaction, in a session kept in `kept` so that a commit cut off by the time limit
    /// can be sent again.
    async fn append_in_transaction(
        &self,
        request: &AppendRequest,
        committing: &AtomicBool,
        kept: &mut Option<ClientSession>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.require_indexes().await?;
        let database = self.database().await?;
        let recorded = request.recorded();
        let event_documents = recorded.iter().map(documents::event_document).collect::<Result<Vec<_>, _>>()?;
        let session = self.client().await?.start_session().await.map_err(|e| store_error("starting a session", &e))?;
        let session = kept.insert(session);
        let mut attempt = 1;
        loop {
            session
                .start_transaction()
                .read_concern(ReadConcern::snapshot())
                .write_concern(WriteConcern::majority())
                .selection_criteria(SelectionCriteria::ReadPreference(ReadPreference::Primary))
                .await
                .map_err(|e| store_error("starting a transaction", &e))?;
            let written = Self::write_commit(&database, session, request, &event_documents).await;
            let failure = match written {
                Ok(()) => {
                    committing.store(true, Ordering::SeqCst);
                    match Self::commit(session).await {
                        Ok(()) => return Ok(recorded),
                        Err(e) => {
                            // Transient errors and duplicates are definite: nothing was committed.
                            match class_of(&e) {
                                Class::Duplicate(on) => {
                                    committing.store(false, Ordering::SeqCst);
                                    return Err(self.duplicate_at_commit(&database, request, on).await);
                                }
                                Class::Transient => committing.store(false, Ordering::SeqCst),
                                _ => {}
                            }
                            e
                        }
                    }
                }
                Err(stop) => {
                    // Best effort: the server aborts on its own when the transaction times out.
                    let _ = session.abort_transaction().await;
                    match stop {
                        Stop::Refused(answer) => return Err(answer),
                        Stop::VersionTaken => return Err(self.version_conflict(&database, request).await),
                        Stop::Driver(e) => e,
                    }
                }
            };
            match class_of(&failure) {
                Class::Transient if attempt < MAX_TRANSACTION_ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                _ => return Err(store_error("appending", &failure)),
            }
        }
    }
}

/// A short, jittered pause before retrying a conflicting transaction, so that racing writers
/// spread out.
fn backoff(attempt: u32) -> Duration {
    let ceiling_ms = 2u64.saturating_pow(attempt.min(7)).min(100);
    Duration::from_millis(rand::random_range(1..=ceiling_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_with_jitter_and_a_ceiling() {
        for attempt in 1..60 {
            let pause = backoff(attempt);
            assert!(pause >= Duration::from_millis(1) && pause <= Duration::from_millis(100), "{pause:?}");
        }
    }
}
