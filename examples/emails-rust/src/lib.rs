//! sender (Rust): the function of the emails queue, as examples/emails/sender
//! does it in Go. It "sends" {"to", "template", "id"} and reports it by
//! publishing {"id", "to", "from", "template", "request_id"} to email.sent,
//! "from" being the SENDER variable of the function's env in runtime.hcl.

use sluice::{Error, Event};

/// The string member `key` of the flat JSON object `json`, for the simple
/// escapes only: enough for this example, a real JSON parser otherwise.
fn json_string(json: &str, key: &str) -> Option<String> {
    let pat = format!("\"{}\"", key);
    let mut rest = json;
    while let Some(i) = rest.find(&pat) {
        rest = &rest[i + pat.len()..];
        let after = rest.trim_start();
        let after = match after.strip_prefix(':') {
            Some(a) => a,
            None => continue,
        };
        let after = after.trim_start().strip_prefix('"')?;
        let mut out = String::new();
        let mut chars = after.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(out),
                '\\' => match chars.next()? {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    c @ ('"' | '\\' | '/') => out.push(c),
                    _ => return None,
                },
                c => out.push(c),
            }
        }
        return None;
    }
    None
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn send(e: &Event) -> Result<Vec<u8>, Error> {
    let json = std::str::from_utf8(&e.data).map_err(|_| sluice::permanent("invalid email request: not UTF-8"))?;
    if !json.trim_start().starts_with('{') {
        return Err(sluice::permanent("invalid email request: not a JSON object"));
    }
    let to = json_string(json, "to").filter(|t| !t.is_empty())
        .ok_or_else(|| sluice::permanent("invalid email request: missing to"))?;
    let template = json_string(json, "template").unwrap_or_default();
    let from = sluice::env("SENDER").unwrap_or_default();
    sluice::log(sluice::Level::Info, &format!("sending {:?} email from {} to {}", template, from, to));

    let mut msg = format!("{{\"id\":{},\"to\":{},\"from\":{}", quote(&e.id), quote(&to), quote(&from));
    if !template.is_empty() {
        msg.push_str(&format!(",\"template\":{}", quote(&template)));
    }
    if let Some(id) = json_string(json, "id") {
        msg.push_str(&format!(",\"request_id\":{}", quote(&id)));
    }
    msg.push('}');
    sluice::publish("email.sent", msg.as_bytes()).map_err(|err| format!("report sent email: {}", err))?;
    Ok(format!("sent to {}", to).into_bytes())
}

sluice::handler!(send);
