//! Fetching artifacts into the machine's cache, by digest: a download goes
//! to a temporary file in the cache directory, hashed as it arrives, and is
//! renamed to `<sha256>` only when the digest matches. A cached file is
//! hashed again before each use, so a corrupted cache is fetched anew.
//!
//! A fetch is a future that stops (its temporary file removed) when
//! dropped, so the step's cancellation stops it. A `file://` URL is read
//! as the task's user when steps run as one, so a task cannot copy what
//! only the machinesitter may read. An artifact is refused once it would
//! leave less than [`MIN_FREE_BYTES`] free on the cache's filesystem.

use cerebro_host::RunAs;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use tokio::io::AsyncReadExt;

/// The free space a fetch leaves on the artifact cache's filesystem.
pub const MIN_FREE_BYTES: u64 = 1 << 30;
/// Bytes written between two looks at the free space.
const SPACE_CHECK_EVERY: u64 = 16 << 20;
/// What the name of a download in progress starts with.
pub const PARTIAL_PREFIX: &str = ".partial-";

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
    #[error("refused {url}: {message}")]
    NoSpace { url: String, message: String },
}

/// Bytes available to an unprivileged writer on the filesystem of `dir`.
pub fn available_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    #[allow(clippy::useless_conversion)]
    Ok(u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size())))
}

/// Removes the downloads a machinesitter that stopped mid-fetch left in
/// `cache`; returns their names.
pub fn remove_partials(cache: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(cache).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(PARTIAL_PREFIX) && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(name);
        }
    }
    removed
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
    cache: PathBuf,
    url: String,
    file: Option<std::fs::File>,
    hasher: Sha256,
    bytes: u64,
    /// `bytes` when the free space was last looked at.
    checked_at: Option<u64>,
    min_free: u64,
}

impl Partial {
    fn create(cache: &Path, sha256: &str, url: &str) -> std::io::Result<Self> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = cache.join(format!(
            "{PARTIAL_PREFIX}{sha256}-{}-{n}",
            std::process::id()
        ));
        let file = std::fs::File::create(&path)?;
        Ok(Self {
            path,
            cache: cache.to_path_buf(),
            url: url.to_string(),
            file: Some(file),
            hasher: Sha256::new(),
            bytes: 0,
            checked_at: None,
            min_free: MIN_FREE_BYTES,
        })
    }

    /// Refuses the artifact when `more` bytes still to come (0 when not
    /// known) would leave less than the minimum free.
    fn check_space(&mut self, more: u64) -> Result<(), FetchError> {
        self.checked_at = Some(self.bytes);
        let available = available_bytes(&self.cache)?;
        if available.saturating_sub(more) < self.min_free {
            return Err(FetchError::NoSpace {
                url: self.url.clone(),
                message: format!(
                    "it would leave less than {} free on the artifact cache's filesystem ({}: {} bytes free after {} bytes{})",
                    human_bytes(self.min_free),
                    self.cache.display(),
                    available,
                    self.bytes,
                    if more > 0 { format!(" with {more} more to come") } else { String::new() }
                ),
            });
        }
        Ok(())
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), FetchError> {
        if self
            .checked_at
            .is_none_or(|at| self.bytes - at >= SPACE_CHECK_EVERY)
        {
            self.check_space(chunk.len() as u64)?;
        }
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        Ok(self.file.as_mut().expect("open").write_all(chunk)?)
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
/// missing file, one `read_as` may not read); [`FetchError::Cache`] when
/// the cache cannot be written; [`FetchError::NoSpace`] when the artifact
/// would leave less than [`MIN_FREE_BYTES`] free.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    sha256: &str,
    cache: &Path,
    read_as: Option<&RunAs>,
) -> Result<Fetched, FetchError> {
    std::fs::create_dir_all(cache)?;
    let cached = cache.join(sha256);
    // A local file read for another user is read again as that user every
    // time: the cache must not hand out what the user may not read (one
    // task's root-readable file to a task running as nobody).
    let local_as_user = url.starts_with("file://") && read_as.is_some();
    if cached.is_file() && !local_as_user {
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
        return match read_as {
            None => {
                let mut input = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| transfer(e.to_string()))?;
                let mut partial = Partial::create(cache, sha256, url)?;
                let mut buffer = vec![0; 64 * 1024];
                loop {
                    let n = input
                        .read(&mut buffer)
                        .await
                        .map_err(|e| transfer(e.to_string()))?;
                    if n == 0 {
                        break;
                    }
                    partial.write(&buffer[..n])?;
                }
                partial.finish(url, cache, sha256)
            }
            Some(run_as) => {
                let mut partial = Partial::create(cache, sha256, url)?;
                read_as_user(path, run_as, &mut partial)
                    .await
                    .map_err(|e| match e {
                        FetchError::Transfer { message, .. } => transfer(message),
                        other => other,
                    })?;
                partial.finish(url, cache, sha256)
            }
        };
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
    let mut partial = Partial::create(cache, sha256, url)?;
    partial.check_space(response.content_length().unwrap_or(0))?;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transfer(error_chain(&e)))?
    {
        partial.write(&chunk)?;
    }
    partial.finish(url, cache, sha256)
}

