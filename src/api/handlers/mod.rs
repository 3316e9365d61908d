//! One handler per socket API command. Each reads its JSON payload, does the work through
//! the deployer, scheduler or stores, and answers one frame. Errors become frames here and
//! nowhere else.

mod logs;
mod metrics;

use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use serde_json::{json, Value};

use super::codes::{Command, Status};
use super::error_frame;
use super::frame::Frame;
use crate::deploy::{DeployError, Deployer, Upload};
use crate::gateway::answer;
use crate::gateway::request::{has_dot_segment, new_invocation_id};
use crate::observe;
use crate::registry::{valid_name, Registry, Route};
use crate::scheduler::{Invocation, InvokeError, Scheduler};
use crate::store::catalog::Settings;
use crate::store::metadata::{Env, Metadata};

/// What every handler can reach.
pub struct ApiContext {
    pub scheduler: Scheduler,
    pub registry: Arc<Registry>,
    pub deployer: Arc<Deployer>,
    pub meta: Arc<Metadata>,
    pub started: Instant,
    pub http: Option<String>,
    pub socket: String,
    pub max_body_size: usize,
}

/// A handler's failure: the status and error code to answer with.
pub(super) struct Failure(Status, &'static str, String);

pub(super) type Handled = Result<Frame, Failure>;

impl From<DeployError> for Failure {
    fn from(e: DeployError) -> Failure {
        let message = e.to_string();
        match e {
            DeployError::NotFound(_) | DeployError::UnknownVersion(..) => {
                Failure(Status::NotFound, "not_found", message)
            }
            DeployError::InvalidName(_) | DeployError::Source(..) => {
                Failure(Status::BadRequest, "bad_request", message)
            }
            DeployError::Storage(..) => Failure(Status::Error, "storage", message),
            DeployError::Build(..) => Failure(Status::Error, "build_failed", message),
            DeployError::NoVersion(..) => Failure(Status::Error, "no_version", message),
            DeployError::Store(_) => Failure(Status::Error, "store", message),
        }
    }
}

impl From<crate::store::metadata::StoreError> for Failure {
    fn from(e: crate::store::metadata::StoreError) -> Failure {
        Failure(Status::Error, "store", e.to_string())
    }
}

pub fn dispatch(context: &ApiContext, command: Command, request: Frame) -> Frame {
    let started = Instant::now();
    let result = match command {
        Command::Invoke => invoke(context, request),
        Command::RegisterFunction => register(context, &request.json),
        Command::DeployFunction => deploy(context, request),
        Command::List => list(context),
        Command::Info => info(context, &request.json),
        Command::Rollback => rollback(context, &request.json),
        Command::Delete => delete(context, &request.json),
        Command::SetEnv => set_env(context, &request.json),
        Command::UnsetEnv => unset_env(context, &request.json),
        Command::ListEnv => list_env(context, &request.json),
        Command::GetLogs => logs::get_logs(&request.json),
        Command::GetMetrics => metrics::get_metrics(context, &request.json),
        Command::Status => status(context),
    };
    let frame =
        result.unwrap_or_else(|Failure(status, code, message)| error_frame(status, code, &message));
    let status = Status::from_code(frame.code).map_or("?", Status::name);
    log::info!(
        "socket {} status={status} duration_ms={}",
        command.name(),
        started.elapsed().as_millis()
    );
    frame
}

pub(super) fn ok(json: Value) -> Handled {
    Ok(Frame::new(Status::Ok.code(), json))
}

/// Reads the payload into `T`, answering BAD_REQUEST when it does not fit.
pub(super) fn payload<'a, T: Deserialize<'a>>(json: &'a Value) -> Result<T, Failure> {
    T::deserialize(json).map_err(|e| {
        Failure(
            Status::BadRequest,
            "bad_request",
            format!("bad payload: {e}"),
        )
    })
}

fn checked_name(name: &str) -> Result<&str, Failure> {
    match valid_name(name) {
        true => Ok(name),
        false => Err(Failure(
            Status::BadRequest,
            "bad_request",
            format!("invalid function name {name:?}"),
        )),
    }
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct InvokeRequest {
    name: String,
    method: Option<String>,
    #[serde(default)]
    path: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
}

fn invoke(context: &ApiContext, request: Frame) -> Handled {
    let received = Instant::now();
    let p: InvokeRequest = payload(&request.json)?;
    let name = checked_name(&p.name)?;
    if !p.path.is_empty() && !p.path.starts_with('/') && !p.path.starts_with('?') {
        return Err(Failure(
            Status::BadRequest,
            "bad_request",
            "path must start with / or ?".into(),
        ));
    }
    // The same rules as over HTTP: the function must see the path that was asked for.
    let route = p.path.split('?').next().unwrap_or("");
    if has_dot_segment(route) || p.path.chars().any(|c| c.is_control() || c == ' ') {
        let message = "path must not hold `.` or `..` segments, spaces or control characters";
        return Err(Failure(Status::BadRequest, "bad_request", message.into()));
    }
    if request.raw.len() > context.max_body_size {
        let message = format!(
            "the body is larger than max_body_size ({} bytes)",
            context.max_body_size
        );
        return Err(Failure(Status::BadRequest, "payload_too_large", message));
    }
    let method = p.method.unwrap_or_else(|| {
        if request.raw.is_empty() {
            "GET"
        } else {
            "POST"
        }
        .into()
    });
    if !answer::is_token(&method) {
        return Err(Failure(
            Status::BadRequest,
            "bad_request",
            format!("{method:?} is not an HTTP method"),
        ));
    }
    if let Some((name, _)) = p.headers.iter().find(|(n, v)| !answer::safe_header(n, v)) {
        return Err(Failure(
            Status::BadRequest,
            "bad_request",
            format!("header {name:?} has a bad name or value"),
        ));
    }
    let id = new_invocation_id();
    let mut headers: Vec<(String, String)> = p
        .headers
        .into_iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("x-invocation-id"))
        .collect();
    headers.push(("x-invocation-id".into(), id.clone()));
    let invocation = Invocation {
        id: id.clone(),
        function: name.to_string(),
        method: method.to_ascii_uppercase(),
        url: format!("http://localhost/functions/{name}{}", p.path),
        headers,
        body: request.raw,
        received,
    };
    let completed = context.scheduler.invoke(&invocation);
    let facts = json!({ "invocation_id": id, "cold": completed.facts.cold, "version": completed.facts.version,
        "duration_ms": completed.duration.as_millis() as u64 });
    let (response, error_code) = match completed.result {
        Ok(response) => (answer::Answer::from_function(response), None),
        Err(InvokeError::NotFound) => {
            return Err(Failure(
                Status::NotFound,
                "not_found",
                format!("no function named {name}"),
            ))
        }
        Err(InvokeError::Timeout(limit)) => {
            let message = format!(
                "the function did not answer within {} ms",
                limit.as_millis()
            );
            let mut frame = error_frame(Status::Timeout, "timeout", &message);
            merge(&mut frame.json, facts);
            return Ok(frame);
        }
        Err(InvokeError::QueueFull) => {
            return Err(Failure(
                Status::Busy,
                "queue_full",
                "all workers are busy and the queue is full".into(),
            ))
        }
        Err(e) => {
            // The socket is the operator's channel: errors come with their details.
            let answer = answer::error(e, true);
            let code = serde_json::from_slice::<Value>(&answer.body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(String::from));
            (answer, code)
        }
    };
    let mut json =
        json!({ "status": response.status, "headers": response.headers, "error_code": error_code });
    merge(&mut json, facts);
    Ok(Frame::new(Status::Ok.code(), json).with_raw(response.body))
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

#[derive(Deserialize)]
struct RegisterRequest {
    name: String,
    #[serde(default)]
    settings: Settings,
}

fn register(context: &ApiContext, json: &Value) -> Handled {
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

fn deploy(context: &ApiContext, request: Frame) -> Handled {
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

fn list(context: &ApiContext) -> Handled {
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

fn info(context: &ApiContext, json: &Value) -> Handled {
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

fn not_found(name: &str) -> Failure {
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

fn rollback(context: &ApiContext, json: &Value) -> Handled {
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

fn delete(context: &ApiContext, json: &Value) -> Handled {
    let p: Named = payload(json)?;
    context.deployer.delete(&p.name)?;
    observe::forget(&p.name);
    ok(json!({ "name": p.name, "deleted": true }))
}

fn check_env_keys<'a>(keys: impl IntoIterator<Item = &'a String>) -> Result<(), Failure> {
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

fn set_env(context: &ApiContext, json: &Value) -> Handled {
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

fn unset_env(context: &ApiContext, json: &Value) -> Handled {
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

fn list_env(context: &ApiContext, json: &Value) -> Handled {
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

fn status(context: &ApiContext) -> Handled {
    let routes = context.registry.stats();
    let workers: usize = routes
        .iter()
        .filter_map(|r| r.pool.as_ref())
        .map(|p| p.workers)
        .sum();
    ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "uptime_ms": context.started.elapsed().as_millis() as u64,
        "functions": routes.len(),
        "workers": workers,
        "http": context.http,
        "socket": context.socket,
    }))
}
