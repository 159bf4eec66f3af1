//! The Rust SDK for sluice functions (Guest ABI v1, docs/ABI.md), with no
//! dependencies beyond std.
//!
//! A function is a `cdylib` crate for `wasm32-wasi` (`wasm32-wasip1` on
//! Rust 1.78 and later) that names its handler with [`handler!`]:
//!
//! ```ignore
//! use sluice::{Event, Error};
//!
//! fn greet(e: &Event) -> Result<Vec<u8>, Error> {
//!     sluice::log(sluice::Level::Info, &format!("attempt {}", e.attempt));
//!     sluice::publish("greet.done", &e.data)?;
//!     Ok(b"greeted".to_vec())
//! }
//! sluice::handler!(greet);
//! ```
//!
//! The runtime never calls `main` or `_start`: it calls the exported
//! `handle` once per event, in an instance reused for later events.

use std::fmt;
use std::time::Duration;

mod host {
    #[link(wasm_import_module = "sluice")]
    extern "C" {
        pub fn event_get(field: i32, buf: *mut u8, buf_len: i32) -> i32;
        pub fn event_attempt() -> i32;
        pub fn result_set(buf: *const u8, len: i32) -> i32;
        pub fn reason_set(buf: *const u8, len: i32) -> i32;
        pub fn retry_after(ms: i64) -> i32;
        pub fn log(level: i32, buf: *const u8, len: i32) -> i32;
        pub fn publish(subject: *const u8, subject_len: i32, data: *const u8, data_len: i32) -> i32;
        pub fn http_request(
            method: *const u8, method_len: i32, url: *const u8, url_len: i32,
            headers: *const u8, headers_len: i32, body: *const u8, body_len: i32,
        ) -> i32;
        pub fn http_response_get(field: i32, buf: *mut u8, buf_len: i32) -> i32;
        pub fn kv_get(key: *const u8, key_len: i32, buf: *mut u8, buf_len: i32) -> i32;
        pub fn kv_put(key: *const u8, key_len: i32, value: *const u8, value_len: i32) -> i32;
        pub fn kv_delete(key: *const u8, key_len: i32) -> i32;
        pub fn seen(key: *const u8, key_len: i32, ttl_ms: i64) -> i32;
    }
}

/// One delivery of an event.
#[derive(Debug, Clone, Default)]
pub struct Event {
    /// The event id: the publisher's Nats-Msg-Id, or the stream sequence.
    pub id: String,
    /// The subject the event was published to.
    pub subject: String,
    /// The binding delivering it: "emails" or "user_registered/welcome_email".
    pub binding: String,
    /// The function's name in runtime.hcl.
    pub function: String,
    /// The payload.
    pub data: Vec<u8>,
    /// The headers, names as published, values in publish order.
    pub headers: Vec<(String, String)>,
    /// The attempt number, 1 for the first delivery.
    pub attempt: i32,
}

impl Event {
    /// The first value of header `name` (compared without regard to case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What a host call or a handler failed with. A host call's error holds
/// the call it was, as its text shows (the Go SDK's errors read the same):
/// `publish "greet.audit": denied`, `kv_get: not found`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not allowed by the function's configuration.
    Denied(String),
    /// A value is over its limit.
    TooLarge(String),
    /// The host could not do it; retrying later may work.
    Failed(String),
    /// An argument is malformed.
    Invalid(String),
    /// No such key.
    NotFound(String),
    /// A failure of the handler, retried on the binding's schedule.
    Message(String),
    /// A failure retried no sooner than the delay (see [`retry_after`]).
    RetryAfter(Duration, String),
    /// A failure that retrying cannot fix: dead-lettered at once (see [`permanent`]).
    Permanent(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Denied(op) => write!(f, "{}: denied", op),
            Error::TooLarge(op) => write!(f, "{}: too large", op),
            Error::Failed(op) => write!(f, "{}: failed", op),
            Error::Invalid(op) => write!(f, "{}: invalid argument", op),
            Error::NotFound(op) => write!(f, "{}: not found", op),
            Error::Message(m) | Error::RetryAfter(_, m) | Error::Permanent(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(s: String) -> Self { Error::Message(s) }
}

impl From<&str> for Error {
    fn from(s: &str) -> Self { Error::Message(s.to_string()) }
}

/// A permanent failure: the event is dead-lettered at once, no retries.
pub fn permanent(reason: impl Into<String>) -> Error { Error::Permanent(reason.into()) }

/// A failure whose next attempt comes no sooner than `delay` from now
/// (the retry policy's max still caps it).
pub fn retry_after(delay: Duration, reason: impl Into<String>) -> Error { Error::RetryAfter(delay, reason.into()) }

fn code(op: &str, rc: i32) -> Result<i32, Error> {
    let op = op.to_string();
    match rc {
        rc if rc >= 0 => Ok(rc),
        -2 => Err(Error::Denied(op)),
        -3 => Err(Error::TooLarge(op)),
        -5 => Err(Error::NotFound(op)),
        -6 => Err(Error::Invalid(op)),
        _ => Err(Error::Failed(op)),
    }
}

/// `s` quoted, cut to its first 64 bytes: an error names a subject without
/// a long one crowding out why it failed.
fn quote_short(s: &str) -> String {
    if s.len() <= 64 {
        return format!("{:?}", s);
    }
    let mut end = 64;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}\u{2026}", &s[..end])
}

/// Log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level { Debug = 0, Info = 1, Warn = 2, Error = 3 }

/// Writes one log line, tagged by the host with the function, binding,
/// event id and attempt.
pub fn log(level: Level, msg: &str) {
    unsafe { host::log(level as i32, msg.as_ptr(), msg.len() as i32) };
}

/// The variable `name` of the function's env in runtime.hcl (the guest
/// sees no other environment).
pub fn env(name: &str) -> Option<String> { std::env::var(name).ok() }

/// Publishes `data` to `subject`, which must match one of the function's
/// publish patterns. Returns once the broker acknowledged it when a stream
/// captures the subject.
pub fn publish(subject: &str, data: &[u8]) -> Result<(), Error> {
    let rc = unsafe { host::publish(subject.as_ptr(), subject.len() as i32, data.as_ptr(), data.len() as i32) };
    if rc < 0 {
        return code(&format!("publish {}", quote_short(subject)), rc).map(|_| ());
    }
    Ok(())
}

/// The answer to an HTTP request.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

fn response_field(field: i32) -> Vec<u8> {
    let n = unsafe { host::http_response_get(field, std::ptr::null_mut(), 0) };
    if n <= 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; n as usize];
    let m = unsafe { host::http_response_get(field, buf.as_mut_ptr(), n) };
    buf.truncate(m.clamp(0, n) as usize);
    buf
}

