//! A contract server of the Dyn Managed DNS REST API, for the `dynect`
//! provider's tests.
//!
//! Dyn Managed DNS was retired by Oracle in 2023 (Oracle bought Dyn in
//! 2016 and shut the service down around May 2023), so the real service no
//! longer exists to test against. This server follows the published
//! contract instead, as the help.dyn.com pages described it ("Session Log
//! In", "Create/Get/Update/Delete A Records", "Get All Records", "Publish
//! Zone", "Get Zone Changes", "Get Job"):
//!
//! - `POST /REST/Session/ {customer_name, user_name, password}` answers
//!   `data.token`; every other call must carry it in the `Auth-Token`
//!   header (`GET` checks the session, `PUT` keeps it alive, `DELETE` logs
//!   out). A missing or unknown token gets HTTP 400 and the envelope
//!   `status: "failure"` with `login: Bad or expired credentials`.
//! - Every answer is `{status, data, job_id, msgs: [{INFO, SOURCE, ERR_CD, LVL}]}`.
//! - `/REST/ARecord/<zone>/<fqdn>/` (and `AAAARecord` with `rdata.address`,
//!   `TXTRecord` with `rdata.txtdata`): `GET` lists the node's record URIs
//!   `/REST/ARecord/<zone>/<fqdn>/<id>`, `POST {rdata, ttl}` adds one,
//!   `PUT {"ARecords": [{rdata, ttl}, ...]}` replaces them all, `DELETE`
//!   removes them all; `GET`/`DELETE` of `.../<id>` reads/removes one.
//! - `GET /REST/AllRecord/<zone>[/<fqdn>]/`: the URIs of every record at or
//!   under the node (`NOT_FOUND` when there is none).
//! - Changes wait in the session's changeset (`GET`/`DELETE
//!   /REST/ZoneChanges/<zone>/`) until `PUT /REST/Zone/<zone>/ {"publish":
//!   true}`, which applies them to the zone and bumps its serial. Reads in a
//!   session see the published zone with that session's pending changes.
//! - A job that takes long answers `307` with `Location: /REST/Job/<id>/`,
//!   polled with `GET` until its status is `success`
//!   ([`DynServer::publish_as_job`] makes publishes do that).
//!
//! Every request is recorded ([`DynServer::requests`]); a test can seed
//! records nobody's session made ([`DynServer::seed`]), read the published
//! zone ([`DynServer::published`]) and end every session
//! ([`DynServer::expire_sessions`]).

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cerebro_types::dns::{normalize_name, RecordSet, RecordType};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The TTL of a record written with `ttl` 0 or none: the zone's default.
pub const ZONE_DEFAULT_TTL: u32 = 3600;

/// How a request's `Auth-Token` header compared with the live sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynAuth {
    /// No `Auth-Token` header.
    Missing,
    /// The token of a live session.
    Live,
    /// A token no live session has (never issued, logged out, expired).
    Unknown,
}

/// One request the server received, as it came.
#[derive(Debug, Clone)]
pub struct DynRequest {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: String,
    /// The path as sent (`/REST/ARecord/cerebro.test/a.cerebro.test/`).
    pub path: String,
    pub auth: DynAuth,
    /// The `Auth-Token` sent, if any.
    pub token: Option<String>,
    /// The JSON body (`Null` when there was none or it was not JSON).
    pub body: Value,
}

impl DynRequest {
    /// `"METHOD /path"` with the path's trailing `/` dropped, for terse
    /// assertions (`"PUT /REST/Zone/cerebro.test"`).
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path.trim_end_matches('/'))
    }
}

#[derive(Debug, Clone)]
struct Record {
    id: u64,
    fqdn: String,
    rtype: RecordType,
    /// The address or the text.
    value: String,
    ttl: u32,
}

#[derive(Debug, Clone)]
enum Op {
    Replace {
        fqdn: String,
        rtype: RecordType,
        records: Vec<Record>,
    },
    DeleteNode {
        fqdn: String,
        rtype: RecordType,
    },
    Create(Record),
    DeleteOne(u64),
}

