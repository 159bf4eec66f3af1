// sender (AssemblyScript): the function of the emails queue, as
// examples/emails/sender does it in Go. It "sends" {"to", "template", "id"}
// and reports it by publishing {"id", "to", "from", "template",
// "request_id"} to email.sent, "from" being the SENDER variable of the
// function's env in runtime.hcl.
import { Event, Outcome, ok, fail, permanent, publish, log, Level, env, lastError, run } from "sluice";

// jsonString returns the string member key of the flat JSON object json,
// for the simple escapes only (enough for this example), or null.
function jsonString(json: string, key: string): string | null {
  const pat = "\"" + key + "\"";
  let at = json.indexOf(pat);
  while (at >= 0) {
    let i = skipSpace(json, at + pat.length);
    if (i < json.length && json.charAt(i) == ":") {
      i = skipSpace(json, i + 1);
      if (i >= json.length || json.charAt(i) != "\"") return null;
      let out = "";
      for (i++; i < json.length; i++) {
        let c = json.charAt(i);
        if (c == "\"") return out;
        if (c == "\\") {
          i++;
          if (i >= json.length) return null;
          c = json.charAt(i);
          if (c == "n") c = "\n";
          else if (c == "t") c = "\t";
          else if (c != "\"" && c != "\\" && c != "/") return null;
        }
        out += c;
      }
      return null;
    }
    at = json.indexOf(pat, at + 1);
  }
  return null;
}

function skipSpace(s: string, i: i32): i32 {
  while (i < s.length && (s.charAt(i) == " " || s.charAt(i) == "\t" || s.charAt(i) == "\n" || s.charAt(i) == "\r")) i++;
  return i;
}

function quote(s: string): string {
  let out = "\"";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x22) out += "\\\"";
    else if (c == 0x5c) out += "\\\\";
    else if (c < 0x20) out += "\\u00" + (c < 0x10 ? "0" : "") + c.toString(16);
    else out += s.charAt(i);
  }
  return out + "\"";
}

function send(e: Event): Outcome {
  const json = e.dataString();
  if (!json.trimStart().startsWith("{")) return permanent("invalid email request: not a JSON object");
  const to = jsonString(json, "to");
  if (to === null || to.length == 0) return permanent("invalid email request: missing to");
  const t = jsonString(json, "template");
  const template = t !== null ? t : "";
  const f = env("SENDER");
  const from = f !== null ? f : "";
  log(Level.Info, "sending \"" + template + "\" email from " + from + " to " + to);

  let msg = "{\"id\":" + quote(e.id) + ",\"to\":" + quote(to) + ",\"from\":" + quote(from);
  if (template.length > 0) msg += ",\"template\":" + quote(template);
  const requestID = jsonString(json, "id");
  if (requestID !== null) msg += ",\"request_id\":" + quote(requestID);
  msg += "}";
  const rc = publish("email.sent", msg);
  if (rc < 0) return fail("report sent email: " + lastError());
  return ok("sent to " + to);
}

export function handle(): i32 {
  return run(send);
}
