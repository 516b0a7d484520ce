//! A task's log files as both sitters see them: each stream goes to
//! `<dir>/<task>.<stream>.log`, rotated by size into `.1` .. `.N`. The
//! tasksitter writes them, the tasksitter and the machinesitter read them.
//! Readers only ever open these files: no path from a request is used.
//!
//! Offsets are positions in the whole stream, not in one file: the live
//! file's first byte is at the position kept in `<live>.start`, and each
//! backup ends where the next newer file begins. A reader following by
//! offset therefore goes on in the backups when the live file rotated
//! under it, and loses nothing the backups still hold.

use cerebro_types::task_api::LogQuery;
use cerebro_types::{LogChunk, LogFileInfo, LogStream};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The most bytes one read of a log returns.
pub const MAX_LOG_BYTES: u64 = 4 * 1024 * 1024;
/// Lines a read without `tail` or `offset` returns.
pub const DEFAULT_TAIL_LINES: usize = 100;

/// Characters outside `[A-Za-z0-9._-]` become `_`, so any task name makes a safe file name.
pub fn file_stem(task_name: &str) -> String {
    let stem: String = task_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    stem.trim_start_matches('.').to_string()
}

/// Backup number `generation` (1 = newest) of the live file `live`.
pub fn backup_path(live: &Path, generation: u32) -> PathBuf {
    let mut name = live.as_os_str().to_owned();
    name.push(format!(".{generation}"));
    PathBuf::from(name)
}

/// Where one stream's live log file is, if the stream is captured.
#[derive(Debug, Clone)]
pub struct LogLocation {
    /// The stream it captures.
    pub stream: LogStream,
    /// The live file; backups are `<path>.1` .. `<path>.<backups>`.
    pub path: PathBuf,
    /// How many rotated backups are kept.
    pub backups: u32,
}

impl LogLocation {
    /// `<dir>/<file stem of task_name>.<stream>.log`.
    pub fn new(dir: &Path, task_name: &str, stream: LogStream, backups: u32) -> Self {
        Self {
            stream,
            path: dir.join(format!("{}.{}.log", file_stem(task_name), stream.as_str())),
            backups,
        }
    }

    /// The live file and every backup that exists, newest first.
    pub fn files(&self) -> Vec<LogFileInfo> {
        (0..=self.backups)
            .filter_map(|generation| {
                let path = if generation == 0 {
                    self.path.clone()
                } else {
                    backup_path(&self.path, generation)
                };
                let size = fs::metadata(&path).ok()?.len();
                Some(LogFileInfo {
                    stream: self.stream,
                    file: path.file_name()?.to_string_lossy().into_owned(),
                    size_bytes: size,
                    generation,
                })
            })
            .collect()
    }

    /// `<live>.start`: the stream position of the live file's first byte.
    pub fn start_path(&self) -> PathBuf {
        start_path(&self.path)
    }

    /// The stream position of the live file's first byte ([`live_start`]).
    pub fn live_start(&self) -> u64 {
        live_start(&self.path, self.backups)
    }

    /// The last `lines` lines of the live file, reading at most `max_bytes`
    /// from its end; offsets are stream positions.
    pub fn tail(&self, lines: usize, max_bytes: u64) -> io::Result<LogChunk> {
        for _ in 0..RACE_RETRIES {
            let live_start = self.live_start();
            let mut file = open_or_empty(&self.path)?;
            let size = file
                .as_ref()
                .map_or(Ok(0), |f| f.metadata().map(|m| m.len()))?;
            let start = size.saturating_sub(max_bytes);
            let mut bytes = Vec::new();
            if let Some(file) = file.as_mut() {
                file.seek(SeekFrom::Start(start))?;
                file.take(size - start).read_to_end(&mut bytes)?;
            }
            if self.live_start() != live_start {
                continue;
            }
            let end = whole_chars_end(&bytes, bytes.len());
            let mut cut = line_start_of_tail(&bytes[..end], lines);
            while cut < end && is_continuation(bytes[cut]) {
                cut += 1;
            }
            return Ok(LogChunk {
                stream: self.stream,
                offset: live_start + start + cut as u64,
                next_offset: live_start + start + end as u64,
                size_bytes: size,
                rotated: false,
                data: String::from_utf8_lossy(&bytes[cut..end]).into_owned(),
            });
        }
        Err(io::Error::other("the log kept rotating while it was read"))
    }

