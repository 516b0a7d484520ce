//! Where a clustersitter leaves its token for the `cerebro` CLI on the same
//! host: `$XDG_CONFIG_HOME/cerebro/tokens/<host>_<port>` (else
//! `~/.config/cerebro/tokens/...`), one file per cluster URL, mode 0600 in
//! a 0700 directory. The clustersitter writes it (for the user it runs as)
//! when it generated its token; the CLI reads it when it is given neither
//! `--token-file` nor `CEREBRO_TOKEN`.

use std::path::{Path, PathBuf};

/// The directory of the recorded tokens, from the environment: `None`
/// when neither `XDG_CONFIG_HOME` nor `HOME` is set.
pub fn default_dir() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(config.join("cerebro").join("tokens"))
}

/// The file name for a cluster at `host` and `port`: `127.0.0.1_30000`.
/// Only characters safe in a file name are kept (IPv6 colons become `-`).
pub fn file_name(host: &str, port: u16) -> String {
    let host: String = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{host}_{port}")
}

/// The host and port of an `http://` or `https://` URL (port 80 or 443
/// when not given); `None` for anything else.
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let (rest, default_port) = if let Some(rest) = url.strip_prefix("http://") {
        (rest, 80)
    } else {
        (url.strip_prefix("https://")?, 443)
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse().ok()?),
        _ => (authority, default_port),
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// The token recorded in `dir` for the cluster at `url`, if any (a
/// `localhost` URL also finds the record of 127.0.0.1).
pub fn read_for_url(dir: &Path, url: &str) -> Option<String> {
    let (host, port) = host_port(url)?;
    let mut hosts = vec![host.clone()];
    if host.eq_ignore_ascii_case("localhost") {
        hosts.push("127.0.0.1".into());
    }
    hosts.into_iter().find_map(|host| {
        let text = std::fs::read_to_string(dir.join(file_name(&host, port))).ok()?;
        let token = text.trim();
        (!token.is_empty()).then(|| token.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_map_to_file_names() {
        assert_eq!(
            host_port("http://127.0.0.1:30000/api"),
            Some(("127.0.0.1".into(), 30000))
        );
        assert_eq!(
            host_port("https://c.example"),
            Some(("c.example".into(), 443))
        );
        assert_eq!(host_port("http://[::1]:5/"), Some(("[::1]".into(), 5)));
        assert_eq!(host_port("ftp://x"), None);
        assert_eq!(file_name("127.0.0.1", 30000), "127.0.0.1_30000");
        assert_eq!(file_name("[::1]", 5), "--1_5");
        assert_eq!(file_name("../x", 1), "..-x_1");
    }

    #[test]
    fn a_recorded_token_is_found_by_url() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("127.0.0.1_30000"), "abc\n").unwrap();
        assert_eq!(
            read_for_url(dir.path(), "http://localhost:30000").as_deref(),
            Some("abc")
        );
        assert_eq!(read_for_url(dir.path(), "http://127.0.0.1:30001"), None);
    }
}
