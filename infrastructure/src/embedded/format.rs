//! The bytes of the event log and how to walk them.
//!
//! A record is `[len: u32 LE][crc32 of the payload: u32 LE][payload]`, the payload a JSON object
//! of one whole commit: `{"kind":"commit","streamId",events,claims,releases}`. Logs written by
//! earlier versions may also hold `{"kind":"snapshot",…}` records; they are read and ignored.
//!
//! [`Scanner`] walks a log and tells intact records from damage. Damage followed by an intact
//! record somewhere later is damage in the middle of the log; damage with nothing intact after
//! it is a tail, *torn* when it looks like a write that was cut short (the record runs past the
//! end of the file, or the rest of the file is zeros) and *damaged* otherwise.

use domain::ports::{RecordedEvent, UniqueKey};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use uuid::Uuid;

pub const HEADER_LEN: usize = 8;
/// Records are a few hundred bytes; a length above this is damage, not a record to allocate.
pub const MAX_RECORD_LEN: usize = 1 << 20;
/// How much of the log a scan reads at once.
const CHUNK: usize = 4 << 20;

/// What kind of record a payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    Commit,
    /// A snapshot written by an earlier version; ignored.
    Snapshot,
}

/// What a record says, as far as the index needs it: event bodies are skipped.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordHead {
    pub kind: Kind,
    pub stream_id: Uuid,
    #[serde(default)]
    pub events: Vec<EventHead>,
    #[serde(default)]
    pub claims: Vec<UniqueKey>,
    #[serde(default)]
    pub releases: Vec<UniqueKey>,
}

#[derive(Debug, Deserialize)]
pub struct EventHead {
    pub version: u64,
}

/// A record with its events decoded, for loads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordBody {
    pub kind: Kind,
    pub stream_id: Uuid,
    #[serde(default)]
    pub events: Vec<RecordedEvent>,
}

/// A record with everything decoded, for checking a log.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordFull {
    pub kind: Kind,
    pub stream_id: Uuid,
    #[serde(default)]
    pub events: Vec<RecordedEvent>,
    #[serde(default)]
    pub claims: Vec<UniqueKey>,
    #[serde(default)]
    pub releases: Vec<UniqueKey>,
}

/// A commit as it is written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitOut<'a> {
    pub kind: Kind,
    pub stream_id: Uuid,
    pub events: &'a [RecordedEvent],
    pub claims: &'a [UniqueKey],
    pub releases: &'a [UniqueKey],
}

/// Appends the framed record of `payload` to `out`; returns the record's header.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    header
}

/// The payload length a header announces, if it is one a record can have.
pub fn announced_len(header: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    (len > 0 && len <= MAX_RECORD_LEN).then_some(len)
}

/// Whether `payload` is what `header` announces (length and checksum).
pub fn intact(header: &[u8], payload: &[u8]) -> bool {
    let crc = u32::from_le_bytes(header[4..HEADER_LEN].try_into().expect("a header is 8 bytes"));
    announced_len(header) == Some(payload.len()) && crc32fast::hash(payload) == crc
}

/// Bytes of the log that are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    pub offset: u64,
    /// Where the next intact record starts, or the end of the scan.
    pub end: u64,
    pub kind: DamageKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// Intact records follow.
    Middle,
    /// Nothing intact follows and the bytes look like a write cut short.
    TornTail,
    /// Nothing intact follows, but the bytes do not look like a write cut short (a whole record
    /// whose checksum fails, or a length no record has).
    DamagedTail,
}

impl Damage {
    pub fn len(&self) -> u64 {
        self.end - self.offset
    }

    /// What the bytes are, in a few words.
    pub fn describe(&self) -> &'static str {
        match self.kind {
            DamageKind::Middle => "damaged bytes that are not a valid record, with valid records after them",
            DamageKind::TornTail => "a record cut short at the end of the log (a write interrupted by a crash)",
            DamageKind::DamagedTail => "a damaged record at the end of the log (its length or checksum is wrong)",
        }
    }
}

