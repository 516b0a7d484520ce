//! The machinesitter and tasksitter binaries this clustersitter hands to
//! new machines: a cloud machine boots from user data that downloads them
//! from the clustersitter (token holders only) and checks each against the
//! SHA-256 digest the user data carries.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The programs a machine needs, by the name they are served under.
pub const MACHINE_BINARIES: [&str; 2] = ["machinesitter", "tasksitter"];

/// One binary: where it is and what it hashes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    pub name: &'static str,
    pub path: PathBuf,
    /// Lowercase hex SHA-256 (FIPS 180-4) of the file's bytes.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BinariesError {
    #[error("no {0} beside the clustersitter or on PATH (set provider.{0}_bin)")]
    NotFound(&'static str),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Nobody looked for them: a cluster built without a catalog (a test's).
    #[error("this clustersitter was started without binaries to serve")]
    NotLocated,
}

/// The binaries, located and hashed once at start: a file replaced on disk
/// afterwards is not served under the old digest (see [`Catalog::open`]).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    binaries: BTreeMap<&'static str, Binary>,
}

impl Catalog {
    /// Finds each of [`MACHINE_BINARIES`]: the path in `configured` when
    /// given, else beside the running executable, else on `PATH`; and
    /// hashes it.
    ///
    /// # Errors
    /// [`BinariesError::NotFound`] when one cannot be found,
    /// [`BinariesError::Read`] when one cannot be read.
    pub fn locate(configured: &BTreeMap<&'static str, PathBuf>) -> Result<Self, BinariesError> {
        let mut binaries = BTreeMap::new();
        for name in MACHINE_BINARIES {
            let path = match configured.get(name) {
                Some(path) => path.clone(),
                None => find_program(name).ok_or(BinariesError::NotFound(name))?,
            };
            let (sha256, size) = hash_file(&path).map_err(|source| BinariesError::Read {
                path: path.display().to_string(),
                source,
            })?;
            binaries.insert(
                name,
                Binary {
                    name,
                    path,
                    sha256,
                    size,
                },
            );
        }
        Ok(Self { binaries })
    }

    /// Every binary, by name.
    pub fn all(&self) -> impl Iterator<Item = &Binary> {
        self.binaries.values()
    }

    pub fn get(&self, name: &str) -> Option<&Binary> {
        self.binaries.get(name)
    }

    /// The bytes of binary `name`, read whole and checked against the
    /// digest taken at start: `Ok(None)` for an unknown name.
    ///
    /// # Errors
    /// The file cannot be read, or it changed since start (an
    /// [`std::io::ErrorKind::InvalidData`] error): a machine would refuse it.
    pub fn open(&self, name: &str) -> std::io::Result<Option<(Binary, Vec<u8>)>> {
        let Some(binary) = self.binaries.get(name) else {
            return Ok(None);
        };
        let bytes = std::fs::read(&binary.path)?;
        if hex_sha256(&bytes) != binary.sha256 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} changed since the clustersitter started; restart it to serve the new one",
                    binary.path.display()
                ),
            ));
        }
        Ok(Some((binary.clone(), bytes)))
    }
}

/// `name` beside the running executable, else on `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let beside = std::env::current_exe().ok()?.with_file_name(name);
    if beside.is_file() {
        return Some(beside);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn hex_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        size += read as u64;
        hasher.update(&buffer[..read]);
    }
    Ok((hex(&hasher.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_fips_180_4_sha256() {
        // The FIPS 180-4 example "abc".
        assert_eq!(
            hex_sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_binary_changed_after_start_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let mut configured = BTreeMap::new();
        for name in MACHINE_BINARIES {
            let path = dir.path().join(name);
            std::fs::write(&path, name).unwrap();
            configured.insert(name, path);
        }
        let catalog = Catalog::locate(&configured).unwrap();
        let (binary, bytes) = catalog.open("tasksitter").unwrap().unwrap();
        assert_eq!(bytes, b"tasksitter");
        assert_eq!(binary.size, 10);
        assert!(catalog.open("sh").unwrap().is_none());
        std::fs::write(dir.path().join("tasksitter"), "evil").unwrap();
        let error = catalog.open("tasksitter").unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    }
}
