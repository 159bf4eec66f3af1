/*
 * sender (C): the function of the emails queue, as examples/emails/sender
 * does it in Go. It "sends" {"to", "template", "id"} and reports it by
 * publishing {"id", "to", "from", "template", "request_id"} to email.sent,
 * "from" being the SENDER variable of the function's env in runtime.hcl.
 */
#include "sluice.h"

/* json_string finds the string member key of the flat JSON object in json
 * and copies its value, unescaped for the simple escapes, into out.
 * Returns the value's length, or -1 when the member is missing or not a
 * string, or does not fit. Enough for this example; use a real JSON parser
 * for anything else. */
static int json_string(const char *json, const char *key, char *out, size_t cap) {
  size_t klen = strlen(key);
  for (const char *p = json; (p = strchr(p, '"')) != NULL; p++) {
    if (strncmp(p + 1, key, klen) != 0 || p[1 + klen] != '"') continue;
    const char *q = p + 2 + klen;
    while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
    if (*q++ != ':') continue;
    while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
    if (*q++ != '"') return -1;
    size_t n = 0;
    for (; *q && *q != '"'; q++) {
      char c = *q;
      if (c == '\\') {
        c = *++q;
        if (c == 'n') c = '\n';
        else if (c == 't') c = '\t';
        else if (c != '"' && c != '\\' && c != '/') return -1;
      }
      if (n + 1 >= cap) return -1;
      out[n++] = c;
    }
    if (*q != '"') return -1;
    out[n] = 0;
    return (int)n;
  }
  return -1;
}

/* json_quote appends s as a JSON string to out (of size cap, at offset *off). */
static void json_quote(char *out, size_t cap, size_t *off, const char *s) {
  if (*off < cap) out[(*off)++] = '"';
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (*off + 7 >= cap) break;
    if (c == '"' || c == '\\') {
      out[(*off)++] = '\\';
      out[(*off)++] = (char)c;
    } else if (c < 0x20) {
      *off += (size_t)snprintf(out + *off, cap - *off, "\\u%04x", c);
    } else {
      out[(*off)++] = (char)c;
    }
  }
  if (*off < cap) out[(*off)++] = '"';
}

static int send_email(const sluice_event *e) {
  char to[256], tmpl[128], req_id[256], id[256];
  const char *json = e->data.ptr; /* the SDK NUL-terminates every field */
  if (e->data.len == 0 || json[0] != '{') return sluice_permanent("invalid email request: not a JSON object");
  if (json_string(json, "to", to, sizeof to) <= 0) return sluice_permanent("invalid email request: missing to");
  if (json_string(json, "template", tmpl, sizeof tmpl) < 0) tmpl[0] = 0;
  if (json_string(json, "id", req_id, sizeof req_id) < 0) req_id[0] = 0;
  snprintf(id, sizeof id, "%.*s", (int)e->id.len, e->id.ptr);
  const char *from = sluice_env("SENDER");
  if (!from) from = "";
  sluice_logf(SLUICE_INFO, "sending \"%s\" email from %s to %s", tmpl, from, to);

  char msg[2048];
  size_t off = 0;
  off += (size_t)snprintf(msg + off, sizeof msg - off, "{\"id\":");
  json_quote(msg, sizeof msg, &off, id);
  off += (size_t)snprintf(msg + off, sizeof msg - off, ",\"to\":");
  json_quote(msg, sizeof msg, &off, to);
  off += (size_t)snprintf(msg + off, sizeof msg - off, ",\"from\":");
  json_quote(msg, sizeof msg, &off, from);
  if (tmpl[0]) {
    off += (size_t)snprintf(msg + off, sizeof msg - off, ",\"template\":");
    json_quote(msg, sizeof msg, &off, tmpl);
  }
  if (req_id[0]) {
    off += (size_t)snprintf(msg + off, sizeof msg - off, ",\"request_id\":");
    json_quote(msg, sizeof msg, &off, req_id);
  }
  off += (size_t)snprintf(msg + off, sizeof msg - off, "}");
  if (off >= sizeof msg) return sluice_permanent("invalid email request: fields too long");

  int32_t rc = sluice_publish("email.sent", msg, off);
  if (rc < 0) return sluice_failf("report sent email: %s", sluice_error());
  char result[300];
  snprintf(result, sizeof result, "sent to %s", to);
  return sluice_ok_str(result);
}

SLUICE_HANDLER(send_email)