impl Op {
    fn apply(&self, records: &mut BTreeMap<u64, Record>) {
        match self {
            Op::Replace {
                fqdn,
                rtype,
                records: new,
            } => {
                records.retain(|_, r| !(r.fqdn == *fqdn && r.rtype == *rtype));
                for record in new {
                    records.insert(record.id, record.clone());
                }
            }
            Op::DeleteNode { fqdn, rtype } => {
                records.retain(|_, r| !(r.fqdn == *fqdn && r.rtype == *rtype));
            }
            Op::Create(record) => {
                records.insert(record.id, record.clone());
            }
            Op::DeleteOne(id) => {
                records.remove(id);
            }
        }
    }

    fn describe(&self) -> Value {
        match self {
            Op::Replace {
                fqdn,
                rtype,
                records,
            } => json!({"op": "replace", "fqdn": fqdn, "rdata_type": rtype.as_str(),
                "records": records.iter().map(|r| r.value.clone()).collect::<Vec<_>>()}),
            Op::DeleteNode { fqdn, rtype } => {
                json!({"op": "delete", "fqdn": fqdn, "rdata_type": rtype.as_str()})
            }
            Op::Create(r) => {
                json!({"op": "add", "fqdn": r.fqdn, "rdata_type": r.rtype.as_str(), "value": r.value})
            }
            Op::DeleteOne(id) => json!({"op": "delete", "record_id": id}),
        }
    }
}

#[derive(Default)]
struct Zone {
    serial: u32,
    records: BTreeMap<u64, Record>,
}

#[derive(Default)]
struct Session {
    /// Pending changes by zone, in order.
    pending: BTreeMap<String, Vec<Op>>,
}

#[derive(Default)]
struct State {
    customer: String,
    user: String,
    password: String,
    sessions: HashMap<String, Session>,
    zones: BTreeMap<String, Zone>,
    next_id: u64,
    next_token: u64,
    /// Job id → polls left before it is done, and its final answer.
    jobs: HashMap<u64, (u32, Value)>,
    /// Polls each publish's job takes (0: publishes answer at once).
    publish_polls: u32,
    /// Requests with a live token left before every session is forgotten.
    expire_after: Option<usize>,
    requests: Vec<DynRequest>,
}

impl State {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The zone as `token`'s session sees it: published, then its pending
    /// changes.
    fn view(&self, zone: &str, token: &str) -> BTreeMap<u64, Record> {
        let mut records = self
            .zones
            .get(zone)
            .map(|z| z.records.clone())
            .unwrap_or_default();
        if let Some(ops) = self.sessions.get(token).and_then(|s| s.pending.get(zone)) {
            for op in ops {
                op.apply(&mut records);
            }
        }
        records
    }

    fn pending(&mut self, token: &str, zone: &str) -> &mut Vec<Op> {
        self.sessions
            .get_mut(token)
            .expect("a live session")
            .pending
            .entry(zone.to_string())
            .or_default()
    }
}

