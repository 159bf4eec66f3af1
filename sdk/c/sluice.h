/*
 * sluice.h: the C SDK for sluice functions (Guest ABI v1, docs/ABI.md).
 *
 * Header-only; build a function as a WASI reactor module:
 *
 *   clang --target=wasm32-wasi -mexec-model=reactor -O2 -o fn.wasm fn.c
 *
 * A reactor's main() is never run: the runtime calls _initialize once, then
 * the exported handle once per event. Write the handler and name it with
 * SLUICE_HANDLER, which defines that export:
 *
 *   #include "sluice.h"
 *
 *   static int greet(const sluice_event *e) {
 *     sluice_logf(SLUICE_INFO, "event %.*s, attempt %d", (int)e->id.len, e->id.ptr, e->attempt);
 *     if (e->data.len == 0) return sluice_permanent("empty payload");
 *     if (sluice_publish_str("greet.done", "hi") < 0) return sluice_fail(sluice_error());
 *     return sluice_ok_str("greeted");
 *   }
 *   SLUICE_HANDLER(greet)
 *
 * Every host call returns a negative SLUICE_ERR_* code on error
 * (sluice_strerror names it), and sluice_error() then says which call
 * failed and why, as the Go SDK's errors do: publish "greet.audit": denied. Memory the SDK allocates for the event is
 * reused from one event to the next; buffers it returns to the caller
 * (sluice_kv_get, sluice_http) are the caller's to free. An instance is
 * reused for many events, so memory that is never freed grows until the
 * function's memory limit ends the invocation.
 */
#ifndef SLUICE_H
#define SLUICE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLUICE_IMPORT(name) __attribute__((import_module("sluice"), import_name(name)))

SLUICE_IMPORT("event_get") int32_t sluice_host_event_get(int32_t field, void *buf, int32_t buf_len);
SLUICE_IMPORT("event_attempt") int32_t sluice_host_event_attempt(void);
SLUICE_IMPORT("result_set") int32_t sluice_host_result_set(const void *buf, int32_t len);
SLUICE_IMPORT("reason_set") int32_t sluice_host_reason_set(const void *buf, int32_t len);
SLUICE_IMPORT("retry_after") int32_t sluice_host_retry_after(int64_t ms);
SLUICE_IMPORT("log") int32_t sluice_host_log(int32_t level, const void *buf, int32_t len);
SLUICE_IMPORT("publish") int32_t sluice_host_publish(const void *subject, int32_t subject_len, const void *data, int32_t data_len);
SLUICE_IMPORT("http_request") int32_t sluice_host_http_request(const void *method, int32_t method_len, const void *url, int32_t url_len,
                                                               const void *headers, int32_t headers_len, const void *body, int32_t body_len);
SLUICE_IMPORT("http_response_get") int32_t sluice_host_http_response_get(int32_t field, void *buf, int32_t buf_len);
SLUICE_IMPORT("kv_get") int32_t sluice_host_kv_get(const void *key, int32_t key_len, void *buf, int32_t buf_len);
SLUICE_IMPORT("kv_put") int32_t sluice_host_kv_put(const void *key, int32_t key_len, const void *value, int32_t value_len);
SLUICE_IMPORT("kv_delete") int32_t sluice_host_kv_delete(const void *key, int32_t key_len);
SLUICE_IMPORT("seen") int32_t sluice_host_seen(const void *key, int32_t key_len, int64_t ttl_ms);

/* Return codes of a handler (the ABI's return values of handle). */
#define SLUICE_SUCCESS 0
#define SLUICE_FAILURE 1   /* retried on the binding's schedule */
#define SLUICE_PERMANENT 2 /* dead-lettered at once */

/* Error codes of host calls. */
#define SLUICE_ERR_BAD_POINTER (-1)
#define SLUICE_ERR_DENIED (-2)
#define SLUICE_ERR_TOO_LARGE (-3)
#define SLUICE_ERR_FAILED (-4)
#define SLUICE_ERR_NOT_FOUND (-5)
#define SLUICE_ERR_INVALID (-6)

/* Log levels. */
#define SLUICE_DEBUG 0
#define SLUICE_INFO 1
#define SLUICE_WARN 2
#define SLUICE_ERROR 3

/* sluice_bytes is a byte string that is not NUL-terminated. */
typedef struct {
  const char *ptr;
  size_t len;
} sluice_bytes;

/* sluice_event is one delivery of an event. Its strings point into memory
 * the SDK reuses for the next event: copy what must outlive the handler. */