/// Copies the file at `path` into `partial` as `run_as` reads it: `cat`
/// runs as that user, so the machinesitter's own rights do not apply.
async fn read_as_user(path: &str, run_as: &RunAs, partial: &mut Partial) -> Result<(), FetchError> {
    let user = run_as
        .name
        .clone()
        .unwrap_or_else(|| format!("uid {}", run_as.uid));
    let failed = |message: String| FetchError::Transfer {
        url: String::new(),
        message,
    };
    let ids = run_as.ids();
    let mut cmd = tokio::process::Command::new("cat");
    cmd.arg("--")
        .arg(path)
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe calls, on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            cerebro_host::process::cloexec_above_stderr()?;
            ids.become_user()
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot start cat as {user} to read {path}: {e}")))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let errors = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = (&mut stderr).take(4096).read_to_end(&mut text).await;
        String::from_utf8_lossy(&text).trim().to_string()
    });
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let n = stdout
            .read(&mut buffer)
            .await
            .map_err(|e| failed(format!("cannot read {path} as {user}: {e}")))?;
        if n == 0 {
            break;
        }
        partial.write(&buffer[..n])?;
    }
    let status = child
        .wait()
        .await
        .map_err(|e| failed(format!("cannot read {path} as {user}: {e}")))?;
    let errors = errors.await.unwrap_or_default();
    if !status.success() {
        return Err(failed(format!(
            "cannot read {path} as {user}: {}",
            if errors.is_empty() {
                format!("cat ended with {status}")
            } else {
                errors
            }
        )));
    }
    Ok(())
}

/// `1 GiB`, `512 MiB`.
fn human_bytes(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_artifact_leaving_too_little_free_space_is_refused_and_its_partial_removed() {
        let cache = tempfile::tempdir().unwrap();
        let mut partial = Partial::create(cache.path(), &"a".repeat(64), "file:///x").unwrap();
        let path = partial.path.clone();
        partial.write(b"fine").unwrap();
        partial.min_free = available_bytes(cache.path()).unwrap() + (1 << 40);
        partial.checked_at = None;
        let error = partial.write(b"more").unwrap_err().to_string();
        assert!(
            error.contains("refused file:///x: it would leave less than"),
            "{error}"
        );
        drop(partial);
        assert!(!path.exists());
    }

    #[test]
    fn leftover_partials_are_removed() {
        let cache = tempfile::tempdir().unwrap();
        std::fs::write(cache.path().join(".partial-abc-1-0"), b"x").unwrap();
        std::fs::write(cache.path().join("abc"), b"x").unwrap();
        assert_eq!(remove_partials(cache.path()), [".partial-abc-1-0"]);
        assert!(cache.path().join("abc").exists());
    }
}
