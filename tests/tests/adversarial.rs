//! A bounded adversarial run against each daemon, booted as its real
//! binary on 127.0.0.1: a few thousand generated requests (malformed JSON,
//! wrong types, huge numbers, NUL and control characters, long strings,
//! path tricks such as `..`, `%2e%2e` and invalid UTF-8 escapes), all from
//! fixed lists, so every run sends the same ones. Whatever they send: no
//! 5xx; every 4xx is the JSON error shape; every 400 to a body on a sound
//! path names a field; and the daemon still answers afterwards.

use cerebro_tests::*;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// Values put in place of each field of a sound body.
fn bad_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(-1),
        json!(0),
        json!(1.5),
        json!(-1e308),
        // Beyond u64 and i64: serde_json keeps it as a float.
        serde_json::from_str("18446744073709551616").unwrap(),
        serde_json::from_str("123456789012345678901234567890").unwrap(),
        json!(""),
        json!("x".repeat(20_000)),
        json!("nul\u{0}inside"),
        json!("\u{1}\u{7}\u{1b}[31mcontrol\r\n"),
        json!("../../../etc/passwd"),
        json!("%2e%2e/%2e%2e"),
        json!("\u{202e}rtl\u{feff}"),
        json!([]),
        json!({}),
        json!([1, "two", null]),
        json!({"nested": {"deeper": [1]}}),
    ]
}

/// Bodies that are wrong as a whole.
fn bad_bodies() -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = [
        "",
        "{",
        "}",
        "{\"a\":",
        "[]",
        "null",
        "1",
        "\"x\"",
        "{}garbage",
        "{} {}",
        "{\"a\":1,}",
        "{'a': 1}",
        "{\"a\": NaN}",
        "{\"a\": 1e999}",
        "{\"a\": \"\\ud800\"}",
        "\u{feff}{}",
        "{\"a\":\"\u{0}\"}",
        "/* comment */ {}",
    ]
    .iter()
    .map(|b| b.as_bytes().to_vec())
    .collect();
    bodies.push(b"\xff\xfe{\"a\": 1}".to_vec());
    bodies.push(b"{\"a\": \"\xc3\x28\"}".to_vec());
    bodies.push(b"\x00\x00\x00\x00".to_vec());
    bodies.push("[".repeat(5_000).into_bytes());
    bodies.push(format!("{{\"a\": \"{}\"}}", "y".repeat(200_000)).into_bytes());
    bodies
}

/// Path segments (already in URL form) that must never reach past the
/// daemon's own names.
fn bad_segments() -> Vec<String> {
    let mut segments: Vec<String> = [
        "..",
        ".",
        "%2e%2e",
        "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "..%2F..%2F",
        "%252e%252e",
        "%FF",
        "%C0%AF",
        "%ED%A0%80",
        "%00",
        "a%00b",
        "%0A%0D",
        "%1B%5B31m",
        "%E2%80%AE",
        "a%2Fb",
        "%20",
        "-1",
        "99999999999999999999999",
        "0x10",
        "NaN",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    segments.push("z".repeat(3_000));
    segments
}

/// Query strings for endpoints that read one.
fn bad_queries() -> Vec<&'static str> {
    vec![
        "tail=-1",
        "tail=99999999999999999999999",
        "offset=18446744073709551616",
        "offset=1&tail=1",
        "limit=%00",
        "limit=%FF",
        "tail=1e3",
        "nope=1",
        "tail",
        "=&=&&",
        "lines=-5",
    ]
}

/// A seeded xorshift generator: the same requests on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random mixes per endpoint with a body, on top of the lists.
const ROUNDS: usize = 300;

/// One endpoint: `path` with `{}` where a generated segment goes (its
/// sound value `sound`), and the sound body whose fields are replaced.
struct Endpoint {
    method: &'static str,
    path: &'static str,
    sound: &'static str,
    body: Option<Value>,
    takes_query: bool,
}

impl Endpoint {
    fn new(method: &'static str, path: &'static str, sound: &'static str) -> Self {
        Self {
            method,
            path,
            sound,
            body: None,
            takes_query: false,
        }
    }

    /// A sound body, whose fields the run replaces.
    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// The endpoint reads a query string.
    fn query(mut self) -> Self {
        self.takes_query = true;
        self
    }
}

