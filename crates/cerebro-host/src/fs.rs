//! The one atomic-write helper: temp file, fsync, rename, fsync the directory.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub fn atomic_write(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_atomically(path, contents, 0o666)
}

/// `atomic_write` for secrets: the file is 0600 from its creation on, so
/// it is never readable by others, not even for a moment.
pub fn atomic_write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_atomically(path, contents, 0o600)
}

/// `mode` is that of a new file, before the umask.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name")
    })?;
    let temp = dir.join(format!(
        ".{}.tmp{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        // A temp file left by a crash may have another mode: start afresh.
        let _ = std::fs::remove_file(&temp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// What reading a daemon's state file found.
pub enum StateFile<T> {
    /// No file yet: a first start.
    Fresh,
    Read(T),
    /// Unreadable or invalid; the file was moved to `moved_to` so that a
    /// human can look at it, and is never silently overwritten.
    Corrupt {
        moved_to: PathBuf,
        error: String,
    },
}

/// Reads a JSON state file; `check` rejects what parses but cannot be used
/// (an unknown version). Anything unusable is moved aside.
pub fn read_state_file<T: serde::de::DeserializeOwned>(
    path: &Path,
    check: impl Fn(&T) -> Result<(), String>,
) -> StateFile<T> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return StateFile::Fresh,
        Err(e) => return move_aside(path, format!("cannot read: {e}")),
    };
    let parsed = serde_json::from_slice::<T>(&text)
        .map_err(|e| e.to_string())
        .and_then(|state| check(&state).map(|()| state));
    match parsed {
        Ok(state) => StateFile::Read(state),
        Err(error) => move_aside(path, error),
    }
}

fn move_aside<T>(path: &Path, error: String) -> StateFile<T> {
    let mut moved_to = path.as_os_str().to_owned();
    moved_to.push(format!(".corrupt-{}", cerebro_types::time::now_ms()));
    let moved_to = PathBuf::from(moved_to);
    if let Err(rename_error) = std::fs::rename(path, &moved_to) {
        return StateFile::Corrupt {
            moved_to: path.to_path_buf(),
            error: format!("{error}; and it could not be moved aside: {rename_error}"),
        };
    }
    StateFile::Corrupt { moved_to, error }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        super::atomic_write(&path, b"first").unwrap();
        super::atomic_write(&path, b"second").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left behind"
        );
    }

    #[test]
    fn private_files_are_0600_even_when_replacing_a_readable_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        super::atomic_write(&path, b"public").unwrap();
        super::atomic_write_private(&path, b"secret").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret");
    }
}