typedef struct {
  sluice_bytes data;     /* payload */
  sluice_bytes subject;  /* subject it was published to */
  sluice_bytes id;       /* event id: the same on every attempt */
  sluice_bytes headers;  /* "Name: value\n" lines, in publish order */
  sluice_bytes binding;  /* "emails" or "user_registered/welcome_email" */
  sluice_bytes function; /* the function's name in runtime.hcl */
  int attempt;           /* 1 for the first delivery */
} sluice_event;

static inline const char *sluice_strerror(int32_t code) {
  switch (code) {
  case SLUICE_ERR_BAD_POINTER: return "bad pointer";
  case SLUICE_ERR_DENIED: return "denied";
  case SLUICE_ERR_TOO_LARGE: return "too large";
  case SLUICE_ERR_FAILED: return "failed";
  case SLUICE_ERR_NOT_FOUND: return "not found";
  case SLUICE_ERR_INVALID: return "invalid argument";
  }
  return code >= 0 ? "ok" : "host error";
}

/* sluice__last_error holds sluice_error's text: one copy however many
 * files include this header (a weak definition). */
__attribute__((weak)) char sluice__last_error[384];

/* sluice_error returns the text of the last error a host call of this SDK
 * returned, naming the call as the Go SDK's errors do: publish
 * "greet.audit": denied; kv_get: not found; http: denied. It stays until
 * the next failing call ("" before any). Fail with it:
 *
 *   if (sluice_publish_str("greet.audit", "hi") < 0) return sluice_fail(sluice_error());
 */
static inline const char *sluice_error(void) { return sluice__last_error; }

/* sluice__failed records rc's text for sluice_error when rc is an error,
 * naming op and, when not NULL, its subject (quoted, cut to 64 bytes), and
 * returns rc. */
static inline int32_t sluice__failed(int32_t rc, const char *op, const char *subject) {
  if (rc >= 0) return rc;
  char *p = sluice__last_error, *end = sluice__last_error + sizeof sluice__last_error;
  p += snprintf(p, (size_t)(end - p), "%s", op);
  if (subject) {
    size_t n = strlen(subject), cut = n > 64 ? 64 : n;
    *p++ = ' ';
    *p++ = '"';
    for (size_t i = 0; i < cut; i++) {
      unsigned char c = (unsigned char)subject[i];
      const char *esc = NULL;
      switch (c) {
      case '"': esc = "\\\""; break;
      case '\\': esc = "\\\\"; break;
      case '\a': esc = "\\a"; break;
      case '\b': esc = "\\b"; break;
      case '\f': esc = "\\f"; break;
      case '\n': esc = "\\n"; break;
      case '\r': esc = "\\r"; break;
      case '\t': esc = "\\t"; break;
      case '\v': esc = "\\v"; break;
      }
      if (esc) p += snprintf(p, (size_t)(end - p), "%s", esc);
      else if (c < 0x20 || c == 0x7f) p += snprintf(p, (size_t)(end - p), "\\x%02x", c);
      else *p++ = (char)c;
    }
    p += snprintf(p, (size_t)(end - p), n > cut ? "\"\xe2\x80\xa6" : "\"");
  }
  const char *name = sluice_strerror(rc);
  if (strcmp(name, "host error") == 0) snprintf(p, (size_t)(end - p), ": host error %d", (int)rc);
  else snprintf(p, (size_t)(end - p), ": %s", name);
  return rc;
}

/* ---- outcomes: return these from the handler ---- */

/* sluice_ok sets the invocation's result (at most the function's
 * max_result_size, 64 KiB by default) and returns SLUICE_SUCCESS. */
static inline int sluice_ok(const void *result, size_t len) {
  if (len > 0 && sluice_host_result_set(result, (int32_t)len) == SLUICE_ERR_TOO_LARGE) {
    static const char msg[] = "sluice: result over max_result_size not recorded";
    sluice_host_log(SLUICE_WARN, msg, (int32_t)sizeof msg - 1);
  }
  return SLUICE_SUCCESS;
}
static inline int sluice_ok_str(const char *result) { return sluice_ok(result, strlen(result)); }

/* sluice_fail sets the failure reason and returns SLUICE_FAILURE: the event
 * is retried on the binding's schedule. */
static inline int sluice_fail(const char *reason) {
  sluice_host_reason_set(reason, (int32_t)strlen(reason));
  return SLUICE_FAILURE;
}

/* sluice_retry_after fails like sluice_fail and asks for the next attempt no
 * sooner than ms milliseconds from now (the retry policy's max still caps it). */
