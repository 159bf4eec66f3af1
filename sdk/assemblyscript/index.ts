// The AssemblyScript SDK for sluice functions (Guest ABI v1, docs/ABI.md).
//
// A function exports handle, which runs a handler on the event:
//
//   import { Event, Outcome, ok, permanent, publish, log, Level } from "sluice";
//
//   function greet(e: Event): Outcome {
//     if (e.data.length == 0) return permanent("empty payload");
//     if (publish("greet.done", e.dataString()) < 0) return fail(lastError());
//     return ok("greeted");
//   }
//   export function handle(): i32 { return run(greet); }
//
// sluice builds it with asc --exportStart _initialize (the runtime never
// calls _start) and replaces abort, trace and seed with this SDK's, so the
// module imports nothing from "env" (see sluice_globals.ts).

@external("sluice", "event_get") declare function event_get(field: i32, buf: usize, buf_len: i32): i32;
@external("sluice", "event_attempt") declare function event_attempt(): i32;
@external("sluice", "result_set") declare function result_set(buf: usize, len: i32): i32;
@external("sluice", "reason_set") declare function reason_set(buf: usize, len: i32): i32;
@external("sluice", "retry_after") declare function host_retry_after(ms: i64): i32;
@external("sluice", "log") declare function host_log(level: i32, buf: usize, len: i32): i32;
@external("sluice", "publish") declare function host_publish(subject: usize, subject_len: i32, data: usize, data_len: i32): i32;
@external("sluice", "http_request") declare function http_request(method: usize, method_len: i32, url: usize, url_len: i32,
  headers: usize, headers_len: i32, body: usize, body_len: i32): i32;
@external("sluice", "http_response_get") declare function http_response_get(field: i32, buf: usize, buf_len: i32): i32;
@external("sluice", "kv_get") declare function kv_get(key: usize, key_len: i32, buf: usize, buf_len: i32): i32;
@external("sluice", "kv_put") declare function kv_put(key: usize, key_len: i32, value: usize, value_len: i32): i32;
@external("sluice", "kv_delete") declare function kv_delete(key: usize, key_len: i32): i32;
@external("sluice", "seen") declare function host_seen(key: usize, key_len: i32, ttl_ms: i64): i32;
@external("wasi_snapshot_preview1", "environ_sizes_get") declare function environ_sizes_get(count: usize, size: usize): u16;
@external("wasi_snapshot_preview1", "environ_get") declare function environ_get(environ: usize, buf: usize): u16;

// Error codes of host calls.
export const ERR_BAD_POINTER: i32 = -1;
export const ERR_DENIED: i32 = -2;
export const ERR_TOO_LARGE: i32 = -3;
export const ERR_FAILED: i32 = -4;
export const ERR_NOT_FOUND: i32 = -5;
export const ERR_INVALID: i32 = -6;

export function errorName(code: i32): string {
  switch (code) {
    case ERR_BAD_POINTER: return "bad pointer";
    case ERR_DENIED: return "denied";
    case ERR_TOO_LARGE: return "too large";
    case ERR_FAILED: return "failed";
    case ERR_NOT_FOUND: return "not found";
    case ERR_INVALID: return "invalid argument";
  }
  return code >= 0 ? "ok" : "host error " + code.toString();
}

let lastErrorText = "";

/**
 * The text of the last error a host call of this SDK returned, naming the
 * call as the Go SDK's errors do: `publish "greet.audit": denied`,
 * `kv_get: not found`, `http: denied`. It stays until the next failing
 * call ("" before any): `if (publish(s, d) < 0) return fail(lastError());`
 */
export function lastError(): string { return lastErrorText; }

// failed records rc's text for lastError when rc is an error, and returns rc.
function failed(rc: i32, op: string): i32 {
  if (rc < 0) lastErrorText = op + ": " + errorName(rc);
  return rc;
}