fn parse_headers(s: &str) -> Vec<(String, String)> {
    s.lines()
        .filter_map(|l| l.split_once(": ").map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// Performs one HTTP request to a URL under the function's allowed_hosts
/// and returns the response, whatever its status.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, Error> {
    let method = if method.is_empty() { "GET" } else { method };
    let mut hdr = String::new();
    for (k, v) in headers {
        hdr.push_str(k);
        hdr.push_str(": ");
        hdr.push_str(v);
        hdr.push('\n');
    }
    let rc = unsafe { host::http_request(method.as_ptr(), method.len() as i32, url.as_ptr(), url.len() as i32,
            hdr.as_ptr(), hdr.len() as i32, body.as_ptr(), body.len() as i32)
    };
    let status = code("http", rc)?;
    Ok(Response {
        status: status as u16,
        headers: parse_headers(&String::from_utf8_lossy(&response_field(1))),
        body: response_field(0),
    })
}

/// The value of `key` in the function's own key-value store.
pub fn kv_get(key: &str) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; 256];
    for _ in 0..4 {
        let n = code("kv_get", unsafe { host::kv_get(key.as_ptr(), key.len() as i32, buf.as_mut_ptr(), buf.len() as i32) })?
            as usize;
        if n <= buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        buf = vec![0u8; n];
    }
    Err(Error::Failed("kv_get".to_string()))
}

/// Sets `key` to `value` (at most 1 MiB) in the function's key-value store.
pub fn kv_put(key: &str, value: &[u8]) -> Result<(), Error> {
    code("kv_put", unsafe { host::kv_put(key.as_ptr(), key.len() as i32, value.as_ptr(), value.len() as i32) }).map(|_| ())
}

/// Removes `key` (absent keys too) from the function's key-value store.
pub fn kv_delete(key: &str) -> Result<(), Error> {
    code("kv_delete", unsafe { host::kv_delete(key.as_ptr(), key.len() as i32) }).map(|_| ())
}

/// Records `key` for `ttl` and reports whether it had been recorded before
/// and not expired: false the first time. Atomic across instances and nodes.
pub fn seen(key: &str, ttl: Duration) -> Result<bool, Error> {
    let ms = (ttl.as_millis().max(1)).min(366 * 24 * 3600 * 1000) as i64;
    code("seen", unsafe { host::seen(key.as_ptr(), key.len() as i32, ms) }).map(|rc| rc == 1)
}

fn field(f: i32) -> Vec<u8> {
    let n = unsafe { host::event_get(f, std::ptr::null_mut(), 0) };
    if n <= 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; n as usize];
    let m = unsafe { host::event_get(f, buf.as_mut_ptr(), n) };
    buf.truncate(m.clamp(0, n) as usize);
    buf
}

fn text(f: i32) -> String { String::from_utf8_lossy(&field(f)).into_owned() }

/// Reads the current event. [`handler!`] calls it.
pub fn read_event() -> Event {
    Event {
        data: field(0),
        subject: text(1),
        id: text(2),
        headers: parse_headers(&text(3)),
        binding: text(4),
        function: text(5),
        attempt: unsafe { host::event_attempt() },
    }
}

/// Runs `h` on the current event and turns its outcome into the ABI's
/// return code. [`handler!`] calls it. WASI targets abort on panic: a panic
/// ends the invocation as a trap, its message logged from stderr.
pub fn run(h: fn(&Event) -> Result<Vec<u8>, Error>) -> i32 {
    let e = read_event();
    let outcome = h(&e);
    match outcome {
        Ok(result) => {
            if !result.is_empty() && unsafe { host::result_set(result.as_ptr(), result.len() as i32) } == -3 {
                log(Level::Warn, "sluice: result over max_result_size not recorded");
            }
            0
        }
        Err(err) => {
            let reason = err.to_string();
            unsafe { host::reason_set(reason.as_ptr(), reason.len() as i32) };
            match err {
                Error::Permanent(_) => 2,
                Error::RetryAfter(d, _) => {
                    unsafe { host::retry_after(d.as_millis().min(i64::MAX as u128) as i64) };
                    1
                }
                _ => 1,
            }
        }
    }
}

/// Exports `handle`, calling `$h: fn(&Event) -> Result<Vec<u8>, Error>`.
#[macro_export]
macro_rules! handler {
    ($h:path) => {
        #[no_mangle]
        pub extern "C" fn handle() -> i32 { $crate::run($h) }
    };
}