static inline int sluice_retry_after(int64_t ms, const char *reason) {
  sluice_host_retry_after(ms);
  return sluice_fail(reason);
}

/* sluice_permanent sets the reason and returns SLUICE_PERMANENT: the event is
 * dead-lettered at once, without retries. */
static inline int sluice_permanent(const char *reason) {
  sluice_host_reason_set(reason, (int32_t)strlen(reason));
  return SLUICE_PERMANENT;
}

/* sluice_failf, sluice_permanentf: the same with printf formatting (the
 * host keeps 1 KiB of a reason), checked by the compiler as printf's. */
__attribute__((format(printf, 1, 0))) static inline const char *sluice__vformat(const char *fmt, va_list ap) {
  static char buf[1024];
  vsnprintf(buf, sizeof buf, fmt, ap);
  return buf;
}
__attribute__((format(printf, 1, 2))) static inline int sluice_failf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const char *s = sluice__vformat(fmt, ap);
  va_end(ap);
  return sluice_fail(s);
}
__attribute__((format(printf, 1, 2))) static inline int sluice_permanentf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const char *s = sluice__vformat(fmt, ap);
  va_end(ap);
  return sluice_permanent(s);
}

/* ---- logs ---- */

/* sluice_log writes one log line, tagged by the host with the function,
 * binding, event id and attempt. */
static inline void sluice_log(int level, const char *msg) { sluice_host_log(level, msg, (int32_t)strlen(msg)); }
__attribute__((format(printf, 2, 3))) static inline void sluice_logf(int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const char *s = sluice__vformat(fmt, ap);
  va_end(ap);
  sluice_log(level, s);
}

/* ---- environment ---- */

/* sluice_env returns the variable of the function's env in runtime.hcl, or
 * NULL (the guest sees no other environment). */
static inline const char *sluice_env(const char *name) { return getenv(name); }

/* ---- event ---- */

/* sluice_header returns the first value of header name (compared without
 * regard to case) in e, or a value with ptr NULL when there is none. */
static inline sluice_bytes sluice_header(const sluice_event *e, const char *name) {
  sluice_bytes none = {NULL, 0};
  size_t nlen = strlen(name);
  const char *p = e->headers.ptr, *end = e->headers.ptr + e->headers.len;
  while (p && p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *eol = nl ? nl : end;
    if ((size_t)(eol - p) >= nlen + 2 && p[nlen] == ':' && p[nlen + 1] == ' ') {
      size_t i = 0;
      while (i < nlen && ((p[i] | 0x20) == (name[i] | 0x20))) i++;
      if (i == nlen) {
        sluice_bytes v = {p + nlen + 2, (size_t)(eol - p) - nlen - 2};
        return v;
      }
    }
    p = eol + 1;
  }
  return none;
}

/* ---- publish ---- */

/* sluice_publish publishes data to subject, which must match one of the
 * function's publish patterns. Returns 0 or a SLUICE_ERR_* code (then
 * sluice_error() reads publish "SUBJECT": denied, or another reason). */
static inline int32_t sluice_publish(const char *subject, const void *data, size_t len) {
  return sluice__failed(sluice_host_publish(subject, (int32_t)strlen(subject), data, (int32_t)len), "publish", subject);
}
static inline int32_t sluice_publish_str(const char *subject, const char *data) {
  return sluice_publish(subject, data, strlen(data));
}

/* ---- outbound HTTP ---- */

typedef struct {
  int status;    /* HTTP status code */
  char *body;    /* malloc'ed, NUL-terminated (body_len excludes the NUL) */
  size_t body_len;
  char *headers; /* malloc'ed "Name: value\n" lines, NUL-terminated */
} sluice_response;

static inline char *sluice__response_field(int32_t field, size_t *len) {
  int32_t n = sluice_host_http_response_get(field, NULL, 0);
  if (n < 0) n = 0;
  char *buf = malloc((size_t)n + 1);
  if (!buf) return NULL;
  int32_t m = n > 0 ? sluice_host_http_response_get(field, buf, n) : 0;
  if (m < 0) m = 0;
  if (m > n) m = n;
  buf[m] = 0;
  if (len) *len = (size_t)m;
  return buf;
}

/* sluice_http performs one request (method NULL means GET; headers are
 * "Name: value\n" lines or NULL) to a URL under the function's
 * allowed_hosts. On success it returns the status code (any status) and
 * fills resp, whose buffers the caller frees with sluice_response_free;
 * otherwise a SLUICE_ERR_* code. */
