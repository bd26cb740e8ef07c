//! The index checkpoint, `events.idx`: the index as it was up to some offset of the log, so
//! that start-up reads only the records after it.
//!
//! It is only a cache. It holds the offset it covers and the digest of the record headers up
//! to there; start-up checks the log against both while it checks every record's checksum, and
//! rebuilds the index from the log when the checkpoint is missing, unreadable or does not match
//! (a log that was repaired, replaced or damaged). Layout, little-endian:
//! `"LCTIDX\0\1"`, covered `u64`, digest `u32`, records `u64`, streams `u64` × (id `[16]`,
//! count `u32` × (offset `u64`, length `u32`, last version `u32`)), claims `u64` × (owner `[16]`,
//! key length `u32`, key), then the CRC-32 of everything before it.

use super::index::{Index, RecordRef};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use uuid::Uuid;

pub const FILE: &str = "events.idx";
const MAGIC: &[u8; 8] = b"LCTIDX\x00\x01";

/// A decoded checkpoint: the index up to `covered`, with the digest it was written with.
pub struct Checkpoint {
    pub covered: u64,
    pub digest: u32,
    pub index: Index,
}

pub fn encode(index: &Index) -> Vec<u8> {
    let refs: usize = index.streams.values().map(Vec::len).sum();
    let mut out = Vec::with_capacity(64 + index.streams.len() * 20 + refs * 16 + index.owners.len() * 48);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&index.offset.to_le_bytes());
    out.extend_from_slice(&index.digest().to_le_bytes());
    out.extend_from_slice(&index.records.to_le_bytes());
    out.extend_from_slice(&(index.streams.len() as u64).to_le_bytes());
    for (id, records) in &index.streams {
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&(records.len() as u32).to_le_bytes());
        for r in records {
            out.extend_from_slice(&r.offset.to_le_bytes());
            out.extend_from_slice(&r.len.to_le_bytes());
            out.extend_from_slice(&r.last.to_le_bytes());
        }
    }
    out.extend_from_slice(&(index.owners.len() as u64).to_le_bytes());
    for (key, owner) in &index.owners {
        out.extend_from_slice(owner.as_bytes());
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads fields off a byte slice; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn uuid(&mut self) -> Option<Uuid> {
        Uuid::from_slice(self.take(16)?).ok()
    }
    /// A count of items each at least `min_size` bytes long, refused when the rest cannot hold
    /// them (so a damaged count cannot make us allocate).
    fn count(&mut self, min_size: usize) -> Option<usize> {
        let n = usize::try_from(self.u64()?).ok()?;
        (n.checked_mul(min_size)? <= self.0.len()).then_some(n)
    }
}

/// Decodes a checkpoint; `None` when it is not one (any damage at all).
pub fn decode(bytes: &[u8]) -> Option<Checkpoint> {
    let (body, trailer) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if crc32fast::hash(body) != u32::from_le_bytes(trailer.try_into().ok()?) {
        return None;
    }
    let mut r = Reader(body);
    if r.take(MAGIC.len())? != MAGIC {
        return None;
    }
    let covered = r.u64()?;
    let digest = r.u32()?;
    let records = r.u64()?;
    let stream_count = r.count(20)?;
    let mut streams = HashMap::with_capacity(stream_count);
    for _ in 0..stream_count {
        let id = r.uuid()?;
        let n = r.u32()? as usize;
        if n.checked_mul(16)? > r.0.len() {
            return None;
        }
        let mut refs = Vec::with_capacity(n);
        for _ in 0..n {
            refs.push(RecordRef { offset: r.u64()?, len: r.u32()?, last: r.u32()? });
        }
        streams.insert(id, refs);
    }
    let owner_count = r.count(20)?;
    let mut owners = HashMap::with_capacity(owner_count);
    for _ in 0..owner_count {
        let owner = r.uuid()?;
        let len = r.u32()? as usize;
        let key = std::str::from_utf8(r.take(len)?).ok()?;
        owners.insert(key.into(), owner);
    }
    if !r.0.is_empty() {
        return None;
    }
    let index =
        Index { offset: covered, records, streams, owners, digest: crc32fast::Hasher::new_with_initial(digest) };
    Some(Checkpoint { covered, digest, index })
}

/// Reads the checkpoint of `dir`, if there is a readable one.
pub fn read(dir: &Path) -> Option<Checkpoint> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the index checkpoint cannot be read; rebuilding the index from the log");
            return None;
        }
    };
    let decoded = decode(&bytes);
    if decoded.is_none() {
        tracing::warn!(path = %path.display(), "the index checkpoint is damaged; rebuilding the index from the log");
    }
    decoded
}

/// Writes `bytes` (an encoded checkpoint) as the checkpoint of `dir`, atomically.
pub fn write(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = dir.join(format!("{FILE}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&temp)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&temp, dir.join(FILE)));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        let mut index = Index { offset: 4096, records: 3, ..Index::default() };
        index.digest.update(b"headers!");
        let id = Uuid::new_v4();
        index
            .streams
            .insert(id, vec![RecordRef { offset: 0, len: 100, last: 1 }, RecordRef { offset: 108, len: 90, last: 3 }]);
        index.owners.insert("15:tournament-nameFriday".into(), id);
        index
    }

    #[test]
    fn a_checkpoint_round_trips_with_its_offset_and_digest() {
        let index = sample();
        let checkpoint = decode(&encode(&index)).unwrap();
        assert_eq!(checkpoint.covered, 4096);
        assert_eq!(checkpoint.digest, index.digest());
        assert_eq!(checkpoint.index.streams, index.streams);
        assert_eq!(checkpoint.index.owners, index.owners);
        assert_eq!(checkpoint.index.records, 3);
        // The digest goes on from where it was, as if the index had never been written out.
        let (mut resumed, mut whole) = (checkpoint.index.digest.clone(), index.digest.clone());
        resumed.update(b"more headers");
        whole.update(b"more headers");
        assert_eq!(resumed.finalize(), whole.finalize());
    }

    #[test]
    fn any_damaged_or_cut_checkpoint_is_refused() {
        let bytes = encode(&sample());
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert!(decode(&damaged).is_none(), "byte {at}");
            assert!(decode(&bytes[..at]).is_none(), "cut at {at}");
        }
    }
}
