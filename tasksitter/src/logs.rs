//! Log capture: each stream goes to `<dir>/<task>.<stream>.log`, appended
//! across starts with a marker line at each start, rotated by size into
//! `.1` .. `.N`. Readers only ever open these files: no path from a request
//! is used.

use cerebro_types::{LogChunk, LogFileInfo, LogStream};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

/// A log file that rotates itself when a write would take it past `max_bytes`.
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    backups: u32,
}

impl RotatingFile {
    pub fn open(path: PathBuf, max_bytes: u64, backups: u32) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path,
            file,
            size,
            max_bytes,
            backups,
        })
    }

    fn backup_path(&self, generation: u32) -> PathBuf {
        backup_path(&self.path, generation)
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.backups == 0 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let _ = fs::remove_file(self.backup_path(self.backups));
        for generation in (1..self.backups).rev() {
            let from = self.backup_path(generation);
            if from.exists() {
                fs::rename(&from, self.backup_path(generation + 1))?;
            }
        }
        fs::rename(&self.path, self.backup_path(1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }

    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.size >= self.max_bytes {
                self.rotate()?;
            }
            let room = (self.max_bytes - self.size) as usize;
            let (now, later) = data.split_at(room.min(data.len()));
            self.file.write_all(now)?;
            self.size += now.len() as u64;
            data = later;
        }
        Ok(())
    }
}

fn backup_path(live: &Path, generation: u32) -> PathBuf {
    let mut name = live.as_os_str().to_owned();
    name.push(format!(".{generation}"));
    PathBuf::from(name)
}

pub type SharedLog = Arc<Mutex<RotatingFile>>;

/// Copies everything read from `source` into `log` on a thread of its own,
/// until every writer of the pipe (the workload and its children) is gone.
pub fn spawn_pump(
    mut source: impl Read + Send + 'static,
    log: SharedLog,
    label: String,
) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new().name(label).spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match source.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    let mut file = cerebro_web::lock(&log);
                    if let Err(error) = file.write_all(&buffer[..n]) {
                        tracing::warn!(%error, "cannot write log file");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    });
    spawned
        .map_err(|error| tracing::error!(%error, "cannot start log pump thread"))
        .ok()
}

/// Waits up to `limit` for the pumps to drain their pipes. Bounded because a
/// writer stuck in the kernel must not stall the supervisor.
pub fn join_pumps(pumps: Vec<std::thread::JoinHandle<()>>, limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    for pump in pumps {
        while !pump.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        if pump.is_finished() {
            let _ = pump.join();
        }
    }
}

/// Where one stream's live log file is, if the stream is captured.
#[derive(Debug, Clone)]
pub struct LogLocation {
    pub stream: LogStream,
    pub path: PathBuf,
    pub backups: u32,
}

impl LogLocation {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_size_and_keeps_backups() {
        let dir = tempfile::tempdir().unwrap();
        let location = LogLocation::new(dir.path(), "web server", LogStream::Stdout, 2);
        assert!(location.path.ends_with("web_server.stdout.log"));
        let mut log = RotatingFile::open(location.path.clone(), 10, 2).unwrap();
        log.write_all(b"0123456789abcdefghij").unwrap();
        log.write_all(b"KLMNOPQRSTuvw").unwrap();
        assert_eq!(fs::read_to_string(&location.path).unwrap(), "uvw");
        assert_eq!(
            fs::read_to_string(backup_path(&location.path, 1)).unwrap(),
            "KLMNOPQRST"
        );
        assert_eq!(
            fs::read_to_string(backup_path(&location.path, 2)).unwrap(),
            "abcdefghij"
        );
        assert!(
            !backup_path(&location.path, 3).exists(),
            "only 2 backups are kept"
        );
        let generations: Vec<u32> = location.files().iter().map(|f| f.generation).collect();
        assert_eq!(generations, vec![0, 1, 2]);
    }

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
