//! SET_ENV, UNSET_ENV and LIST_ENV: a function's stored environment.

use serde::Deserialize;
use serde_json::{json, Value};

use super::functions::not_found;
use super::{ok, payload, ApiContext, Failure, Handled};
use crate::api::codes::Status;
use crate::store::metadata::Env;

pub(super) fn check_env_keys<'a>(
    keys: impl IntoIterator<Item = &'a String>,
) -> Result<(), Failure> {
    for key in keys {
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Failure(
                Status::BadRequest,
                "bad_request",
                format!("{key:?} is not a valid variable name"),
            ));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct SetEnvRequest {
    name: String,
    vars: Env,
}

pub fn set_env(context: &ApiContext, json: &Value) -> Handled {
    let p: SetEnvRequest = payload(json)?;
    check_env_keys(p.vars.keys())?;
    let env = context
        .deployer
        .update_env(&p.name, |env| env.extend(p.vars.clone()))?;
    ok(json!({ "name": p.name, "keys": env.keys().collect::<Vec<_>>() }))
}

#[derive(Deserialize)]
struct UnsetEnvRequest {
    name: String,
    keys: Vec<String>,
}

pub fn unset_env(context: &ApiContext, json: &Value) -> Handled {
    let p: UnsetEnvRequest = payload(json)?;
    let env = context.deployer.update_env(&p.name, |env| {
        p.keys.iter().for_each(|k| {
            env.remove(k);
        })
    })?;
    ok(json!({ "name": p.name, "keys": env.keys().collect::<Vec<_>>() }))
}

#[derive(Deserialize)]
struct ListEnvRequest {
    name: String,
    #[serde(default)]
    reveal: bool,
}

pub fn list_env(context: &ApiContext, json: &Value) -> Handled {
    let p: ListEnvRequest = payload(json)?;
    let function = context
        .meta
        .function(&p.name)?
        .ok_or_else(|| not_found(&p.name))?;
    let env: serde_json::Map<String, Value> = function
        .env
        .into_iter()
        .map(|(k, v)| (k, json!(if p.reveal { v } else { "********".to_string() })))
        .collect();
    ok(json!({ "name": p.name, "env": env, "revealed": p.reveal }))
}