/// What the run saw, for the final message.
#[derive(Default)]
struct Tally {
    sent: usize,
    by_status: std::collections::BTreeMap<u16, usize>,
}

struct Target<'a> {
    name: &'static str,
    base_url: String,
    token: Option<String>,
    http: &'a reqwest::blocking::Client,
    tally: Tally,
}

impl Target<'_> {
    /// Sends one request and checks the answer; `about_body`: a 400 must
    /// name the field.
    fn send(&mut self, method: &str, path: &str, body: Option<Vec<u8>>, about_body: bool) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base_url));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = &body {
            request = request
                .header("content-type", "application/json")
                .body(body.clone());
        }
        let shown = |path: &str| path.chars().take(120).collect::<String>();
        let body_shown = body
            .as_ref()
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(120)]).to_string())
            .unwrap_or_default();
        let response = request
            .send()
            .unwrap_or_else(|e| panic!("{}: {method} {}: no answer: {e}", self.name, shown(path)));
        let status = response.status().as_u16();
        let content_type = content_type(response.headers());
        let text = response.text().unwrap_or_default();
        self.tally.sent += 1;
        *self.tally.by_status.entry(status).or_default() += 1;
        let context = || {
            format!(
                "{}: {method} {} body {body_shown:?} -> {status} {content_type} {}",
                self.name,
                shown(path),
                text.chars().take(300).collect::<String>()
            )
        };
        assert!(status < 500, "a 5xx: {}", context());
        if status >= 400 {
            let error: Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {}", context()));
            assert!(
                content_type.starts_with("application/json"),
                "{}",
                context()
            );
            assert!(
                error["error"].is_string(),
                "no error message: {}",
                context()
            );
            if status == 400 && about_body {
                assert!(
                    error["field"].as_str().is_some_and(|f| !f.is_empty()),
                    "a 400 about the body names no field: {}",
                    context()
                );
            }
        }
    }

    /// Every generated request for `endpoint`.
    fn attack(&mut self, endpoint: &Endpoint) {
        let sound_path = endpoint.path.replace("{}", endpoint.sound);
        if let Some(Value::Object(sound)) = &endpoint.body {
            for (key, nested) in flatten_keys(sound) {
                for value in bad_values() {
                    let mut body = Value::Object(sound.clone());
                    set_at(&mut body, &key, nested, value);
                    self.send(
                        endpoint.method,
                        &sound_path,
                        Some(serde_json::to_vec(&body).unwrap()),
                        true,
                    );
                }
            }
            let mut extra = sound.clone();
            extra.insert("unexpected_field".into(), json!(1));
            self.send(
                endpoint.method,
                &sound_path,
                Some(serde_json::to_vec(&extra).unwrap()),
                true,
            );
            for body in bad_bodies() {
                self.send(endpoint.method, &sound_path, Some(body), true);
            }
            // Mixes: a few fields wrong at once, then perhaps cut short or
            // spiked with a control byte.
            let keys = flatten_keys(sound);
            let values = bad_values();
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ self.tally.sent as u64);
            for _ in 0..ROUNDS {
                let mut body = Value::Object(sound.clone());
                for _ in 0..=rng.below(3) {
                    let (key, nested) = &keys[rng.below(keys.len())];
                    set_at(
                        &mut body,
                        key,
                        *nested,
                        values[rng.below(values.len())].clone(),
                    );
                }
                let mut bytes = serde_json::to_vec(&body).unwrap();
                match rng.below(4) {
                    0 => bytes.truncate(rng.below(bytes.len().max(1))),
                    1 => {
                        let at = rng.below(bytes.len().max(1));
                        bytes.insert(at, (rng.below(32)) as u8);
                    }
                    _ => {}
                }
                self.send(endpoint.method, &sound_path, Some(bytes), true);
            }
        }
        if endpoint.path.contains("{}") {
            for segment in bad_segments() {
                let path = endpoint.path.replace("{}", &segment);
                let body = endpoint
                    .body
                    .as_ref()
                    .map(|b| serde_json::to_vec(b).unwrap());
                self.send(endpoint.method, &path, body, false);
            }
        }
        if endpoint.takes_query {
            for query in bad_queries() {
                self.send(
                    endpoint.method,
                    &format!("{sound_path}?{query}"),
                    None,
                    false,
                );
            }
        }
    }

    fn assert_alive(&self) {
        let response = self
            .http
            .get(format!("{}/api/v1/status", self.base_url))
            .send()
            .unwrap_or_else(|e| panic!("{} is gone: {e}", self.name));
        assert_eq!(
            response.status().as_u16(),
            200,
            "{} still answers",
            self.name
        );
    }
}