// quoteShort quotes s (escaped as Go's strconv.Quote does for ASCII), cut
// to its first 64 characters: an error names a subject without a long one
// crowding out why it failed.
function quoteShort(s: string): string {
  const cut = s.length > 64 ? 64 : s.length;
  let out = "\"";
  for (let i = 0; i < cut; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x22) out += "\\\"";
    else if (c == 0x5c) out += "\\\\";
    else if (c == 0x07) out += "\\a";
    else if (c == 0x08) out += "\\b";
    else if (c == 0x0c) out += "\\f";
    else if (c == 0x0a) out += "\\n";
    else if (c == 0x0d) out += "\\r";
    else if (c == 0x09) out += "\\t";
    else if (c == 0x0b) out += "\\v";
    else if (c < 0x20 || c == 0x7f) out += "\\x" + (c < 0x10 ? "0" : "") + c.toString(16);
    else out += String.fromCharCode(c);
  }
  return out + (s.length > cut ? "\"\u2026" : "\"");
}

export enum Level { Debug = 0, Info = 1, Warn = 2, Error = 3 }

/** Writes one log line, tagged by the host with the function, binding, event id and attempt. */
export function log(level: Level, msg: string): void {
  const b = String.UTF8.encode(msg);
  host_log(level, changetype<usize>(b), b.byteLength);
}

/** One delivery of an event. */
export class Event {
  id: string = "";
  subject: string = "";
  binding: string = "";
  function: string = "";
  data: Uint8Array = new Uint8Array(0);
  /** "Name: value\n" lines, in publish order. */
  headers: string = "";
  attempt: i32 = 0;

  /** The payload as UTF-8 text. */
  dataString(): string {
    return String.UTF8.decodeUnsafe(this.data.dataStart, this.data.length);
  }

  /** The first value of header name (compared without regard to case), or null. */
  header(name: string): string | null {
    const lines = this.headers.split("\n");
    const want = name.toLowerCase();
    for (let i = 0; i < lines.length; i++) {
      const at = lines[i].indexOf(": ");
      if (at > 0 && lines[i].substring(0, at).toLowerCase() == want) return lines[i].substring(at + 2);
    }
    return null;
  }
}

function field(f: i32): Uint8Array {
  const n = event_get(f, 0, 0);
  if (n <= 0) return new Uint8Array(0);
  const buf = new Uint8Array(n);
  const m = event_get(f, buf.dataStart, n);
  return m >= 0 && m < n ? buf.subarray(0, m) : buf;
}

function text(f: i32): string {
  const b = field(f);
  return String.UTF8.decodeUnsafe(b.dataStart, b.length);
}

/** Reads the current event; run calls it. */
export function readEvent(): Event {
  const e = new Event();
  e.data = field(0);
  e.subject = text(1);
  e.id = text(2);
  e.headers = text(3);
  e.binding = text(4);
  e.function = text(5);
  e.attempt = event_attempt();
  return e;
}

/** What a handler returns: build it with ok, okBytes, fail, retryAfter or permanent. */
export class Outcome {
  constructor(public code: i32, public result: Uint8Array | null, public reason: string, public retryAfterMs: i64) {}
}

/** Success, with result (at most the function's max_result_size). */
export function ok(result: string = ""): Outcome {
  return new Outcome(0, Uint8Array.wrap(String.UTF8.encode(result)), "", -1);
}
export function okBytes(result: Uint8Array): Outcome { return new Outcome(0, result, "", -1); }
/** A failure, retried on the binding's schedule. */
export function fail(reason: string): Outcome { return new Outcome(1, null, reason, -1); }
/** A failure retried no sooner than ms milliseconds from now (the policy's max still caps it). */
export function retryAfter(ms: i64, reason: string): Outcome { return new Outcome(1, null, reason, ms); }
/** A failure that retrying cannot fix: dead-lettered at once. */
export function permanent(reason: string): Outcome { return new Outcome(2, null, reason, -1); }

/** Runs h on the current event and returns the ABI's code: export handle as `return run(h)`. */
export function run(h: (e: Event) => Outcome): i32 {
  const out = h(readEvent());
  if (out.code == 0) {
    const r = out.result;
    if (r !== null && r.length > 0 && result_set(r.dataStart, r.length) == ERR_TOO_LARGE) {
      log(Level.Warn, "sluice: result over max_result_size not recorded");
    }
    return 0;
  }
  const reason = String.UTF8.encode(out.reason);
  reason_set(changetype<usize>(reason), reason.byteLength);
  if (out.code == 1 && out.retryAfterMs >= 0) host_retry_after(out.retryAfterMs);
  return out.code;
}

/**
 * Publishes data to subject (one of the function's publish patterns).
 * Returns 0 or an ERR_* code, and then lastError() reads
 * `publish "SUBJECT": denied` (or another reason).
 */
