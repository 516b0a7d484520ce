//! BIND 9 `named` for the rfc2136 tests: a real RFC 2136 server on
//! 127.0.0.1 and a free port, primary for the zone [`ZONE`], taking
//! updates and zone transfers signed with a fresh hmac-sha256 TSIG key.
//! `scripts/install-bind.sh` installs it (Debian's `bind9`); a missing
//! `named` fails the test with that instruction, never skips it.

use crate::watchdog::Watchdog;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};

/// The zone every [`BindServer`] is primary for.
pub const ZONE: &str = "cerebro.test";

/// The name of the TSIG key (`key "cerebro-test-key" { ... }`).
pub const KEY_NAME: &str = "cerebro-test-key";

/// How long `named` may take to load its zone and answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `named -g`; killed (and its temp dir removed) on drop, and
/// also when the test process dies any way at all: it runs under a `sh`
/// watchdog that ends it once the pipe from this process closes.
pub struct BindServer {
    /// Stops `named` when dropped.
    _watchdog: Watchdog,
    addr: SocketAddr,
    dir: PathBuf,
    secret: Vec<u8>,
}

/// Where a BIND command is: on PATH or in the sbin dirs a non-login PATH
/// may lack.
fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

fn require_tool(tool: &str) -> PathBuf {
    find_tool(tool).unwrap_or_else(|| {
        panic!(
            "`{tool}` is missing: the rfc2136 tests need BIND 9. Run scripts/install-bind.sh \
             (scripts/test.sh does; it installs Debian's bind9 bind9-utils bind9-dnsutils dnsutils)"
        )
    })
}