/// The keys of `object` to replace: each top-level key, and each key of
/// an object one level down (as `outer.inner`, with `true` for nested).
fn flatten_keys(object: &serde_json::Map<String, Value>) -> Vec<(String, bool)> {
    let mut keys = Vec::new();
    for (key, value) in object {
        keys.push((key.clone(), false));
        if let Value::Object(inner) = value {
            for inner_key in inner.keys() {
                keys.push((format!("{key}.{inner_key}"), true));
            }
        }
    }
    keys
}

fn set_at(body: &mut Value, key: &str, nested: bool, value: Value) {
    if nested {
        let (outer, inner) = key.split_once('.').unwrap();
        // A mix may already have replaced the outer object.
        if let Some(object) = body[outer].as_object_mut() {
            object.insert(inner.to_string(), value);
        }
    } else {
        body[key] = value;
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn a_job(name: &str) -> Value {
    json!({
        "persistent": true,
        "deployment_layout": {"zone-a": {"cpu": 0}},
        "task_configuration": {"name": name, "command": "sleep 4243", "cpu": 0.1, "mem": 10, "auto_start": false},
    })
}

#[test]
fn the_clustersitter_survives_generated_garbage() {
    let cluster = Cluster::start(ClusterOptions {
        idle_limit: 0,
        ..Default::default()
    });
    let (code, reply) = cluster.put_job(&a_job("adv"));
    assert_eq!(code, 201, "{reply}");
    let http = client();
    let mut target = Target {
        name: "clustersitter",
        base_url: cluster.base_url.clone(),
        token: cluster.token.clone(),
        http: &http,
        tally: Tally::default(),
    };
    let endpoints = [
        Endpoint::new("PUT", "/api/v1/idle-limit", "").body(json!({"limit": 0, "zone": "zone-a"})),
        Endpoint::new("POST", "/api/v1/jobs/{}/update", "adv").body(json!({"version": "v2", "min_healthy_secs": 1, "max_parallel": 1})),
        Endpoint::new("PUT", "/api/v1/jobs/{}", "adv").body(a_job("adv")),
        Endpoint::new("POST", "/api/v1/plan", "").body(a_job("adv-plan")),
        Endpoint::new("POST", "/api/v1/machines/register", "").body(json!({"machine_id": "adv-1", "address": "127.0.0.1:9", "capacity": {"cpu": 1, "mem_mb": 64}, "zone": "zone-a"})),
        Endpoint::new("GET", "/api/v1/jobs/{}", "adv"),
        Endpoint::new("DELETE", "/api/v1/jobs/{}", "no-such-job"),
        Endpoint::new("POST", "/api/v1/jobs/{}/stop", "no-such-job"),
        Endpoint::new("GET", "/api/v1/machines/{}", "none"),
        Endpoint::new("POST", "/api/v1/jobs/adv/instances/{}/restart", "0"),
        Endpoint::new("GET", "/api/v1/jobs/adv/instances/0/logs/{}", "stdout").query(),
        Endpoint::new("GET", "/api/v1/events", "").query(),
    ];
    for endpoint in &endpoints {
        target.attack(endpoint);
    }
    raw_requests(&cluster.base_url);
    target.assert_alive();
    assert!(target.tally.sent >= 2000, "{:?}", target.tally.by_status);
}

#[test]
fn the_machinesitter_survives_generated_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::default();
    let mut command = Command::new(bin("machinesitter"));
    command
        .args([
            "--port",
            "0",
            "--machine-id",
            "adv-m",
            "--zone",
            "zone-a",
            "--capacity-cpu",
            "2",
            "--capacity-mem",
            "512",
        ])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--tasksitter-bin")
        .arg(bin("tasksitter"));
    let address = daemon.start(
        &mut command,
        &dir.path().join("address"),
        "the machinesitter",
    );
    let http = client();
    let mut target = Target {
        name: "machinesitter",
        base_url: format!("http://{address}"),
        token: None,
        http: &http,
        tally: Tally::default(),
    };
    let spec = json!({"command": "sleep 4244", "cpu": 0.1, "mem": 10, "auto_start": false, "restart": "never", "stop_timeout": 1});
    let endpoints = [
        Endpoint::new("PUT", "/api/v1/tasks/{}", "adv").body(spec),
        Endpoint::new("GET", "/api/v1/tasks/{}", "adv"),
        Endpoint::new("POST", "/api/v1/tasks/no-such-task/{}", "restart"),
        Endpoint::new("POST", "/api/v1/tasks/{}/restart", "no-such-task"),
        Endpoint::new("DELETE", "/api/v1/tasks/{}", "no-such-task"),
        Endpoint::new("GET", "/api/v1/tasks/adv/logs/{}", "stdout").query(),
    ];
    for endpoint in &endpoints {
        target.attack(endpoint);
    }
    raw_requests(&target.base_url);
    target.assert_alive();
    assert!(target.tally.sent >= 500, "{:?}", target.tally.by_status);
    drop(daemon);
    kill_processes_under(dir.path());
}

#[test]
fn the_tasksitter_survives_generated_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let mut command = Command::new(bin("tasksitter"));
    command
        .args(["--command", "sleep 4245", "--name", "adv"])
        .arg("--stdout-location")
        .arg(&logs)
        .arg("--stderr-location")
        .arg(&logs)
        .args([
            "--http-monitoring",
            "--http-monitoring-port",
            "0",
            "--http-address-file",
        ])
        .arg(dir.path().join("address"))
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null());
    // Not `Daemon::start`: the tasksitter's flag is --http-address-file.
    let mut child = Killed(command.spawn().expect("spawn the tasksitter"));
    let address = wait_for(TIMEOUT, "the tasksitter to listen", || {
        if let Some(exit) = child.0.try_wait().unwrap() {
            panic!("the tasksitter exited at start: {exit}");
        }
        std::fs::read_to_string(dir.path().join("address"))
            .ok()
            .filter(|a| !a.is_empty())
    });
    let http = client();
    let mut target = Target {
        name: "tasksitter",
        base_url: format!("http://{address}"),
        token: None,
        http: &http,
        tally: Tally::default(),
    };
    let endpoints = [
        Endpoint::new("POST", "/api/v1/signal", "").body(json!({"signal": "CONT"})),
        Endpoint::new("GET", "/api/v1/logs/{}", "stdout").query(),
        Endpoint::new("POST", "/api/v1/{}", "ping"),
    ];
    for endpoint in &endpoints {
        target.attack(endpoint);
    }
    raw_requests(&target.base_url);
    target.assert_alive();
    assert!(target.tally.sent >= 350, "{:?}", target.tally.by_status);
    drop(child);
    kill_processes_under(dir.path());
}

/// A child process killed when the test ends, passing or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Requests no HTTP client library would send: raw bytes in the target,
/// bare control characters, a request line with no version, a huge
/// header. The daemon answers 4xx or closes; it must not fall over
/// (checked by the caller's `assert_alive`).
fn raw_requests(base_url: &str) {
    use std::io::{Read, Write};
    let address = base_url.trim_start_matches("http://");
    let requests: Vec<Vec<u8>> = vec![
        b"GET /api/v1/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /api/v1/jobs/\x00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /api/v1/status\r\n\r\n".to_vec(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        format!(
            "GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "b".repeat(100_000)
        )
        .into_bytes(),
        b"PUT /api/v1/idle-limit HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\nConnection: close\r\n\r\n{}".to_vec(),
        b"PUT /api/v1/idle-limit HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZ\r\n".to_vec(),
    ];
    for raw in requests {
        let Ok(mut stream) = std::net::TcpStream::connect(address) else {
            panic!("cannot connect to {address}");
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let _ = stream.write_all(&raw);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        if let Some(status) = text.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok()) {
            assert!(status < 500, "{text}");
        }
    }
}
