//! Log capture: each stream is appended across starts with a marker line at
//! each start and rotated by size. File naming and reading live in
//! `cerebro_host::logs`, which the machinesitter reads too.

use cerebro_host::logs::backup_path;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A log file that rotates itself at line boundaries once it reaches
/// `max_bytes`, and keeps `<live>.start` (the stream position of the live
/// file's first byte) current so that readers can follow across rotations.
///
/// A file is rotated before a line that does not fit in it, so every
/// rotated file ends with a newline. A line that began in a file (the
/// workload writes lines in pieces) is finished there even past
/// `max_bytes`, as long as the line itself is at most `max_bytes` long; a
/// line longer than `max_bytes` is the one exception: it is cut every
/// `max_bytes` bytes.
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    backups: u32,
    /// Bytes of the unfinished last line in the live file (0 after a newline).
    line_len: u64,
    /// Stream position of the live file's first byte.
    start: u64,
}

impl RotatingFile {
    /// Opens (creating) the live file at `path` for appending, picking up
    /// where an earlier tasksitter left it: its size, whether it ends
    /// mid-line, its stream position.
    pub fn open(path: PathBuf, max_bytes: u64, backups: u32) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        let size = file.metadata()?.len();
        let line_len = unfinished_line_len(&mut file, size, max_bytes)?;
        let start = cerebro_host::logs::live_start(&path, backups);
        if !cerebro_host::logs::start_path(&path).exists() {
            write_start(&path, start)?;
        }
        Ok(Self {
            path,
            file,
            size,
            max_bytes,
            backups,
            line_len,
            start,
        })
    }

    fn backup_path(&self, generation: u32) -> PathBuf {
        backup_path(&self.path, generation)
    }

    fn rotate(&mut self) -> io::Result<()> {
        let start = self.start + self.size;
        if self.backups == 0 {
            write_start(&self.path, start)?;
            self.file.set_len(0)?;
        } else {
            let _ = fs::remove_file(self.backup_path(self.backups));
            for generation in (1..self.backups).rev() {
                let from = self.backup_path(generation);
                if from.exists() {
                    fs::rename(&from, self.backup_path(generation + 1))?;
                }
            }
            fs::rename(&self.path, self.backup_path(1))?;
            // Before the new live file exists: a reader that sees that file
            // also sees its position.
            write_start(&self.path, start)?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        self.start = start;
        self.size = 0;
        self.line_len = 0;
        Ok(())
    }

    /// How many bytes of `data` go into the live file now; 0 means rotate first.
    fn fits(&self, data: &[u8]) -> usize {
        let room = self.max_bytes.saturating_sub(self.size) as usize;
        if data.len() <= room {
            return data.len();
        }
        if let Some(newline) = data[..room].iter().rposition(|b| *b == b'\n') {
            return newline + 1;
        }
        if self.line_len > 0 {
            // Finish the line begun here, while it is no longer than a file.
            let line_room = self.max_bytes.saturating_sub(self.line_len) as usize;
            let piece = &data[..line_room.min(data.len())];
            return piece
                .iter()
                .position(|b| *b == b'\n')
                .map_or(piece.len(), |newline| newline + 1);
        }
        if self.size > 0 {
            return 0;
        }
        // A line longer than a whole file: cut it (the one exception).
        room
    }

    /// Appends the workload's bytes, rotating at line boundaries.
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        // Each round either writes or rotates; a rotation leaves an empty
        // file, into which the next round always writes.
        while !data.is_empty() {
            let take = self.fits(data);
            if take == 0 {
                self.rotate()?;
                continue;
            }
            let (now, later) = data.split_at(take);
            self.file.write_all(now)?;
            self.size += now.len() as u64;
            self.line_len = match now.iter().rposition(|b| *b == b'\n') {
                Some(newline) => (now.len() - newline - 1) as u64,
                None => self.line_len + now.len() as u64,
            };
            data = later;
        }
        Ok(())
    }

    /// Writes one line of Cerebro's own (`line` without its newline) on a
    /// line of its own: after a newline when the workload's last line is
    /// unfinished, so the two never merge.
    pub fn annotate(&mut self, line: &str) -> io::Result<()> {
        let mut text = String::with_capacity(line.len() + 2);
        if self.line_len > 0 {
            text.push('\n');
        }
        text.push_str(line);
        text.push('\n');
        self.write_all(text.as_bytes())
    }
}

/// Bytes after the last newline of the file's end (at most `max_bytes` looked at).
fn unfinished_line_len(file: &mut File, size: u64, max_bytes: u64) -> io::Result<u64> {
    let from = size.saturating_sub(max_bytes);
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(from))?;
    file.take(size - from).read_to_end(&mut tail)?;
    Ok(match tail.iter().rposition(|b| *b == b'\n') {
        Some(newline) => (tail.len() - newline - 1) as u64,
        None => tail.len() as u64,
    })
}

fn write_start(live: &std::path::Path, start: u64) -> io::Result<()> {
    cerebro_host::fs::atomic_write(
        &cerebro_host::logs::start_path(live),
        format!("{start}\n").as_bytes(),
    )
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
                    let mut file = cerebro_host::lock(&log);
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

#[cfg(test)]
mod tests {
    use super::*;
    use cerebro_host::logs::LogLocation;
    use cerebro_types::LogStream;

    #[test]
    fn annotations_never_merge_with_an_unfinished_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.stdout.log");
        let mut log = RotatingFile::open(path.clone(), 1 << 20, 1).unwrap();
        log.annotate("--- one ---").unwrap();
        log.write_all(b"partial").unwrap();
        log.annotate("--- two ---").unwrap();
        drop(log);
        // A later tasksitter sees that the file ends mid-line too.
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"again")
            .unwrap();
        let mut log = RotatingFile::open(path.clone(), 1 << 20, 1).unwrap();
        log.annotate("--- three ---").unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "--- one ---\npartial\n--- two ---\nagain\n--- three ---\n"
        );
    }

    #[test]
    fn a_line_begun_in_a_file_is_finished_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.stdout.log");
        let mut log = RotatingFile::open(path.clone(), 10, 2).unwrap();
        log.write_all(b"ab\ncdefg").unwrap();
        // Past the limit, but the line it finishes is short enough for a file.
        log.write_all(b"hij\nk").unwrap();
        log.write_all(b"l\nmnopqrstu\n").unwrap();
        assert_eq!(
            fs::read_to_string(backup_path(&path, 2)).unwrap(),
            "ab\ncdefghij\n"
        );
        assert_eq!(fs::read_to_string(backup_path(&path, 1)).unwrap(), "kl\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), "mnopqrstu\n");
    }

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
}