    /// Up to `max_bytes` of the stream from position `offset`, from the live
    /// file or the backup that holds it; a chunk never spans two files and
    /// ends on a character boundary. A position no file holds any longer
    /// (rotated out past the last backup, or beyond the end because the log
    /// was started over) reads from the oldest byte kept, with `rotated` set.
    pub fn read_from(&self, offset: u64, max_bytes: u64) -> io::Result<LogChunk> {
        for _ in 0..RACE_RETRIES {
            let live_start = self.live_start();
            // (stream position of its first byte, path, size), newest first.
            let mut files = Vec::new();
            let mut begins = live_start;
            for generation in 0..=self.backups {
                let path = if generation == 0 {
                    self.path.clone()
                } else {
                    backup_path(&self.path, generation)
                };
                let Ok(meta) = fs::metadata(&path) else {
                    if generation == 0 {
                        files.push((live_start, path, 0));
                        continue;
                    }
                    // Backups are contiguous: past a gap, positions are unknown.
                    break;
                };
                if generation > 0 {
                    begins = begins.saturating_sub(meta.len());
                }
                files.push((begins, path, meta.len()));
            }
            let live_size = files[0].2;
            let oldest = files.last().map_or(live_start, |f| f.0);
            let end = live_start + live_size;
            let rotated = offset < oldest || offset > end;
            let offset = if rotated { oldest } else { offset };
            let (begins, path, size) = files
                .iter()
                .find(|(begins, _, _)| *begins <= offset)
                .cloned()
                .unwrap_or_else(|| files[0].clone());
            let local = offset - begins;
            let mut bytes = Vec::new();
            if let Some(mut file) = open_or_empty(&path)? {
                file.seek(SeekFrom::Start(local))?;
                // Up to 3 bytes more, to finish a character the limit cuts.
                let want = (max_bytes + 3).min(size.saturating_sub(local));
                file.take(want).read_to_end(&mut bytes)?;
            }
            if self.live_start() != live_start {
                continue;
            }
            let end = chunk_end(&bytes, max_bytes.min(bytes.len() as u64) as usize);
            return Ok(LogChunk {
                stream: self.stream,
                offset,
                next_offset: offset + end as u64,
                size_bytes: live_size,
                rotated,
                data: String::from_utf8_lossy(&bytes[..end]).into_owned(),
            });
        }
        Err(io::Error::other("the log kept rotating while it was read"))
    }
}

/// The stream position of the first byte of the live file `live`, which
/// keeps `backups` backups. Without a `.start` file (logs written before it
/// existed) the backups are taken to begin the stream, so that their bytes
/// keep positions >= 0.
pub fn live_start(live: &Path, backups: u32) -> u64 {
    fs::read_to_string(start_path(live))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or_else(|| {
            (1..=backups)
                .map_while(|g| fs::metadata(backup_path(live, g)).ok())
                .map(|m| m.len())
                .sum()
        })
}

/// How often a read starts over when a rotation moved the files under it.
const RACE_RETRIES: usize = 5;

