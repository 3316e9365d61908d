//! Checks of the values the client commands share: function names, environment
//! variables and the per-function settings flags of `deploy` and `register`. They fail
//! with usage errors, before anything is sent, with the server's own rules.

use serde_json::{json, Map, Value};

use super::args::Raw;
use super::CliError;
use crate::config::{parse_duration, parse_size};
use crate::registry::valid_name;

/// A function name as the server accepts it.
pub fn function_name(raw: &Raw, name: &str) -> Result<String, CliError> {
    match valid_name(name) {
        true => Ok(name.to_string()),
        false => Err(raw.usage(format!(
            "invalid function name {name:?}: use [a-z0-9][a-z0-9_-]{{0,63}}"
        ))),
    }
}

/// A `KEY=VALUE` pair with a key the server accepts: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn env_pair(raw: &Raw, pair: &str) -> Result<(String, String), CliError> {
    let Some((key, value)) = pair.split_once('=') else {
        return Err(raw.usage(format!("expected KEY=VALUE, got {pair:?}")));
    };
    Ok((env_key(raw, key)?, value.to_string()))
}

pub fn env_key(raw: &Raw, key: &str) -> Result<String, CliError> {
    let valid = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match valid {
        true => Ok(key.to_string()),
        false => Err(raw.usage(format!("{key:?} is not a valid variable name"))),
    }
}

/// The per-function settings flags of `deploy` and `register`, as the `settings` payload.
pub const SETTINGS_FLAGS: &[&str] = &["--timeout", "--max-workers", "--min-warm", "--memory"];

pub fn settings(raw: &Raw) -> Result<Value, CliError> {
    let mut settings = Map::new();
    let timeout = raw.parsed("--timeout", |v| match parse_duration(v)? {
        d if d.is_zero() => Err("must be longer than zero".into()),
        d => Ok(d.as_millis() as u64),
    })?;
    let max_workers = raw.parsed("--max-workers", |v| count(v, 1))?;
    let min_warm = raw.parsed("--min-warm", |v| count(v, 0))?;
    let memory = raw.parsed("--memory", parse_size)?;
    let max_body = raw.parsed("--max-body-size", parse_size)?;
    let max_response = raw.parsed("--max-response-size", parse_size)?;
    if let (Some(min), Some(max)) = (min_warm, max_workers) {
        if min > max {
            return Err(raw.usage(format!(
                "--min-warm {min} must not exceed --max-workers {max}"
            )));
        }
    }
    let fields = [
        ("timeout_ms", timeout.map(|v| json!(v))),
        ("max_workers", max_workers.map(|v| json!(v))),
        ("min_warm", min_warm.map(|v| json!(v))),
        ("memory_limit", memory.map(|v| json!(v))),
        ("max_body_size", max_body.map(|v| json!(v))),
        ("max_response_size", max_response.map(|v| json!(v))),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            settings.insert(key.to_string(), value);
        }
    }
    Ok(Value::Object(settings))
}

/// A whole number between `min` and 1024, the bounds the server's config uses.
pub fn count(v: &str, min: usize) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if (min..=1024).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from {min} to 1024")),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;
    use crate::cli::args::Spec;

    const SPEC: Spec = Spec {
        name: "test",
        help: "",
        values: SETTINGS_FLAGS,
        switches: &[],
        run: |_| Ok(()),
    };

    fn parse(args: &[&str]) -> Raw {
        Raw::parse(&SPEC, args.iter().map(OsString::from).collect()).unwrap()
    }

    #[test]
    fn settings_become_the_payload_fields() {
        assert_eq!(settings(&parse(&[])).unwrap(), json!({}));
        let args = ["--timeout", "2s", "--max-workers", "3", "--memory", "16M"];
        assert_eq!(
            settings(&parse(&args)).unwrap(),
            json!({"timeout_ms": 2000, "max_workers": 3, "memory_limit": 16 << 20})
        );
        for bad in [
            &["--timeout", "0s"][..],
            &["--max-workers", "0"],
            &["--memory", "x"],
            &["--min-warm", "3", "--max-workers", "2"],
        ] {
            assert_eq!(settings(&parse(bad)).unwrap_err().code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn names_and_env_pairs_are_checked() {
        let raw = parse(&[]);
        assert!(function_name(&raw, "hello-1").is_ok());
        assert!(function_name(&raw, "Hello").is_err());
        assert_eq!(
            env_pair(&raw, "A_1=x=y").unwrap(),
            ("A_1".into(), "x=y".into())
        );
        assert!(env_pair(&raw, "1A=x").is_err());
        assert!(env_pair(&raw, "novalue").is_err());
    }
}