export function publish(subject: string, data: string): i32 {
  return publishBytes(subject, Uint8Array.wrap(String.UTF8.encode(data)));
}
export function publishBytes(subject: string, data: Uint8Array): i32 {
  const s = String.UTF8.encode(subject);
  const rc = host_publish(changetype<usize>(s), s.byteLength, data.dataStart, data.length);
  return rc < 0 ? failed(rc, "publish " + quoteShort(subject)) : rc;
}

/** The variable of the function's env in runtime.hcl, or null. */
export function env(name: string): string | null {
  const sizes = new Uint32Array(2);
  if (environ_sizes_get(sizes.dataStart, sizes.dataStart + 4) != 0) return null;
  const count = sizes[0];
  const ptrs = new Uint32Array(count);
  const buf = new Uint8Array(sizes[1]);
  if (environ_get(ptrs.dataStart, buf.dataStart) != 0) return null;
  const prefix = name + "=";
  for (let i: u32 = 0; i < count; i++) {
    const start = ptrs[i];
    let end = start;
    while (load<u8>(end) != 0) end++;
    const kv = String.UTF8.decodeUnsafe(start, end - start);
    if (kv.startsWith(prefix)) return kv.substring(prefix.length);
  }
  return null;
}

/** The answer to an HTTP request; status is an ERR_* code when the call failed. */
export class Response {
  status: i32 = 0;
  headers: string = "";
  body: Uint8Array = new Uint8Array(0);
  bodyString(): string { return String.UTF8.decodeUnsafe(this.body.dataStart, this.body.length); }
}

function responseField(f: i32): Uint8Array {
  const n = http_response_get(f, 0, 0);
  if (n <= 0) return new Uint8Array(0);
  const buf = new Uint8Array(n);
  const m = http_response_get(f, buf.dataStart, n);
  return m >= 0 && m < n ? buf.subarray(0, m) : buf;
}

/** Performs one HTTP request to a URL under the function's allowed_hosts. headers: "Name: value\n" lines. */
export function http(method: string, url: string, headers: string = "", body: string = ""): Response {
  const m = String.UTF8.encode(method.length > 0 ? method : "GET");
  const u = String.UTF8.encode(url);
  const h = String.UTF8.encode(headers);
  const b = String.UTF8.encode(body);
  const r = new Response();
  r.status = http_request(changetype<usize>(m), m.byteLength, changetype<usize>(u), u.byteLength,
    changetype<usize>(h), h.byteLength, changetype<usize>(b), b.byteLength);
  if (failed(r.status, "http") >= 0) {
    r.body = responseField(0);
    const hb = responseField(1);
    r.headers = String.UTF8.decodeUnsafe(hb.dataStart, hb.length);
  }
  return r;
}

/** A kvGet answer: code 0 and value, or an ERR_* code (ERR_NOT_FOUND for an absent key). */
export class KVValue {
  constructor(public code: i32, public value: Uint8Array) {}
}

/** The value of key in the function's own key-value store. */
export function kvGet(key: string): KVValue {
  const k = String.UTF8.encode(key);
  let buf = new Uint8Array(256);
  for (let i = 0; i < 4; i++) {
    const n = kv_get(changetype<usize>(k), k.byteLength, buf.dataStart, buf.length);
    if (n < 0) return new KVValue(failed(n, "kv_get"), new Uint8Array(0));
    if (n <= buf.length) return new KVValue(0, buf.subarray(0, n));
    buf = new Uint8Array(n);
  }
  return new KVValue(failed(ERR_FAILED, "kv_get"), new Uint8Array(0));
}
export function kvPut(key: string, value: Uint8Array): i32 {
  const k = String.UTF8.encode(key);
  return failed(kv_put(changetype<usize>(k), k.byteLength, value.dataStart, value.length), "kv_put");
}
export function kvDelete(key: string): i32 {
  const k = String.UTF8.encode(key);
  return failed(kv_delete(changetype<usize>(k), k.byteLength), "kv_delete");
}

/** Records key for ttlMs: 0 the first time, 1 when recorded before and not expired, or an ERR_* code. */
export function seen(key: string, ttlMs: i64): i32 {
  const k = String.UTF8.encode(key);
  return failed(host_seen(changetype<usize>(k), k.byteLength, ttlMs < 1 ? 1 : ttlMs), "seen");
}
