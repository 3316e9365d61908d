//! `functions invoke NAME`: one INVOKE through the socket. The function's response body
//! goes to stdout byte for byte; `-i` puts the status line and headers on stderr, so
//! stdout stays exactly the body. An HTTP status of 400 or more exits with code 3.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::args::{Raw, Spec, Target};
use super::{checks, connect, output, CliError};
use crate::api::codes::Command;

pub const INVOKE: Spec = Spec {
    name: "invoke",
    help: HELP,
    values: &["--method", "--path", "--header", "--data"],
    switches: &["-i", "--include"],
    run,
};

const HELP: &str = "\
Usage: functions invoke NAME [options]

Calls function NAME as `METHOD /functions/NAME[PATH]` would over HTTP and writes the
response body to stdout, byte for byte. Exits 3 when the status is 400 or more.

Options:
  --method M         HTTP method (default: POST with a body, else GET)
  --path P           sub-path and/or query after /functions/NAME: /tasks/1?x=1
  --header 'K: V'    request header (repeatable)
  --data STR         request body: STR itself, @FILE for a file's bytes, - for stdin
  -i, --include      print `HTTP <status>` and the response headers to stderr
";

/// Where the request body comes from.
#[derive(Debug, PartialEq)]
enum Body {
    None,
    Text(Vec<u8>),
    File(PathBuf),
    Stdin,
}

/// A validated `invoke` command line.
#[derive(Debug)]
struct Invoke {
    target: Target,
    name: String,
    method: Option<String>,
    path: String,
    headers: Vec<(String, String)>,
    body: Body,
    include: bool,
}

fn parse(raw: &Raw) -> Result<Invoke, CliError> {
    let name = raw.words(1, 1, "one function NAME")?[0];
    let method = raw.parsed("--method", |m| {
        let token = !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-');
        token
            .then(|| m.to_ascii_uppercase())
            .ok_or_else(|| "expected a method name like GET or POST".into())
    })?;
    let path = raw
        .parsed("--path", |p| {
            match p.starts_with('/') || p.starts_with('?') {
                true => Ok(p.to_string()),
                false => Err("expected a sub-path or query starting with / or ?".into()),
            }
        })?
        .unwrap_or_default();
    let mut headers = Vec::new();
    for line in raw.values("--header")? {
        let header = line.split_once(':').map(|(k, v)| (k.trim(), v.trim()));
        let Some((key, value)) =
            header.filter(|(k, _)| !k.is_empty() && !k.contains(char::is_whitespace))
        else {
            return Err(raw.usage(format!("expected --header 'Name: value', got {line:?}")));
        };
        headers.push((key.to_string(), value.to_string()));
    }
    Ok(Invoke {
        target: raw.target(),
        name: checks::function_name(raw, name)?,
        method,
        path,
        headers,
        body: raw.os_value("--data").map_or(Body::None, body),
        include: raw.has("-i") || raw.has("--include"),
    })
}

fn body(data: &OsStr) -> Body {
    let bytes = data.as_bytes();
    match bytes.first() {
        Some(b'-') if bytes.len() == 1 => Body::Stdin,
        Some(b'@') => Body::File(PathBuf::from(OsStr::from_bytes(&bytes[1..]))),
        _ => Body::Text(bytes.to_vec()),
    }
}