/// One step of a scan.
pub enum Step<'a> {
    Record { offset: u64, header: [u8; HEADER_LEN], payload: &'a [u8] },
    Damage(Damage),
}

/// Walks the records of `[from, end)` of a log file with positional reads, in chunks.
pub struct Scanner<'f> {
    file: &'f File,
    end: u64,
    buf: Vec<u8>,
    buf_at: u64,
    pos: u64,
}

impl<'f> Scanner<'f> {
    pub fn new(file: &'f File, from: u64, end: u64) -> Self {
        Self { file, end, buf: Vec::new(), buf_at: from, pos: from }
    }

    /// Bytes `[at, at + len)`, or `None` when they run past the end of the scan.
    fn bytes(&mut self, at: u64, len: usize) -> io::Result<Option<&[u8]>> {
        if at + len as u64 > self.end {
            return Ok(None);
        }
        let buffered_end = self.buf_at + self.buf.len() as u64;
        if at < self.buf_at || at + len as u64 > buffered_end {
            let want = (CHUNK.max(len) as u64).min(self.end - at) as usize;
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, at)?;
            self.buf_at = at;
        }
        let start = (at - self.buf_at) as usize;
        Ok(Some(&self.buf[start..start + len]))
    }

    /// The payload length of the record at `at` if it is whole and intact.
    fn intact_at(&mut self, at: u64) -> io::Result<Option<usize>> {
        let Some(header) = self.bytes(at, HEADER_LEN)? else { return Ok(None) };
        let Some(len) = announced_len(header) else { return Ok(None) };
        let Some(record) = self.bytes(at, HEADER_LEN + len)? else { return Ok(None) };
        Ok(intact(&record[..HEADER_LEN], &record[HEADER_LEN..]).then_some(len))
    }

    /// The next record, or the damage at the current position (after which the scan goes on
    /// with the next intact record); `None` at the end.
    pub fn next_step(&mut self) -> io::Result<Option<Step<'_>>> {
        let at = self.pos;
        if at >= self.end {
            return Ok(None);
        }
        if let Some(len) = self.intact_at(at)? {
            self.pos = at + (HEADER_LEN + len) as u64;
            let record = self.bytes(at, HEADER_LEN + len)?.expect("checked just above");
            let header = record[..HEADER_LEN].try_into().expect("a header is 8 bytes");
            return Ok(Some(Step::Record { offset: at, header, payload: &record[HEADER_LEN..] }));
        }
        let damage = self.damage_at(at)?;
        self.pos = damage.end;
        Ok(Some(Step::Damage(damage)))
    }

    /// Finds where the damage starting at `at` ends: the next offset holding an intact record
    /// that decodes, else the end of the scan.
    fn damage_at(&mut self, at: u64) -> io::Result<Damage> {
        let mut candidate = at + 1;
        while candidate + (HEADER_LEN as u64) < self.end {
            if let Some(len) = self.intact_at(candidate)? {
                let record = self.bytes(candidate, HEADER_LEN + len)?.expect("intact");
                if serde_json::from_slice::<RecordHead>(&record[HEADER_LEN..]).is_ok() {
                    return Ok(Damage { offset: at, end: candidate, kind: DamageKind::Middle });
                }
            }
            candidate += 1;
        }
        let kind = if self.looks_torn(at)? { DamageKind::TornTail } else { DamageKind::DamagedTail };
        Ok(Damage { offset: at, end: self.end, kind })
    }

    /// Whether the tail from `at` looks like a write cut short: a header that is not whole, a
    /// record that runs past the end, or nothing but zeros (space the file system allocated
    /// before the data reached it). A write cut short leaves a prefix of its record, which its
    /// checksum cannot match: a record running past the end whose bytes up to the end match it
    /// is a whole record with a damaged length, not a torn one.
    fn looks_torn(&mut self, at: u64) -> io::Result<bool> {
        let Some(header) = self.bytes(at, HEADER_LEN)? else { return Ok(true) };
        let header: [u8; HEADER_LEN] = header.try_into().expect("a header is 8 bytes");
        if let Some(len) = announced_len(&header) {
            if at + (HEADER_LEN + len) as u64 > self.end {
                return Ok(!self.whole_to_the_end(at, &header)?);
            }
        }
        let mut from = at;
        while from < self.end {
            let len = ((self.end - from) as usize).min(CHUNK);
            let bytes = self.bytes(from, len)?.expect("within the scan");
            if bytes.iter().any(|&b| b != 0) {
                return Ok(false);
            }
            from += len as u64;
        }
        Ok(true)
    }

    /// Whether the bytes from after the header at `at` to the end of the scan are a payload
    /// that matches the header's checksum.
    fn whole_to_the_end(&mut self, at: u64, header: &[u8; HEADER_LEN]) -> io::Result<bool> {
        let start = at + HEADER_LEN as u64;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("a header is 8 bytes"));
        let Some(payload) = self.bytes(start, (self.end - start) as usize)? else { return Ok(false) };
        Ok(!payload.is_empty() && crc32fast::hash(payload) == crc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn record(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        frame(text.as_bytes(), &mut out);
        out
    }

    fn commit(n: u8) -> Vec<u8> {
        record(&format!(r#"{{"kind":"commit","streamId":"00000000-0000-0000-0000-0000000000{n:02}","events":[]}}"#))
    }

    fn steps(bytes: &[u8]) -> Vec<Result<(u64, usize), Damage>> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        let mut scanner = Scanner::new(&file, 0, bytes.len() as u64);
        let mut out = Vec::new();
        while let Some(step) = scanner.next_step().unwrap() {
            out.push(match step {
                Step::Record { offset, payload, .. } => Ok((offset, payload.len())),
                Step::Damage(damage) => Err(damage),
            });
        }
        out
    }

    #[test]
    fn intact_records_are_read_in_order() {
        let (a, b) = (commit(1), commit(2));
        let log = [a.clone(), b.clone()].concat();
        let found = steps(&log);
        assert_eq!(found, vec![Ok((0, a.len() - 8)), Ok((a.len() as u64, b.len() - 8))]);
    }

    #[test]
    fn damage_followed_by_a_record_is_in_the_middle_and_ends_where_the_record_starts() {
        let (a, mut b, c) = (commit(1), commit(2), commit(3));
        b[20] ^= 0x01;
        let log = [a.clone(), b.clone(), c.clone()].concat();
        let found = steps(&log);
        let b_at = a.len() as u64;
        assert_eq!(
            found,
            vec![
                Ok((0, a.len() - 8)),
                Err(Damage { offset: b_at, end: b_at + b.len() as u64, kind: DamageKind::Middle }),
                Ok((b_at + b.len() as u64, c.len() - 8)),
            ]
        );
    }

    #[test]
    fn tails_cut_short_or_zeroed_are_torn_and_a_whole_bad_record_at_the_end_is_damaged() {
        let (a, b) = (commit(1), commit(2));
        let at = a.len() as u64;
        for cut in [3, 8, 20, b.len() - 1] {
            let log = [a.clone(), b[..cut].to_vec()].concat();
            assert_eq!(steps(&log)[1], Err(Damage { offset: at, end: log.len() as u64, kind: DamageKind::TornTail }));
        }
        let zeros = [a.clone(), vec![0; 300]].concat();
        assert_eq!(steps(&zeros)[1], Err(Damage { offset: at, end: zeros.len() as u64, kind: DamageKind::TornTail }));
        let mut flipped = b.clone();
        flipped[30] ^= 0x40;
        let log = [a.clone(), flipped].concat();
        assert_eq!(steps(&log)[1], Err(Damage { offset: at, end: log.len() as u64, kind: DamageKind::DamagedTail }));
    }
}
