//! `functions env NAME set K=V... | unset K... | list [--reveal]`: a function's stored
//! environment through SET_ENV, UNSET_ENV and LIST_ENV. A change restarts the function's
//! workers on the same version; values are hidden unless `--reveal` asks for them.

use serde_json::{json, Map, Value};

use super::args::{Raw, Spec, Target};
use super::output::{self, field};
use super::{checks, connect, CliError};
use crate::api::codes::Command;

pub const ENV: Spec = Spec {
    name: "env",
    help: HELP,
    values: &[],
    switches: &["--json", "--reveal"],
    run,
};

const HELP: &str = "\
Usage: functions env NAME set K=V [K=V...] [options]
       functions env NAME unset K [K...] [options]
       functions env NAME list [--reveal] [options]

Changes or shows the environment of function NAME. A change restarts its workers on
the same version; in-flight invocations finish on the old ones.

Options:
  --reveal           list: show the values (hidden as ******** otherwise)
  --json             print the server's JSON reply on one line:
                     set/unset {name, keys}; list {name, env: {K: V}, revealed}
";

/// What to do with the environment.
#[derive(Debug, PartialEq)]
enum Action {
    Set(Map<String, Value>),
    Unset(Vec<String>),
    List { reveal: bool },
}

/// A validated `env` command line.
struct Env {
    target: Target,
    json: bool,
    name: String,
    action: Action,
}

fn parse(raw: &Raw) -> Result<Env, CliError> {
    let words = raw.words(2, usize::MAX, "NAME and set, unset or list")?;
    let (name, verb, items) = (words[0], words[1], &words[2..]);
    let action = match verb {
        "set" if !items.is_empty() => {
            let mut vars = Map::new();
            for pair in items {
                let (key, value) = checks::env_pair(raw, pair)?;
                vars.insert(key, Value::String(value));
            }
            Action::Set(vars)
        }
        "unset" if !items.is_empty() => Action::Unset(
            items
                .iter()
                .map(|k| checks::env_key(raw, k))
                .collect::<Result<_, _>>()?,
        ),
        "list" if items.is_empty() => Action::List {
            reveal: raw.has("--reveal"),
        },
        "set" => return Err(raw.usage("expected at least one K=V after set")),
        "unset" => return Err(raw.usage("expected at least one K after unset")),
        "list" => return Err(raw.usage("list takes no arguments")),
        other => return Err(raw.usage(format!("expected set, unset or list, got {other:?}"))),
    };
    if raw.has("--reveal") && !matches!(action, Action::List { .. }) {
        return Err(raw.usage("--reveal goes with list"));
    }
    Ok(Env {
        target: raw.target(),
        json: raw.has("--json"),
        name: checks::function_name(raw, name)?,
        action,
    })
}

fn run(raw: Raw) -> Result<(), CliError> {
    let env = parse(&raw)?;
    let (command, payload) = match env.action {
        Action::Set(vars) => (Command::SetEnv, json!({ "name": env.name, "vars": vars })),
        Action::Unset(keys) => (Command::UnsetEnv, json!({ "name": env.name, "keys": keys })),
        Action::List { reveal } => (
            Command::ListEnv,
            json!({ "name": env.name, "reveal": reveal }),
        ),
    };
    let reply = connect::request(&env.target, command, payload, Vec::new())?;
    output::reply(env.json, &reply.json, |reply| match command {
        Command::ListEnv => list_text(reply),
        _ => keys_text(reply),
    })
}

/// `K=V` lines, one per variable.
fn list_text(reply: &Value) -> String {
    let vars = reply["env"].as_object().into_iter().flatten();
    vars.map(|(k, v)| format!("{k}={}\n", v.as_str().unwrap_or_default()))
        .collect()
}

/// `hello: env keys A B` after a change.
fn keys_text(reply: &Value) -> String {
    let keys: Vec<String> = reply["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(field)
        .collect();
    match keys.is_empty() {
        true => format!("{}: env is empty", field(&reply["name"])),
        false => format!("{}: env keys {}", field(&reply["name"]), keys.join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn parse_args(args: &[&str]) -> Result<Env, CliError> {
        let args = args.iter().map(OsString::from).collect();
        parse(&Raw::parse(&ENV, args)?)
    }

    #[test]
    fn verbs_parse_into_actions() {
        let set = parse_args(&["f", "set", "A=1", "B=x=y"]).unwrap();
        let vars = json!({"A": "1", "B": "x=y"}).as_object().cloned().unwrap();
        assert_eq!(set.action, Action::Set(vars));
        let unset = parse_args(&["f", "unset", "A"]).unwrap();
        assert_eq!(unset.action, Action::Unset(vec!["A".into()]));
        let list = parse_args(&["f", "list", "--reveal"]).unwrap();
        assert_eq!(list.action, Action::List { reveal: true });

        for bad in [
            &["f"][..],
            &["f", "set"],
            &["f", "set", "1A=x"],
            &["f", "unset", "A=1"],
            &["f", "list", "A"],
            &["f", "show"],
            &["f", "set", "A=1", "--reveal"],
        ] {
            assert_eq!(parse_args(bad).err().map(|e| e.code()), Some(2), "{bad:?}");
        }
    }

    #[test]
    fn human_output_is_one_variable_a_line() {
        let reply = json!({"name": "f", "env": {"A": "********", "B": "2"}, "revealed": false});
        assert_eq!(list_text(&reply), "A=********\nB=2\n");
        assert_eq!(
            keys_text(&json!({"name": "f", "keys": ["A"]})),
            "f: env keys A"
        );
    }
}