/// `<live>.start`, where the writer keeps the live file's stream position.
pub fn start_path(live: &Path) -> PathBuf {
    let mut name = live.as_os_str().to_owned();
    name.push(".start");
    PathBuf::from(name)
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

/// The length of a UTF-8 sequence that starts with `lead` (1 for anything
/// that does not start a multi-byte sequence).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

/// The largest `i <= end` such that `bytes[..i]` does not end inside a
/// character: a character cut by `end` is left for the next read.
fn whole_chars_end(bytes: &[u8], end: usize) -> usize {
    let lead = (end.saturating_sub(4)..end)
        .rev()
        .find(|&i| !is_continuation(bytes[i]));
    match lead {
        Some(i) if i + sequence_len(bytes[i]) > end => i,
        _ => end,
    }
}

/// Where a chunk of at most `limit` bytes of `bytes` ends: on a character
/// boundary, or just past the one character that is longer than the
/// limit, so that a reader always makes progress.
fn chunk_end(bytes: &[u8], limit: usize) -> usize {
    let end = whole_chars_end(bytes, limit);
    if end > 0 || limit == 0 || bytes.is_empty() {
        return end;
    }
    let whole = sequence_len(bytes[0]);
    if bytes.len() >= whole {
        whole
    } else {
        0
    }
}

fn open_or_empty(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Index in `bytes` where the last `lines` lines begin (a trailing newline ends the last line).
fn line_start_of_tail(bytes: &[u8], lines: usize) -> usize {
    if lines == 0 {
        return bytes.len();
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut seen = 0;
    for (index, byte) in body.iter().enumerate().rev() {
        if *byte == b'\n' {
            seen += 1;
            if seen == lines {
                return index + 1;
            }
        }
    }
    0
}

/// A log file that could not be read (both sitters answer 500 with this).
#[derive(Debug, thiserror::Error)]
#[error("cannot read log {path}: {source}")]
pub struct ReadChunkError {
    /// The live file of the stream that was read.
    pub path: PathBuf,
    /// Why it could not be read.
    #[source]
    pub source: io::Error,
}

/// Reads what `query` asks of a stream: `offset` (with at most `limit`
/// bytes) to follow from a stream position, else the last `tail` lines
/// (default [`DEFAULT_TAIL_LINES`]); `limit` is capped at [`MAX_LOG_BYTES`].
/// The query is validated where it is parsed ([`LogQuery::from_pairs`]);
/// should one with both `tail` and `offset` get here, `offset` wins. Both
/// sitters serve the same files through this.
pub fn read_chunk(location: &LogLocation, query: &LogQuery) -> Result<LogChunk, ReadChunkError> {
    let limit = query.limit.unwrap_or(MAX_LOG_BYTES).min(MAX_LOG_BYTES);
    match query.offset {
        Some(offset) => location.read_from(offset, limit),
        None => location.tail(query.tail.unwrap_or(DEFAULT_TAIL_LINES), limit),
    }
    .map_err(|source| ReadChunkError {
        path: location.path.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_and_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let location = LogLocation::new(dir.path(), "t", LogStream::Stderr, 1);
        let missing = location.tail(5, 1 << 20).unwrap();
        assert_eq!((missing.data.as_str(), missing.size_bytes), ("", 0));
        fs::write(&location.path, "one\ntwo\nthree\n").unwrap();
        let tail = location.tail(2, 1 << 20).unwrap();
        assert_eq!(tail.data, "two\nthree\n");
        assert_eq!(tail.offset, 4);
        assert_eq!(tail.next_offset, 14);
        assert_eq!(
            location.tail(10, 1 << 20).unwrap().data,
            "one\ntwo\nthree\n"
        );
        let chunk = location.read_from(8, 3).unwrap();
        assert_eq!(
            (chunk.data.as_str(), chunk.next_offset, chunk.rotated),
            ("thr", 11, false)
        );
        let after_rotation = location.read_from(100, 1 << 20).unwrap();
        assert!(after_rotation.rotated);
        assert_eq!(after_rotation.offset, 0);
    }

    #[test]
    fn chunks_of_any_size_keep_multibyte_characters_whole() {
        let dir = tempfile::tempdir().unwrap();
        let location = LogLocation::new(dir.path(), "t", LogStream::Stdout, 1);
        let text = "aé€😀\nb😀€é\n".repeat(5);
        fs::write(&location.path, &text).unwrap();
        for limit in 1..=9 {
            let mut offset = 0;
            let mut joined = String::new();
            for _ in 0..1000 {
                let chunk = location.read_from(offset, limit).unwrap();
                assert_eq!(chunk.next_offset - offset, chunk.data.len() as u64);
                if chunk.data.is_empty() {
                    break;
                }
                joined.push_str(&chunk.data);
                offset = chunk.next_offset;
            }
            assert_eq!(joined, text, "chunks of {limit} bytes");
        }
        // A character still being written is left for the next read.
        fs::write(&location.path, &"a€".as_bytes()[..3]).unwrap();
        let chunk = location.read_from(0, 100).unwrap();
        assert_eq!((chunk.data.as_str(), chunk.next_offset), ("a", 1));
        let tail = location.tail(10, 100).unwrap();
        assert_eq!((tail.data.as_str(), tail.next_offset), ("a", 1));
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(file_stem("Portal Server"), "Portal_Server");
    }
}
