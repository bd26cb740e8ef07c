//! The in-memory index of the log: where each stream's records are and what version they end
//! at, and who holds each unique value. Event bodies stay in the file; a load reads the
//! stream's own records.
//!
//! The index also keeps a running checksum over the headers of the records it covers (the
//! *digest*), so that a checkpoint of it can later be matched against the log it came from.

use super::format::{RecordHead, HEADER_LEN};
use domain::ports::{AppendRequest, StoreError, UniqueKey};
use std::collections::HashMap;
use uuid::Uuid;

/// Where one record of a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef {
    pub offset: u64,
    /// Payload length.
    pub len: u32,
    /// Version of the record's last event.
    pub last: u32,
}

/// The facts of one commit the index keeps.
pub struct CommitFacts<'a> {
    pub stream_id: Uuid,
    /// Versions of the record's events, in order.
    pub versions: Vec<u64>,
    pub claims: &'a [UniqueKey],
    pub releases: &'a [UniqueKey],
}

impl<'a> CommitFacts<'a> {
    pub fn from_head(head: &'a RecordHead) -> Self {
        Self {
            stream_id: head.stream_id,
            versions: head.events.iter().map(|e| e.version).collect(),
            claims: &head.claims,
            releases: &head.releases,
        }
    }

    pub fn from_request(request: &'a AppendRequest) -> Self {
        let first = request.expected_version + 1;
        Self {
            stream_id: request.stream_id,
            versions: (first..first + request.events.len() as u64).collect(),
            claims: &request.claims,
            releases: &request.releases,
        }
    }
}

/// A record whose versions do not continue its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfSequence {
    pub stream_id: Uuid,
    pub expected: u64,
    pub found: Option<u64>,
}

impl std::fmt::Display for OutOfSequence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.found {
            Some(found) => write!(
                f,
                "tournament {} continues at version {found} where version {} was expected",
                self.stream_id, self.expected
            ),
            None => write!(f, "tournament {}: the versions of the record do not follow each other", self.stream_id),
        }
    }
}

/// The key a unique value is indexed under (scope and value, unambiguously).
pub fn claim_key(key: &UniqueKey) -> Box<str> {
    format!("{}:{}{}", key.scope.len(), key.scope, key.value).into_boxed_str()
}

/// The index of the log up to `offset`.
#[derive(Default)]
pub struct Index {
    /// End of the last record applied.
    pub offset: u64,
    pub records: u64,
    pub streams: HashMap<Uuid, Vec<RecordRef>>,
    pub owners: HashMap<Box<str>, Uuid>,
    pub digest: crc32fast::Hasher,
}

impl Index {
    pub fn version(&self, stream_id: &Uuid) -> u64 {
        self.streams.get(stream_id).and_then(|refs| refs.last()).map_or(0, |r| u64::from(r.last))
    }

    /// The records of the stream holding events above `after_version`.
    pub fn records_after(&self, stream_id: &Uuid, after_version: u64) -> Vec<RecordRef> {
        let Some(refs) = self.streams.get(stream_id) else { return Vec::new() };
        let first = refs.partition_point(|r| u64::from(r.last) <= after_version);
        refs[first..].to_vec()
    }

    /// The digest of the headers of every record up to `offset`.
    pub fn digest(&self) -> u32 {
        self.digest.clone().finalize()
    }

    /// Checks that a commit continues its stream.
    pub fn check_sequence(&self, facts: &CommitFacts<'_>) -> Result<(), OutOfSequence> {
        let expected = self.version(&facts.stream_id) + 1;
        let follows = facts.versions.iter().zip(expected..).all(|(v, want)| *v == want);
        let fits = facts.versions.last().is_none_or(|last| *last <= u64::from(u32::MAX));
        if follows && fits {
            return Ok(());
        }
        let found = facts.versions.first().copied().filter(|first| *first != expected);
        Err(OutOfSequence { stream_id: facts.stream_id, expected, found })
    }

    /// Applies the record at `self.offset` (a commit, or `None` for a record the index skips).
    /// The caller has checked the sequence.
    pub fn apply(&mut self, header: &[u8; HEADER_LEN], payload_len: usize, facts: Option<&CommitFacts<'_>>) {
        let offset = self.offset;
        if let Some(facts) = facts {
            for key in facts.releases {
                let key = claim_key(key);
                if self.owners.get(&key) == Some(&facts.stream_id) {
                    self.owners.remove(&key);
                }
            }
            for key in facts.claims {
                self.owners.insert(claim_key(key), facts.stream_id);
            }
            if let Some(last) = facts.versions.last() {
                let record = RecordRef { offset, len: payload_len as u32, last: *last as u32 };
                self.streams.entry(facts.stream_id).or_default().push(record);
            }
        }
        self.digest.update(header);
        self.offset = offset + (HEADER_LEN + payload_len) as u64;
        self.records += 1;
    }
}

/// The writes of a batch accepted so far, over the index: the next append of the batch is
/// checked against both.
#[derive(Default)]
pub struct BatchView {
    versions: HashMap<Uuid, u64>,
    owners: HashMap<Box<str>, Option<Uuid>>,
}

impl BatchView {
    /// Checks an append against the index and the batch; on success it becomes part of the
    /// batch.
    pub fn accept(&mut self, index: &Index, request: &AppendRequest) -> Result<(), StoreError> {
        let stream_id = request.stream_id;
        let actual = self.versions.get(&stream_id).copied().unwrap_or_else(|| index.version(&stream_id));
        if actual != request.expected_version {
            return Err(StoreError::VersionConflict { stream_id, expected: request.expected_version, actual });
        }
        let last = actual + request.events.len() as u64;
        if last > u64::from(u32::MAX) {
            return Err(StoreError::Unavailable(format!("stream {stream_id} cannot hold more events")));
        }
        for key in &request.claims {
            if self.owner(index, key).is_some_and(|holder| holder != stream_id) {
                return Err(StoreError::UniqueTaken(key.clone()));
            }
        }
        for key in &request.releases {
            if self.owner(index, key) == Some(stream_id) {
                self.owners.insert(claim_key(key), None);
            }
        }
        for key in &request.claims {
            self.owners.insert(claim_key(key), Some(stream_id));
        }
        self.versions.insert(stream_id, last);
        Ok(())
    }

    /// Who holds `key` once the batch so far is committed.
    fn owner(&self, index: &Index, key: &UniqueKey) -> Option<Uuid> {
        let key = claim_key(key);
        match self.owners.get(&key) {
            Some(owner) => *owner,
            None => index.owners.get(&key).copied(),
        }
    }
}
