//! Fetching artifacts into the machine's cache, by digest: a download goes
//! to a temporary file in the cache directory, hashed as it arrives, and is
//! renamed to `<sha256>` only when the digest matches. A cached file is
//! hashed again before each use, so a corrupted cache is fetched anew.

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Why an artifact could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("sha256 mismatch for {url}: expected {expected}, got {actual} ({bytes} bytes)")]
    Digest {
        url: String,
        expected: String,
        actual: String,
        bytes: u64,
    },
    #[error("cannot fetch {url}: {message}")]
    Transfer { url: String, message: String },
    #[error("cannot use the artifact cache: {0}")]
    Cache(#[from] std::io::Error),
}

/// An artifact in the cache and how it got there.
#[derive(Debug)]
pub struct Fetched {
    pub path: PathBuf,
    pub bytes: u64,
    /// False when the cache already held it.
    pub downloaded: bool,
}

/// SHA-256 (hex) and length of a file.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 64 * 1024];
    let mut total = 0;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A temporary file in the cache directory, removed unless kept.
struct Partial {
    path: PathBuf,
    file: Option<std::fs::File>,
    hasher: Sha256,
    bytes: u64,
}

impl Partial {
    fn create(cache: &Path, sha256: &str) -> std::io::Result<Self> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = cache.join(format!(".partial-{sha256}-{}-{n}", std::process::id()));
        let file = std::fs::File::create(&path)?;
        Ok(Self {
            path,
            file: Some(file),
            hasher: Sha256::new(),
            bytes: 0,
        })
    }

    fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        self.file.as_mut().expect("open").write_all(chunk)
    }

    /// Verifies the digest and renames the file to `cache/<sha256>`.
    fn finish(mut self, url: &str, cache: &Path, sha256: &str) -> Result<Fetched, FetchError> {
        let file = self.file.take().expect("open");
        file.sync_all()?;
        drop(file);
        let actual = hex(&std::mem::take(&mut self.hasher).finalize());
        if actual != sha256 {
            return Err(FetchError::Digest {
                url: url.to_string(),
                expected: sha256.to_string(),
                actual,
                bytes: self.bytes,
            });
        }
        let path = cache.join(sha256);
        std::fs::rename(&self.path, &path)?;
        Ok(Fetched {
            path,
            bytes: self.bytes,
            downloaded: true,
        })
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The artifact with digest `sha256` (lowercase hex) from `url` (http,
/// https or file), in `cache`: the cached copy if it still verifies, else
/// fetched, verified and cached.
///
/// # Errors
/// [`FetchError::Digest`] when what `url` gives has another digest;
/// [`FetchError::Transfer`] when it cannot be read (a non-2xx answer, a
/// missing file); [`FetchError::Cache`] when the cache cannot be written.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    sha256: &str,
    cache: &Path,
) -> Result<Fetched, FetchError> {
    std::fs::create_dir_all(cache)?;
    let cached = cache.join(sha256);
    if cached.is_file() {
        let path = cached.clone();
        let verified = tokio::task::spawn_blocking(move || hash_file(&path))
            .await
            .map_err(std::io::Error::other)?;
        match verified {
            Ok((actual, bytes)) if actual == sha256 => {
                // Used now: artifact pruning spares recently used files.
                let _ = std::fs::File::options()
                    .append(true)
                    .open(&cached)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()));
                return Ok(Fetched {
                    path: cached,
                    bytes,
                    downloaded: false,
                });
            }
            _ => {
                tracing::warn!(path = %cached.display(), "cached artifact does not verify; fetching it again");
                let _ = std::fs::remove_file(&cached);
            }
        }
    }
    let transfer = |message: String| FetchError::Transfer {
        url: url.to_string(),
        message,
    };
    if let Some(path) = url.strip_prefix("file://") {
        let (source, cache, sha) = (PathBuf::from(path), cache.to_path_buf(), sha256.to_string());
        let url = url.to_string();
        return tokio::task::spawn_blocking(move || {
            let mut input = std::fs::File::open(&source).map_err(|e| FetchError::Transfer {
                url: url.clone(),
                message: e.to_string(),
            })?;
            let mut partial = Partial::create(&cache, &sha)?;
            let mut buffer = vec![0; 64 * 1024];
            loop {
                let n = input.read(&mut buffer).map_err(|e| FetchError::Transfer {
                    url: url.clone(),
                    message: e.to_string(),
                })?;
                if n == 0 {
                    break;
                }
                partial.write(&buffer[..n])?;
            }
            partial.finish(&url, &cache, &sha)
        })
        .await
        .map_err(|e| FetchError::Cache(std::io::Error::other(e)))?;
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(transfer(
            "only http, https and file URLs are fetched".into(),
        ));
    }
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| transfer(error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(transfer(format!(
            "the server answered {}",
            response.status()
        )));
    }
    let mut partial = Partial::create(cache, sha256)?;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transfer(error_chain(&e)))?
    {
        partial.write(&chunk)?;
    }
    partial.finish(url, cache, sha256)
}

/// An error with its causes, `a: b: c`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