static inline int32_t sluice_http(const char *method, const char *url, const char *headers, const void *body,
                                  size_t body_len, sluice_response *resp) {
  if (!method) method = "GET";
  if (!headers) headers = "";
  int32_t rc = sluice_host_http_request(method, (int32_t)strlen(method), url, (int32_t)strlen(url), headers,
                                        (int32_t)strlen(headers), body, (int32_t)body_len);
  if (rc < 0) return sluice__failed(rc, "http", NULL);
  resp->status = rc;
  resp->body = sluice__response_field(0, &resp->body_len);
  resp->headers = sluice__response_field(1, NULL);
  return rc;
}
static inline void sluice_response_free(sluice_response *resp) {
  free(resp->body);
  free(resp->headers);
  resp->body = resp->headers = NULL;
}

/* ---- key-value store (the function's own) ---- */

/* sluice_kv_get stores a malloc'ed, NUL-terminated copy of key's value in
 * *value (its length in *len) and returns 0, or returns SLUICE_ERR_NOT_FOUND
 * or another error code. The caller frees *value. */
static inline int32_t sluice_kv_get(const char *key, char **value, size_t *len) {
  size_t cap = 256;
  for (int i = 0; i < 4; i++) { /* the value may change between calls */
    char *buf = malloc(cap + 1);
    if (!buf) return sluice__failed(SLUICE_ERR_FAILED, "kv_get", NULL);
    int32_t n = sluice_host_kv_get(key, (int32_t)strlen(key), buf, (int32_t)cap);
    if (n < 0) {
      free(buf);
      return sluice__failed(n, "kv_get", NULL);
    }
    if ((size_t)n <= cap) {
      buf[n] = 0;
      *value = buf;
      *len = (size_t)n;
      return 0;
    }
    free(buf);
    cap = (size_t)n;
  }
  return sluice__failed(SLUICE_ERR_FAILED, "kv_get", NULL);
}
static inline int32_t sluice_kv_put(const char *key, const void *value, size_t len) {
  return sluice__failed(sluice_host_kv_put(key, (int32_t)strlen(key), value, (int32_t)len), "kv_put", NULL);
}
static inline int32_t sluice_kv_delete(const char *key) {
  return sluice__failed(sluice_host_kv_delete(key, (int32_t)strlen(key)), "kv_delete", NULL);
}

/* ---- idempotency ---- */

/* sluice_seen records key for ttl_ms milliseconds and returns 0 the first
 * time, 1 when it was recorded before and has not expired, or an error
 * code. Atomic across every instance and node. */
static inline int32_t sluice_seen(const char *key, int64_t ttl_ms) {
  return sluice__failed(sluice_host_seen(key, (int32_t)strlen(key), ttl_ms < 1 ? 1 : ttl_ms), "seen", NULL);
}

/* ---- the handle export ---- */

/* sluice__read_event reads every field into one buffer that is reused (and
 * only grows) from event to event. */
static inline int sluice__read_event(sluice_event *e) {
  static char *buf;
  static size_t cap;
  int32_t sizes[6];
  size_t total = 0;
  for (int f = 0; f < 6; f++) {
    int32_t n = sluice_host_event_get(f, NULL, 0);
    sizes[f] = n < 0 ? 0 : n;
    total += (size_t)sizes[f] + 1;
  }
  if (total > cap) {
    char *grown = realloc(buf, total);
    if (!grown) return -1;
    buf = grown;
    cap = total;
  }
  sluice_bytes *fields[6] = {&e->data, &e->subject, &e->id, &e->headers, &e->binding, &e->function};
  size_t off = 0;
  for (int f = 0; f < 6; f++) {
    int32_t n = sizes[f] > 0 ? sluice_host_event_get(f, buf + off, sizes[f]) : 0;
    if (n < 0) n = 0;
    if (n > sizes[f]) n = sizes[f];
    buf[off + (size_t)n] = 0; /* each field is also NUL-terminated */
    fields[f]->ptr = buf + off;
    fields[f]->len = (size_t)n;
    off += (size_t)sizes[f] + 1;
  }
  e->attempt = sluice_host_event_attempt();
  return 0;
}

/* SLUICE_HANDLER(fn) exports handle, which reads the event and returns
 * fn's code. Use it once per module. */
#define SLUICE_HANDLER(fn)                                                                                             \
  __attribute__((export_name("handle"))) int32_t sluice__handle(void) {                                               \
    sluice_event e;                                                                                                    \
    if (sluice__read_event(&e) != 0) return sluice_fail("sluice: out of memory reading the event");                   \
    return (int32_t)fn(&e);                                                                                            \
  }

#endif
