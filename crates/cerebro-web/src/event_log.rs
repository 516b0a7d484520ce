//! A daemon's recent events, kept in memory for the API and the pages and
//! journaled to a JSON-lines file, so that what happened before a crash or
//! a restart is still there to read afterwards.
//!
//! Each event is one appended line, without fsync: the history is for
//! people, so losing the last lines to a power cut is acceptable, and a
//! torn last line is skipped when the file is read back. Once the file
//! holds twice as many lines as are kept, it is rewritten atomically with
//! the newest ones, so it stays bounded.

use cerebro_host::fs::atomic_write;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct EventLog<T> {
    recent: VecDeque<T>,
    capacity: usize,
    journal: Option<Journal>,
}

struct Journal {
    path: PathBuf,
    file: File,
    lines: usize,
}

impl<T: Serialize + DeserializeOwned> EventLog<T> {
    /// Events kept in memory only.
    pub fn in_memory(capacity: usize) -> Self {
        Self {
            recent: VecDeque::new(),
            capacity,
            journal: None,
        }
    }

    /// The newest `capacity` events journaled at `path` (lines that do not
    /// parse are skipped), and every new event appended there. A journal
    /// that cannot be opened leaves the events in memory only, with a
    /// warning: events must never stop a daemon.
    pub fn journaled(path: PathBuf, capacity: usize) -> Self {
        let mut log = Self::in_memory(capacity);
        let mut lines = 0;
        let mut torn = false;
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                lines += 1;
                if let Ok(event) = serde_json::from_str(line) {
                    log.remember(event);
                }
            }
            torn = !text.is_empty() && !text.ends_with('\n');
        }
        // A torn last line is ended, so the next event starts a line of its own.
        let opened = open_append(&path).and_then(|mut file| {
            if torn {
                file.write_all(b"\n")?;
            }
            Ok(file)
        });
        match opened {
            Ok(file) => log.journal = Some(Journal { path, file, lines }),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot journal events; they live in memory only")
            }
        }
        log
    }

    pub fn push(&mut self, event: T) {
        if let Some(journal) = &mut self.journal {
            if let Err(error) = append_line(&mut journal.file, &event) {
                tracing::warn!(path = %journal.path.display(), %error, "cannot journal an event");
            }
            journal.lines += 1;
        }
        self.remember(event);
        self.compact_if_long();
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.recent.iter()
    }

    fn remember(&mut self, event: T) {
        if self.recent.len() >= self.capacity {
            self.recent.pop_front();
        }
        self.recent.push_back(event);
    }

    fn compact_if_long(&mut self) {
        let Some(journal) = &mut self.journal else {
            return;
        };
        if journal.lines <= 2 * self.capacity.max(1) {
            return;
        }
        let mut text = Vec::new();
        for event in &self.recent {
            if serde_json::to_writer(&mut text, event).is_ok() {
                text.push(b'\n');
            }
        }
        let rewritten =
            atomic_write(&journal.path, &text).and_then(|()| open_append(&journal.path));
        match rewritten {
            Ok(file) => {
                journal.file = file;
                journal.lines = self.recent.len();
            }
            Err(error) => {
                tracing::warn!(path = %journal.path.display(), %error, "cannot compact the event journal")
            }
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn append_line(file: &mut File, event: &impl Serialize) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
    line.push(b'\n');
    // One write per line: with O_APPEND it lands whole at the end.
    file.write_all(&line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(log: &EventLog<u32>) -> Vec<u32> {
        log.iter().copied().collect()
    }

    #[test]
    fn events_survive_a_reopen_and_memory_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut log = EventLog::journaled(path.clone(), 3);
        for n in 1..=5 {
            log.push(n);
        }
        assert_eq!(numbers(&log), [3, 4, 5]);
        drop(log);
        let mut reopened = EventLog::<u32>::journaled(path, 3);
        assert_eq!(numbers(&reopened), [3, 4, 5]);
        reopened.push(6);
        assert_eq!(numbers(&reopened), [4, 5, 6]);
    }

    #[test]
    fn a_torn_or_foreign_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "1\nnot json\n2\n{\"torn").unwrap();
        let mut log = EventLog::<u32>::journaled(path.clone(), 10);
        assert_eq!(numbers(&log), [1, 2]);
        log.push(3);
        drop(log);
        let reopened = EventLog::<u32>::journaled(path, 10);
        assert_eq!(
            numbers(&reopened),
            [1, 2, 3],
            "the torn line took nothing with it"
        );
    }

    #[test]
    fn the_journal_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut log = EventLog::journaled(path.clone(), 10);
        for n in 0..1000u32 {
            log.push(n);
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 21, "{lines} lines for 10 kept");
        drop(log);
        let reopened = EventLog::<u32>::journaled(path, 10);
        assert_eq!(numbers(&reopened), (990..1000).collect::<Vec<_>>());
    }

    #[test]
    fn an_unwritable_journal_leaves_the_events_in_memory() {
        let mut log = EventLog::journaled(PathBuf::from("/nonexistent-dir/events.jsonl"), 2);
        log.push(1u32);
        log.push(2);
        log.push(3);
        assert_eq!(numbers(&log), [2, 3]);
    }
}
