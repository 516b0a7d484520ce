//! Release artifacts for the deployment tests: a loopback HTTP server that
//! serves in-memory files by path (counting, delaying or failing requests
//! per path), and builders of `.tar.gz` archives, honest and malicious.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the server answers one path.
#[derive(Clone, Default)]
struct Entry {
    body: Vec<u8>,
    /// Waited before answering (a slow mirror).
    delay: Option<Duration>,
    /// Answered instead of the body (a broken mirror).
    fail: Option<u16>,
}

#[derive(Default)]
struct Shared {
    files: BTreeMap<String, Entry>,
    /// GET requests per path, served or not (unknown paths too).
    requests: BTreeMap<String, usize>,
}

/// A file server on `127.0.0.1:0` for recipes to fetch from. Files live in
/// memory, by absolute path (`/web-v1.tar.gz`); an unknown path is 404.
/// Runs on its own thread and runtime; stopped on drop.
pub struct ArtifactServer {
    address: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ArtifactServer {
    /// Binds 127.0.0.1 on a port the OS picks and starts serving.
    pub fn start() -> ArtifactServer {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the artifact server");
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the artifact server's runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
                    let state = state.clone();
                    async move { answer(&state, uri.path()).await }
                });
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("the artifact server");
            });
        });
        ArtifactServer {
            address,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// Serves `body` at `path` from now on; answers its SHA-256 (hex).
    pub fn put(&self, path: &str, body: Vec<u8>) -> String {
        let digest = sha256_hex(&body);
        let mut shared = self.shared.lock().unwrap();
        let entry = shared.files.entry(path.to_string()).or_default();
        entry.body = body;
        digest
    }

    /// Answers `path` only after `delay` (`None`: at once again).
    pub fn delay(&self, path: &str, delay: Option<Duration>) {
        self.shared
            .lock()
            .unwrap()
            .files
            .entry(path.to_string())
            .or_default()
            .delay = delay;
    }

    /// Answers `path` with `status` instead of its body (`None`: serve it again).
    pub fn fail(&self, path: &str, status: Option<u16>) {
        self.shared
            .lock()
            .unwrap()
            .files
            .entry(path.to_string())
            .or_default()
            .fail = status;
    }

    /// How many GET requests `path` has had.
    pub fn requests(&self, path: &str) -> usize {
        self.shared
            .lock()
            .unwrap()
            .requests
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

async fn answer(shared: &Mutex<Shared>, path: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let entry = {
        let mut shared = shared.lock().unwrap();
        *shared.requests.entry(path.to_string()).or_default() += 1;
        shared.files.get(path).cloned()
    };
    let Some(entry) = entry else {
        return (axum::http::StatusCode::NOT_FOUND, "no such artifact").into_response();
    };
    if let Some(delay) = entry.delay {
        tokio::time::sleep(delay).await;
    }
    match entry.fail {
        Some(status) => (
            axum::http::StatusCode::from_u16(status).unwrap(),
            "failing on purpose",
        )
            .into_response(),
        None => entry.body.into_response(),
    }
}

impl Drop for ArtifactServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// SHA-256 of `bytes`, lowercase hex as `sha256sum` prints it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A `.tar.gz` of regular files: `(path, mode, content)`, in that order.
pub fn tar_gz(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, mode, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(*mode);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mtime(0);
        builder
            .append_data(&mut header, path, *content)
            .expect("append to the archive");
    }
    finish(builder)
}

/// A `.tar.gz` an attacker would ship, whose entries (in this order) try
/// to write outside the directory it is unpacked in:
///
/// - `VERSION`, an honest file (so refusal is not "the archive is empty");
/// - `../escape`, a file one level up;
/// - `link`, a symlink to `/tmp/...` given as `outside` (an absolute path
///   outside the release), then `link/planted`, a file written through it.
///
/// The paths are written into the raw headers (the tar crate's safe
/// `append_*` calls refuse `..`), so the archive really holds them.
pub fn tar_slip_gz(outside: &std::path::Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let raw = |builder: &mut tar::Builder<_>,
               name: &str,
               kind: tar::EntryType,
               link: Option<&str>,
               data: &[u8]| {
        let mut header = tar::Header::new_old();
        {
            let old = header.as_old_mut();
            assert!(name.len() < old.name.len(), "{name} fits the header");
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                assert!(link.len() < old.linkname.len(), "{link} fits the header");
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).expect("append a raw entry");
    };
    raw(
        &mut builder,
        "VERSION",
        tar::EntryType::Regular,
        None,
        b"evil\n",
    );
    raw(
        &mut builder,
        "../escape",
        tar::EntryType::Regular,
        None,
        b"escaped\n",
    );
    let outside = outside.to_str().expect("a UTF-8 path");
    raw(
        &mut builder,
        "link",
        tar::EntryType::Symlink,
        Some(outside),
        b"",
    );
    raw(
        &mut builder,
        "link/planted",
        tar::EntryType::Regular,
        None,
        b"planted\n",
    );
    finish(builder)
}

/// A `.tar.gz` with only the symlink half of [`tar_slip_gz`]: `link`
/// pointing at `outside`, then `link/planted` through it.
pub fn symlink_slip_gz(outside: &std::path::Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_mode(0o777);
    link.set_mtime(0);
    builder
        .append_link(&mut link, "link", outside)
        .expect("append the symlink");
    let mut file = tar::Header::new_old();
    {
        let name = b"link/planted";
        file.as_old_mut().name[..name.len()].copy_from_slice(name);
    }
    file.set_entry_type(tar::EntryType::Regular);
    file.set_mode(0o644);
    file.set_mtime(0);
    file.set_size(8);
    file.set_cksum();
    builder
        .append(&file, &b"planted\n"[..])
        .expect("append through the link");
    finish(builder)
}

fn finish(builder: tar::Builder<flate2::write::GzEncoder<Vec<u8>>>) -> Vec<u8> {
    builder
        .into_inner()
        .expect("finish the archive")
        .finish()
        .expect("finish the gzip stream")
}

/// The entry paths of a `.tar.gz`, as its headers hold them (unchecked).
pub fn tar_gz_paths(archive: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    archive
        .entries()
        .expect("read the archive")
        .map(|entry| {
            let entry = entry.expect("an entry");
            String::from_utf8_lossy(&entry.path_bytes()).into_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slip_archive_really_holds_the_bad_paths() {
        let paths = tar_gz_paths(&tar_slip_gz(std::path::Path::new("/tmp/outside")));
        assert_eq!(paths, ["VERSION", "../escape", "link", "link/planted"]);
        let slip = tar_slip_gz(std::path::Path::new("/tmp/outside"));
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&slip[..]));
        let link = archive.entries().unwrap().nth(2).unwrap().unwrap();
        assert_eq!(
            link.link_name().unwrap().unwrap().to_str(),
            Some("/tmp/outside")
        );
        let paths = tar_gz_paths(&symlink_slip_gz(std::path::Path::new("/tmp/o")));
        assert_eq!(paths, ["link", "link/planted"]);
    }

    #[test]
    fn the_server_serves_counts_and_fails() {
        let server = ArtifactServer::start();
        let body = tar_gz(&[("VERSION", 0o644, b"v1\n")]);
        let digest = server.put("/a.tar.gz", body.clone());
        assert_eq!(digest, sha256_hex(&body));
        let got = reqwest::blocking::get(server.url("/a.tar.gz")).unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(got.bytes().unwrap().to_vec(), body);
        assert_eq!(server.requests("/a.tar.gz"), 1);
        assert_eq!(tar_gz_paths(&body), ["VERSION"]);
        server.fail("/a.tar.gz", Some(503));
        let got = reqwest::blocking::get(server.url("/a.tar.gz")).unwrap();
        assert_eq!(got.status(), 503);
        assert_eq!(server.requests("/a.tar.gz"), 2);
        let got = reqwest::blocking::get(server.url("/missing")).unwrap();
        assert_eq!(got.status(), 404);
        assert_eq!(server.requests("/missing"), 1);
        server.fail("/a.tar.gz", None);
        server.delay("/a.tar.gz", Some(Duration::from_millis(300)));
        let started = std::time::Instant::now();
        let got = reqwest::blocking::get(server.url("/a.tar.gz")).unwrap();
        assert_eq!(got.status(), 200);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