fn run(raw: Raw) -> Result<(), CliError> {
    let invoke = parse(&raw)?;
    let body = match invoke.body {
        Body::None => Vec::new(),
        Body::Text(bytes) => bytes,
        Body::File(path) => std::fs::read(&path).map_err(|e| CliError::Read(path, e))?,
        Body::Stdin => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| CliError::Read("stdin".into(), e))?;
            bytes
        }
    };
    let method = invoke
        .method
        .unwrap_or_else(|| if body.is_empty() { "GET" } else { "POST" }.into());
    let payload = json!({
        "name": invoke.name,
        "method": method,
        "path": invoke.path,
        "headers": invoke.headers,
        "stream": true,
    });
    let (mut client, reply) = connect::request_on(&invoke.target, Command::Invoke, payload, body)?;

    let status = reply.json["status"].as_u64().unwrap_or(0);
    let error_code = reply.json["error_code"].as_str().map(String::from);
    if invoke.include {
        let head = head(&reply.json);
        let _ = std::io::stderr().write_all(head.as_bytes());
    }
    output::stdout(&reply.raw)?;
    // A streamed body: write each chunk as it comes. A closed stdout (`| head`) ends
    // the call quietly; dropping the connection cancels the function's stream.
    if reply.json["streaming"] == true {
        loop {
            let frame = client.next_reply().map_err(CliError::Client)?;
            if !output::stdout_open(&frame.raw)? {
                return Ok(());
            }
            if frame.json["end"] == true {
                if let Some(code) = frame.json["error"]["code"].as_str() {
                    return Err(CliError::StreamCut {
                        name: invoke.name,
                        code: code.to_string(),
                        message: output::field(&frame.json["error"]["message"]),
                    });
                }
                break;
            }
        }
    }
    match status {
        0..=399 => Ok(()),
        status => Err(CliError::Function {
            name: invoke.name,
            status: status as u16,
            error_code,
        }),
    }
}

/// `HTTP 200`, then one `name: value` line per header, then the invocation facts the
/// HTTP gateway sends as headers.
fn head(reply: &Value) -> String {
    let mut head = format!("HTTP {}\n", output::field(&reply["status"]));
    for pair in reply["headers"].as_array().into_iter().flatten() {
        head.push_str(&format!(
            "{}: {}\n",
            output::field(&pair[0]),
            output::field(&pair[1])
        ));
    }
    head.push_str(&format!(
        "x-invocation-id: {}\nx-cold-start: {}\n",
        output::field(&reply["invocation_id"]),
        output::field(&reply["cold"])
    ));
    head
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn parse_args(args: &[&str]) -> Result<Invoke, CliError> {
        let args = args.iter().map(OsString::from).collect();
        parse(&Raw::parse(&INVOKE, args)?)
    }

    #[test]
    fn data_sources_are_told_apart() {
        assert_eq!(body(OsStr::new("-")), Body::Stdin);
        assert_eq!(body(OsStr::new("@in.bin")), Body::File("in.bin".into()));
        assert_eq!(body(OsStr::new("-x")), Body::Text(b"-x".to_vec()));
        assert_eq!(body(OsStr::new("")), Body::Text(Vec::new()));
    }

    #[test]
    fn flags_validate_into_the_request() {
        let args = [
            "f",
            "--method",
            "put",
            "--path",
            "/a?b=1",
            "--header",
            "X-A: 1: 2",
        ];
        let invoke = parse_args(&args).unwrap();
        assert_eq!(invoke.method.as_deref(), Some("PUT"));
        assert_eq!(invoke.path, "/a?b=1");
        assert_eq!(invoke.headers, [("X-A".to_string(), "1: 2".to_string())]);
        assert_eq!(invoke.body, Body::None);

        for bad in [
            &["f", "--path", "tasks"][..],
            &["f", "--header", "no colon"],
            &["f", "--method", "GE T"],
            &["F"],
            &[],
            &["f", "g"],
        ] {
            let err = parse_args(bad).unwrap_err();
            assert_eq!(err.code(), 2, "{bad:?}: {err}");
        }
    }

    #[test]
    fn head_lists_status_headers_and_invocation_facts() {
        let reply = json!({"status": 201, "headers": [["content-type", "text/plain"]],
            "invocation_id": "abc", "cold": true});
        assert_eq!(
            head(&reply),
            "HTTP 201\ncontent-type: text/plain\nx-invocation-id: abc\nx-cold-start: true\n"
        );
    }
}