/// The Dyn REST API contract server on `127.0.0.1` and a port the OS
/// picks. Runs on its own thread and runtime, so sync and async tests can
/// use it alike; stopped on drop.
pub struct DynServer {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DynServer {
    /// Serves the zones `zones` (empty) for one account: `customer`,
    /// `user`, `password`.
    pub fn start(customer: &str, user: &str, password: &str, zones: &[&str]) -> DynServer {
        let state = Arc::new(Mutex::new(State {
            customer: customer.into(),
            user: user.into(),
            password: password.into(),
            zones: zones
                .iter()
                .map(|z| {
                    (
                        normalize_name(z),
                        Zone {
                            serial: 1,
                            ..Zone::default()
                        },
                    )
                })
                .collect(),
            ..State::default()
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the Dyn server");
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the Dyn server's runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(
                    move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        let state = shared.clone();
                        async move { handle(&state, method, uri, headers, body) }
                    },
                );
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("the Dyn server");
            });
        });
        DynServer {
            address,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` (the `api_url`; paths start with `/REST/`).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<DynRequest> {
        lock(&self.state).requests.clone()
    }

    /// Forgets the requests recorded so far.
    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }

    /// Adds a record to the published zone, as another tool would have
    /// (no session, no publish needed).
    pub fn seed(&self, zone: &str, fqdn: &str, rtype: RecordType, value: &str, ttl: u32) {
        let mut state = lock(&self.state);
        let id = state.id();
        let zone = normalize_name(zone);
        let record = Record {
            id,
            fqdn: normalize_name(fqdn),
            rtype,
            value: value.into(),
            ttl,
        };
        state
            .zones
            .get_mut(&zone)
            .unwrap_or_else(|| panic!("the Dyn server does not serve {zone}"))
            .records
            .insert(id, record);
    }

    /// The published zone as RRsets (A, AAAA, TXT), sorted; pending
    /// changes are not in it.
    pub fn published(&self, zone: &str) -> Vec<RecordSet> {
        let state = lock(&self.state);
        let zone = state
            .zones
            .get(&normalize_name(zone))
            .unwrap_or_else(|| panic!("the Dyn server does not serve {zone}"));
        let mut sets: BTreeMap<(String, RecordType), RecordSet> = BTreeMap::new();
        for record in zone.records.values() {
            let set = sets
                .entry((record.fqdn.clone(), record.rtype))
                .or_insert_with(|| RecordSet {
                    name: record.fqdn.clone(),
                    rtype: record.rtype,
                    ttl: record.ttl,
                    values: BTreeSet::new(),
                });
            set.ttl = set.ttl.min(record.ttl);
            set.values.insert(record.value.clone());
        }
        sets.into_values().collect()
    }

    /// The zone's serial (bumped by each publish).
    pub fn serial(&self, zone: &str) -> u32 {
        lock(&self.state)
            .zones
            .get(&normalize_name(zone))
            .map(|z| z.serial)
            .unwrap_or(0)
    }

    /// How many sessions are logged in.
    pub fn live_sessions(&self) -> usize {
        lock(&self.state).sessions.len()
    }

    /// Ends every session (with its pending changes), as the service did
    /// after an hour of inactivity: their tokens are refused from now on.
    pub fn expire_sessions(&self) {
        lock(&self.state).sessions.clear();
    }

    /// Answers `requests` more requests that carry a token, then forgets
    /// every session just before the next one: a session that dies in the
    /// middle of a pass.
    pub fn expire_sessions_after(&self, requests: usize) {
        lock(&self.state).expire_after = Some(requests);
    }

    /// From now on, each publish answers `307` to `/REST/Job/<id>/`, which
    /// answers `incomplete` to `polls` GETs and then the publish's answer
    /// (the zone is published at once either way). 0: answer at once.
    pub fn publish_as_job(&self, polls: u32) {
        lock(&self.state).publish_polls = polls;
    }
}

impl Drop for DynServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn envelope(status: &str, data: Value, job_id: u64, msgs: Vec<Value>) -> Value {
    json!({"status": status, "data": data, "job_id": job_id, "msgs": msgs})
}

fn msg(info: &str, code: Option<&str>, level: &str) -> Value {
    json!({"INFO": info, "SOURCE": if code.is_some() { "BLL" } else { "API-B" },
        "ERR_CD": code, "LVL": level})
}

fn success(job_id: u64, data: Value, info: &str) -> Response {
    (
        StatusCode::OK,
        axum::Json(envelope(
            "success",
            data,
            job_id,
            vec![msg(info, None, "INFO")],
        )),
    )
        .into_response()
}

fn failure(job_id: u64, status: StatusCode, code: &str, info: &str) -> Response {
    (
        status,
        axum::Json(envelope(
            "failure",
            Value::Object(Default::default()),
            job_id,
            vec![msg(info, Some(code), "ERROR")],
        )),
    )
        .into_response()
}

fn record_type(segment: &str) -> Option<RecordType> {
    match segment {
        "ARecord" => Some(RecordType::A),
        "AAAARecord" => Some(RecordType::Aaaa),
        "TXTRecord" => Some(RecordType::Txt),
        _ => None,
    }
}

fn type_segment(rtype: RecordType) -> &'static str {
    match rtype {
        RecordType::A => "ARecord",
        RecordType::Aaaa => "AAAARecord",
        RecordType::Txt => "TXTRecord",
    }
}

fn uri_of(zone: &str, record: &Record) -> String {
    format!(
        "/REST/{}/{zone}/{}/{}",
        type_segment(record.rtype),
        record.fqdn,
        record.id
    )
}

fn record_data(zone: &str, record: &Record) -> Value {
    let rdata = match record.rtype {
        RecordType::A | RecordType::Aaaa => json!({"address": record.value}),
        RecordType::Txt => json!({"txtdata": record.value}),
    };
    json!({"zone": zone, "fqdn": record.fqdn, "record_type": record.rtype.as_str(),
        "record_id": record.id, "rdata": rdata, "ttl": record.ttl})
}

/// `{rdata, ttl}` as a record of `rtype`, or the API's complaint.
fn parse_record(rtype: RecordType, body: &Value) -> Result<(String, u32), String> {
    let value = match rtype {
        RecordType::A => {
            let address = body["rdata"]["address"].as_str().unwrap_or_default();
            address
                .parse::<std::net::Ipv4Addr>()
                .map_err(|_| format!("address: {address:?} is not a valid IPv4 address"))?
                .to_string()
        }
        RecordType::Aaaa => {
            let address = body["rdata"]["address"].as_str().unwrap_or_default();
            address
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("address: {address:?} is not a valid IPv6 address"))?
                .to_string()
        }
        RecordType::Txt => body["rdata"]["txtdata"]
            .as_str()
            .ok_or("txtdata: Missing txtdata")?
            .to_string(),
    };
    let ttl = match &body["ttl"] {
        Value::Null => 0,
        Value::Number(n) => n.as_u64().ok_or("ttl: Must be a number")? as u32,
        Value::String(s) => s.parse().map_err(|_| "ttl: Must be a number")?,
        _ => return Err("ttl: Must be a number".into()),
    };
    Ok((value, if ttl == 0 { ZONE_DEFAULT_TTL } else { ttl }))
}

fn in_zone(fqdn: &str, zone: &str) -> bool {
    fqdn == zone || fqdn.ends_with(&format!(".{zone}"))
}

fn handle(
    state: &Mutex<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = lock(state);
    let token = headers
        .get("Auth-Token")
        .and_then(|t| t.to_str().ok())
        .map(str::to_string);
    if token.is_some() {
        match state.expire_after {
            Some(0) => {
                state.sessions.clear();
                state.expire_after = None;
            }
            Some(n) => state.expire_after = Some(n - 1),
            None => {}
        }
    }
    let auth = match &token {
        None => DynAuth::Missing,
        Some(t) if state.sessions.contains_key(t) => DynAuth::Live,
        Some(_) => DynAuth::Unknown,
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.requests.push(DynRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        auth,
        token: token.clone(),
        body: body.clone(),
    });
    let job_id = state.id();
    let path = uri.path().trim_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').collect();
    if segments.first() != Some(&"REST") || segments.len() < 2 {
        return failure(
            job_id,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "path: Not found",
        );
    }
    if segments[1..] == ["Session"] && method == Method::POST {
        let ok = body["customer_name"] == state.customer.as_str()
            && body["user_name"] == state.user.as_str()
            && body["password"] == state.password.as_str();
        if !ok {
            return failure(
                job_id,
                StatusCode::BAD_REQUEST,
                "INVALID_DATA",
                "login: Credentials you entered did not match those in our database. Please try again",
            );
        }
        state.next_token += 1;
        let token = format!(
            "tok{:04}{:08x}",
            state.next_token,
            job_id.wrapping_mul(2654435761)
        );
        state.sessions.insert(token.clone(), Session::default());
        return success(
            job_id,
            json!({"token": token, "version": "3.7.0"}),
            "login: Login successful",
        );
    }
    let Some(token) = token.filter(|_| auth == DynAuth::Live) else {
        return failure(
            job_id,
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            "login: Bad or expired credentials",
        );
    };
    match (segments[1], &segments[2..]) {
        ("Session", []) => match method {
            Method::DELETE => {
                state.sessions.remove(&token);
                success(job_id, json!({}), "logout: Logout successful")
            }
            _ => success(
                job_id,
                json!({"token": token, "version": "3.7.0"}),
                "isalive: User session is still active",
            ),
        },
        ("Job", [id]) => {
            let Ok(id) = id.parse::<u64>() else {
                return failure(job_id, StatusCode::NOT_FOUND, "NOT_FOUND", "job: Not found");
            };
            match state.jobs.get_mut(&id) {
                None => failure(job_id, StatusCode::NOT_FOUND, "NOT_FOUND", "job: Not found"),
                Some((0, answer)) => {
                    let answer = answer.clone();
                    state.jobs.remove(&id);
                    (StatusCode::OK, axum::Json(answer)).into_response()
                }
                Some((left, _)) => {
                    *left -= 1;
                    (
                        StatusCode::OK,
                        axum::Json(envelope("incomplete", Value::Null, id, vec![])),
                    )
                        .into_response()
                }
            }
        }
        ("Zone", [zone]) => {
            let zone = normalize_name(zone);
            if !state.zones.contains_key(&zone) {
                return failure(
                    job_id,
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "zone: No such zone",
                );
            }
            if method == Method::PUT && body["publish"] == true {
                let ops = state
                    .sessions
                    .get_mut(&token)
                    .and_then(|s| s.pending.remove(&zone))
                    .unwrap_or_default();
                let published = state.zones.get_mut(&zone).expect("checked");
                for op in &ops {
                    op.apply(&mut published.records);
                }
                published.serial += 1;
                let data = json!({"zone": zone, "serial": published.serial,
                    "serial_style": "increment", "zone_type": "Primary"});
                let polls = state.publish_polls;
                if polls > 0 {
                    let answer = envelope(
                        "success",
                        data,
                        job_id,
                        vec![msg("publish: zone published", None, "INFO")],
                    );
                    state.jobs.insert(job_id, (polls, answer));
                    let location = format!("/REST/Job/{job_id}/");
                    return (
                        StatusCode::TEMPORARY_REDIRECT,
                        [(axum::http::header::LOCATION, location)],
                        axum::Json(envelope("incomplete", Value::Null, job_id, vec![])),
                    )
                        .into_response();
                }
                return success(job_id, data, "publish: zone published");
            }
            if method == Method::GET {
                let serial = state.zones[&zone].serial;
                return success(
                    job_id,
                    json!({"zone": zone, "serial": serial, "zone_type": "Primary"}),
                    "get: Your zone",
                );
            }
            failure(
                job_id,
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "zone: Only publish is supported here",
            )
        }
        ("ZoneChanges", [zone]) => {
            let zone = normalize_name(zone);
            match method {
                Method::DELETE => {
                    state.pending(&token, &zone).clear();
                    success(job_id, json!({}), "discard: Zone changes discarded")
                }
                _ => {
                    let ops: Vec<Value> = state
                        .pending(&token, &zone)
                        .iter()
                        .map(Op::describe)
                        .collect();
                    success(job_id, Value::Array(ops), "get: Zone changes")
                }
            }
        }
        ("AllRecord", [zone, rest @ ..]) if rest.len() <= 1 => {
            let zone = normalize_name(zone);
            if !state.zones.contains_key(&zone) {
                return failure(
                    job_id,
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "zone: No such zone",
                );
            }
            let node = rest
                .first()
                .map(|n| normalize_name(n))
                .unwrap_or(zone.clone());
            let uris: Vec<Value> = state
                .view(&zone, &token)
                .values()
                .filter(|r| in_zone(&r.fqdn, &node))
                .map(|r| Value::String(uri_of(&zone, r)))
                .collect();
            if uris.is_empty() && node != zone {
                return failure(
                    job_id,
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "node: Not in zone",
                );
            }
            success(
                job_id,
                Value::Array(uris),
                "get_tree: Here is your zone tree",
            )
        }
        (kind, [zone, fqdn, rest @ ..]) if record_type(kind).is_some() && rest.len() <= 1 => {
            let rtype = record_type(kind).expect("checked");
            let zone = normalize_name(zone);
            let fqdn = normalize_name(fqdn);
            if !state.zones.contains_key(&zone) {
                return failure(
                    job_id,
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "zone: No such zone",
                );
            }
            if !in_zone(&fqdn, &zone) {
                return failure(
                    job_id,
                    StatusCode::BAD_REQUEST,
                    "INVALID_DATA",
                    "name: Name not in zone",
                );
            }
            let view = state.view(&zone, &token);
            let at_node: Vec<&Record> = view
                .values()
                .filter(|r| r.fqdn == fqdn && r.rtype == rtype)
                .collect();
            if let [id] = rest {
                let record = id
                    .parse::<u64>()
                    .ok()
                    .and_then(|id| at_node.iter().find(|r| r.id == id).copied());
                let Some(record) = record.cloned() else {
                    return failure(
                        job_id,
                        StatusCode::NOT_FOUND,
                        "NOT_FOUND",
                        "record: Not found",
                    );
                };
                return match method {
                    Method::GET => {
                        success(job_id, record_data(&zone, &record), "get: Found the record")
                    }
                    Method::DELETE => {
                        state.pending(&token, &zone).push(Op::DeleteOne(record.id));
                        success(
                            job_id,
                            json!({}),
                            "delete: Record will be deleted on zone publish",
                        )
                    }
                    _ => failure(
                        job_id,
                        StatusCode::BAD_REQUEST,
                        "INVALID_REQUEST",
                        "method: Not supported on one record",
                    ),
                };
            }
            match method {
                Method::GET => {
                    if at_node.is_empty() {
                        return failure(
                            job_id,
                            StatusCode::NOT_FOUND,
                            "NOT_FOUND",
                            "node: Not in zone",
                        );
                    }
                    let uris: Vec<Value> = at_node
                        .iter()
                        .map(|r| Value::String(uri_of(&zone, r)))
                        .collect();
                    success(job_id, Value::Array(uris), "detail: Found records")
                }
                Method::POST => match parse_record(rtype, &body) {
                    Err(info) => failure(job_id, StatusCode::BAD_REQUEST, "INVALID_DATA", &info),
                    Ok((value, ttl)) => {
                        let record = Record {
                            id: state.id(),
                            fqdn,
                            rtype,
                            value,
                            ttl,
                        };
                        let data = record_data(&zone, &record);
                        state.pending(&token, &zone).push(Op::Create(record));
                        success(job_id, data, "add: Record added")
                    }
                },
                Method::PUT => {
                    let key = format!("{kind}s");
                    let Some(list) = body[&key].as_array() else {
                        return failure(
                            job_id,
                            StatusCode::BAD_REQUEST,
                            "MISSING_DATA",
                            &format!("{key}: Missing"),
                        );
                    };
                    let mut records = Vec::new();
                    for item in list {
                        match parse_record(rtype, item) {
                            Err(info) => {
                                return failure(
                                    job_id,
                                    StatusCode::BAD_REQUEST,
                                    "INVALID_DATA",
                                    &info,
                                )
                            }
                            Ok((value, ttl)) => records.push(Record {
                                id: state.id(),
                                fqdn: fqdn.clone(),
                                rtype,
                                value,
                                ttl,
                            }),
                        }
                    }
                    let data: Vec<Value> = records.iter().map(|r| record_data(&zone, r)).collect();
                    state.pending(&token, &zone).push(Op::Replace {
                        fqdn,
                        rtype,
                        records,
                    });
                    success(job_id, Value::Array(data), "update: Records replaced")
                }
                Method::DELETE => {
                    if at_node.is_empty() {
                        return failure(
                            job_id,
                            StatusCode::NOT_FOUND,
                            "NOT_FOUND",
                            "node: Not in zone",
                        );
                    }
                    state
                        .pending(&token, &zone)
                        .push(Op::DeleteNode { fqdn, rtype });
                    success(
                        job_id,
                        json!({}),
                        "delete: Records will be deleted on zone publish",
                    )
                }
                _ => failure(
                    job_id,
                    StatusCode::BAD_REQUEST,
                    "INVALID_REQUEST",
                    "method: Not supported",
                ),
            }
        }
        _ => failure(
            job_id,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "path: Not found",
        ),
    }
}
