//! Log capture: each stream is appended across starts with a marker line at
//! each start and rotated by size. File naming and reading live in
//! `cerebro_host::logs`, which the machinesitter reads too.

use cerebro_host::logs::backup_path;
pub use cerebro_host::logs::{file_stem, LogLocation};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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
    use cerebro_types::LogStream;

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
