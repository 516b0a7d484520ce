//! A task's log files as both sitters see them: each stream goes to
//! `<dir>/<task>.<stream>.log`, rotated by size into `.1` .. `.N`. The
//! tasksitter writes them, the tasksitter and the machinesitter read them.
//! Readers only ever open these files: no path from a request is used.

use cerebro_types::{LogChunk, LogFileInfo, LogStream};
use std::collections::HashMap;
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

    /// The last `lines` lines of the live file, reading at most `max_bytes` from its end.
    pub fn tail(&self, lines: usize, max_bytes: u64) -> io::Result<LogChunk> {
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
        let cut = line_start_of_tail(&bytes, lines);
        Ok(LogChunk {
            stream: self.stream,
            offset: start + cut as u64,
            next_offset: start + bytes.len() as u64,
            size_bytes: size,
            rotated: false,
            data: String::from_utf8_lossy(&bytes[cut..]).into_owned(),
        })
    }

    /// Up to `max_bytes` from byte `offset` of the live file. An offset past
    /// the end means the file was rotated under the reader: start again at 0.
    pub fn read_from(&self, offset: u64, max_bytes: u64) -> io::Result<LogChunk> {
        let mut file = open_or_empty(&self.path)?;
        let size = file
            .as_ref()
            .map_or(Ok(0), |f| f.metadata().map(|m| m.len()))?;
        let rotated = offset > size;
        let offset = if rotated { 0 } else { offset };
        let mut bytes = Vec::new();
        if let Some(file) = file.as_mut() {
            file.seek(SeekFrom::Start(offset))?;
            file.take(max_bytes.min(size - offset))
                .read_to_end(&mut bytes)?;
        }
        Ok(LogChunk {
            stream: self.stream,
            offset,
            next_offset: offset + bytes.len() as u64,
            size_bytes: size,
            rotated,
            data: String::from_utf8_lossy(&bytes).into_owned(),
        })
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

/// Why a log read failed: a bad query parameter (the caller answers 400
/// naming `field`), or the file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadChunkError {
    /// Query parameter `field` is unknown or not a number.
    #[error("{field}: {message}")]
    BadField { field: String, message: String },
    /// The file exists but could not be read.
    #[error("cannot read log: {0}")]
    Io(#[from] io::Error),
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> ReadChunkError {
    ReadChunkError::BadField {
        field: field.into(),
        message: message.into(),
    }
}

fn number<T: std::str::FromStr>(
    query: &HashMap<String, String>,
    field: &str,
) -> Result<Option<T>, ReadChunkError> {
    query
        .get(field)
        .map(|v| {
            v.parse()
                .map_err(|_| bad(field, format!("'{v}' is not a non-negative number")))
        })
        .transpose()
}

/// `?tail=N` for the last N lines, `?offset=B[&limit=L]` to follow from byte B; any other
/// parameter is refused. Both sitters serve the same files through this.
pub fn read_chunk(
    location: &LogLocation,
    query: &HashMap<String, String>,
) -> Result<LogChunk, ReadChunkError> {
    let tail: Option<usize> = number(query, "tail")?;
    let offset: Option<u64> = number(query, "offset")?;
    let limit = number::<u64>(query, "limit")?
        .unwrap_or(MAX_LOG_BYTES)
        .min(MAX_LOG_BYTES);
    if let Some(unknown) = query
        .keys()
        .find(|k| !["tail", "offset", "limit"].contains(&k.as_str()))
    {
        return Err(bad(
            unknown.clone(),
            "unknown parameter (tail, offset, limit)",
        ));
    }
    Ok(match (tail, offset) {
        (Some(_), Some(_)) => return Err(bad("offset", "give either tail or offset, not both")),
        (_, Some(offset)) => location.read_from(offset, limit)?,
        (tail, None) => location.tail(tail.unwrap_or(DEFAULT_TAIL_LINES), limit)?,
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
    fn file_stems_are_safe() {
        assert_eq!(file_stem("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(file_stem("Portal Server"), "Portal_Server");
    }
}
