//! REGISTER_FUNCTION, DEPLOY_FUNCTION, LIST, INFO, ROLLBACK and DELETE.

use serde::Deserialize;
use serde_json::{json, Value};

use super::env::check_env_keys;
use super::invoke::merge;
use super::Named;
use super::{ok, payload, ApiContext, Failure, Handled};
use crate::api::codes::Status;
use crate::api::frame::Frame;
use crate::deploy::Upload;
use crate::observe;
use crate::registry::{Registry, Route};
use crate::store::catalog::Settings;
use crate::store::metadata::Env;

#[derive(Deserialize)]
struct RegisterRequest {
    name: String,
    #[serde(default)]
    settings: Settings,
}

pub fn register(context: &ApiContext, json: &Value) -> Handled {
    let p: RegisterRequest = payload(json)?;
    p.settings
        .validate()
        .map_err(|e| Failure(Status::BadRequest, "bad_request", e))?;
    context.deployer.register(&p.name, &p.settings)?;
    ok(json!({ "name": p.name, "registered": true }))
}

#[derive(Deserialize)]
struct DeployRequest {
    name: String,
    #[serde(default)]
    filename: String,
    env: Option<Env>,
    #[serde(default)]
    settings: Settings,
}

pub fn deploy(context: &ApiContext, request: Frame) -> Handled {
    let p: DeployRequest = payload(&request.json)?;
    p.settings
        .validate()
        .map_err(|e| Failure(Status::BadRequest, "bad_request", e))?;
    if request.raw.is_empty() {
        return Err(Failure(
            Status::BadRequest,
            "bad_request",
            "the frame carries no source".into(),
        ));
    }
    if let Some(env) = &p.env {
        check_env_keys(env.keys())?;
    }
    let upload = Upload {
        name: &p.name,
        filename: &p.filename,
        source: &request.raw,
        env: p.env.clone(),
        settings: p.settings,
    };
    let deployed = context.deployer.deploy_upload(&upload)?;
    ok(serde_json::to_value(deployed).expect("deploy results serialize"))
}

pub fn list(context: &ApiContext) -> Handled {
    let functions: Vec<Value> = context
        .meta
        .functions()?
        .into_iter()
        .map(|f| {
            let (state, pool, error) = route_state(&context.registry, &f.name);
            json!({ "name": f.name, "active_version": f.active_version, "latest_version": f.latest_version,
                "created_at": f.created_at, "state": state, "pool": pool, "error": error })
        })
        .collect();
    ok(json!({ "functions": functions }))
}

/// `(state, pool stats, error)` of a function's route.
fn route_state(registry: &Registry, name: &str) -> (&'static str, Value, Value) {
    match registry.lookup(name) {
        Some(Route::Active(pool)) => ("serving", json!(pool.stats()), Value::Null),
        Some(Route::Failed(error)) => ("failed", Value::Null, json!(error)),
        None => ("registered", Value::Null, Value::Null),
    }
}

pub fn info(context: &ApiContext, json: &Value) -> Handled {
    let p: Named = payload(json)?;
    let function = context
        .meta
        .function(&p.name)?
        .ok_or_else(|| not_found(&p.name))?;
    let versions = context.meta.versions(function.id)?;
    let limits = function.settings.apply(&context.deployer.limits);
    let (state, pool, error) = route_state(&context.registry, &function.name);
    ok(json!({
        "name": function.name,
        "created_at": function.created_at,
        "active_version": function.active_version,
        "latest_version": function.latest_version,
        "state": state,
        "error": error,
        "settings": function.settings,
        "effective": {
            "timeout_ms": limits.invocation_timeout.as_millis() as u64,
            "max_workers": limits.max_workers,
            "min_warm": limits.min_warm,
            "memory_limit": limits.memory_limit,
            "idle_timeout_ms": limits.idle_timeout.as_millis() as u64,
            "queue_depth": limits.queue_depth,
        },
        "env_keys": function.env.keys().collect::<Vec<_>>(),
        "versions": versions,
        "pool": pool,
    }))
}

pub(super) fn not_found(name: &str) -> Failure {
    Failure(
        Status::NotFound,
        "not_found",
        format!("no function named {name}"),
    )
}

#[derive(Deserialize)]
struct RollbackRequest {
    name: String,
    version: Option<i64>,
}

pub fn rollback(context: &ApiContext, json: &Value) -> Handled {
    let p: RollbackRequest = payload(json)?;
    let previous = context
        .meta
        .function(&p.name)?
        .and_then(|f| f.active_version);
    let deployed = context.deployer.rollback(&p.name, p.version)?;
    let mut json = serde_json::to_value(deployed).expect("deploy results serialize");
    merge(&mut json, json!({ "previous_version": previous }));
    ok(json)
}

pub fn delete(context: &ApiContext, json: &Value) -> Handled {
    let p: Named = payload(json)?;
    context.deployer.delete(&p.name)?;
    observe::forget(&p.name);
    ok(json!({ "name": p.name, "deleted": true }))
}