impl BindServer {
    /// Writes a config, a zone file (SOA, NS and the NS's A record) and a
    /// key made by `tsig-keygen -a hmac-sha256` into a fresh temp dir,
    /// starts `named -g -c CONF -p PORT` on 127.0.0.1 and a free port, and
    /// waits until it answers for the zone. Panics (with its log) when
    /// BIND is missing, or when it does not answer within 30 s.
    pub fn start() -> Self {
        let named = require_tool("named");
        let keygen = require_tool("tsig-keygen");
        // The free port may be taken between the pick and named's bind:
        // then named exits at once, and another port is tried.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::launch(&named, &keygen) {
                Ok(server) => return server,
                Err((message, log)) => {
                    let port_taken =
                        log.contains("unable to listen") || log.contains("address in use");
                    assert!(port_taken && attempt < 3, "{message}; its log:\n{log}");
                }
            }
        }
    }

    /// One try of [`BindServer::start`] on one port: the server, or why
    /// not and named's log.
    fn launch(named: &Path, keygen: &Path) -> Result<Self, (String, String)> {
        let dir = tempfile::Builder::new()
            .prefix("cerebro-bind-")
            .tempdir()
            .expect("a temp dir for named")
            .keep();
        let key = Command::new(keygen)
            .args(["-a", "hmac-sha256", KEY_NAME])
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", keygen.display()));
        assert!(
            key.status.success(),
            "tsig-keygen failed: {}",
            String::from_utf8_lossy(&key.stderr)
        );
        let key_text = String::from_utf8(key.stdout).expect("tsig-keygen prints text");
        let secret = parse_key_secret(&key_text)
            .unwrap_or_else(|| panic!("no secret in tsig-keygen's output:\n{key_text}"));
        std::fs::write(dir.join("key.conf"), &key_text).expect("write key.conf");
        let port = free_port();
        let d = dir.display();
        let config = format!(
            r#"include "{d}/key.conf";
options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
controls {{ }};
zone "{ZONE}" {{
    type primary;
    file "{d}/db.{ZONE}";
    allow-update {{ key "{KEY_NAME}"; }};
    allow-transfer {{ key "{KEY_NAME}"; }};
}};
"#
        );
        std::fs::write(dir.join("named.conf"), config).expect("write named.conf");
        let zone_file = format!(
            "$TTL 60\n\
             @ IN SOA ns1.{ZONE}. admin.{ZONE}. 1 3600 600 86400 60\n\
             @ IN NS ns1.{ZONE}.\n\
             ns1 IN A 127.0.0.1\n"
        );
        std::fs::write(dir.join(format!("db.{ZONE}")), zone_file).expect("write the zone file");
        let port_text = port.to_string();
        let conf = dir.join("named.conf");
        let watchdog = Watchdog::spawn(
            "named",
            &[
                named.as_os_str(),
                "-g".as_ref(),
                "-c".as_ref(),
                conf.as_os_str(),
                "-p".as_ref(),
                port_text.as_ref(),
            ],
            &dir,
            &dir.join("named.log"),
            &[],
        );
        let server = BindServer {
            _watchdog: watchdog,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            secret,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !server.answers_soa() {
            // answers_soa waits up to 200 ms for an answer: no sleep here.
            let log = server.log();
            if log.contains("exiting (due to fatal error)") {
                return Err((format!("named exited at start on {}", server.addr), log));
            }
            if Instant::now() >= deadline {
                return Err((
                    format!(
                        "named did not answer on {} within {START_TIMEOUT:?}",
                        server.addr
                    ),
                    log,
                ));
            }
        }
        Ok(server)
    }

    /// Whether named answers an SOA query for the zone over UDP (waits at
    /// most 200 ms).
    fn answers_soa(&self) -> bool {
        let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else {
            return false;
        };
        let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
        let mut message = Message::query();
        message.add_query(Query::query(
            Name::from_ascii(format!("{ZONE}.")).expect("a DNS name"),
            RecordType::SOA,
        ));
        let bytes = message.to_vec().expect("encode a query");
        if socket.send_to(&bytes, self.addr).is_err() {
            return false;
        }
        let mut buffer = [0u8; 4096];
        match socket.recv_from(&mut buffer) {
            Ok((len, _)) => Message::from_vec(&buffer[..len])
                .map(|answer| {
                    answer.metadata.id == message.metadata.id
                        && answer.metadata.authoritative
                        && !answer.answers.is_empty()
                })
                .unwrap_or(false),
            Err(_) => false,
        }
    }

    /// `127.0.0.1:PORT`, where named answers on UDP and TCP.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The zone it is primary for ([`ZONE`], no trailing dot).
    pub fn zone(&self) -> &'static str {
        ZONE
    }

    /// The `tsig-keygen` output (`key "NAME" { algorithm hmac-sha256;
    /// secret "BASE64"; };`), as `[dns] key_file` takes it.
    pub fn key_file(&self) -> PathBuf {
        self.dir.join("key.conf")
    }

    /// The key's name ([`KEY_NAME`]).
    pub fn key_name(&self) -> &'static str {
        KEY_NAME
    }

    /// The key's decoded secret (32 bytes for hmac-sha256).
    pub fn key_secret(&self) -> Vec<u8> {
        self.secret.clone()
    }

    /// The temp dir holding the config, zone, journal and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What named logged so far (`-g`: its stderr), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("named.log")).unwrap_or_default()
    }

    /// Runs `nsupdate -k KEY_FILE` with `commands` (lines such as `update
    /// add NAME TTL TXT "text"`) after `server` and `zone` lines, then
    /// `send`: changes the zone behind the back of what is tested.
    ///
    /// # Errors
    /// nsupdate's stderr when it fails (e.g. `update failed: REFUSED`).
    pub fn nsupdate(&self, commands: &str) -> Result<(), String> {
        use std::io::Write;
        let nsupdate = require_tool("nsupdate");
        let mut child = Command::new(&nsupdate)
            .arg("-k")
            .arg(self.key_file())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("run {}: {e}", nsupdate.display()))?;
        let script = format!(
            "server 127.0.0.1 {}\nzone {ZONE}\n{}\nsend\n",
            self.addr.port(),
            commands.trim_end()
        );
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(script.as_bytes())
            .map_err(|e| format!("write to nsupdate: {e}"))?;
        let output = child
            .wait_with_output()
            .map_err(|e| format!("wait for nsupdate: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nsupdate failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

/// A port free on 127.0.0.1 for both TCP and UDP right now.
fn free_port() -> u16 {
    for _ in 0..50 {
        let port = crate::moto::free_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP on 127.0.0.1");
}

/// The decoded `secret "..."` of a `tsig-keygen` key block.
pub fn parse_key_secret(key_conf: &str) -> Option<Vec<u8>> {
    let after = key_conf.split("secret").nth(1)?;
    let quoted = after.split('"').nth(1)?;
    decode_base64(quoted)
}

/// Standard base64 (RFC 4648 §4, padded) to bytes; `None` when malformed.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_block_decodes() {
        let conf = "key \"k\" {\n\talgorithm hmac-sha256;\n\tsecret \"aGVsbG8gd29ybGQ=\";\n};\n";
        assert_eq!(parse_key_secret(conf).unwrap(), b"hello world");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("YWI=").unwrap(), b"ab");
        assert_eq!(decode_base64("YWJj").unwrap(), b"abc");
    }

    #[test]
    fn named_starts_answers_and_stops_with_its_dir() {
        let bind = BindServer::start();
        assert_eq!(bind.key_secret().len(), 32);
        let dir = bind.dir().to_path_buf();
        bind.nsupdate("update add x.cerebro.test. 60 A 127.0.0.9")
            .unwrap_or_else(|e| panic!("{e}; named's log:\n{}", bind.log()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let answer = runtime
            .block_on(crate::dns::query(
                bind.addr(),
                "x.cerebro.test",
                cerebro_types::dns::RecordType::A,
            ))
            .unwrap();
        assert_eq!(answer.values, ["127.0.0.9".to_string()].into());
        assert!(answer.authoritative);
        let addr = bind.addr();
        drop(bind);
        assert!(!dir.exists(), "{} is left", dir.display());
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "named still listens"
        );
    }
}
