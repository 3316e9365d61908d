//! One handler per socket API command. Each reads its JSON payload, does the work through
//! the deployer, scheduler or stores, and answers one frame. Errors become frames here and
//! nowhere else.

mod env;
mod functions;
mod invoke;

pub(super) use invoke::stream_frames;
mod logs;
mod metrics;

use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use serde_json::{json, Value};

use super::codes::{Command, Status};
use super::error_frame;
use super::frame::Frame;
use crate::deploy::{DeployError, Deployer};
use crate::registry::{valid_name, Registry};
use crate::scheduler::Scheduler;
use crate::store::metadata::Metadata;
use crate::stream::BodyStream;

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

/// Answers one request: the reply frame, and for a streamed INVOKE the body still to
/// send (`invoke::stream_frames`).
pub fn dispatch(
    context: &ApiContext,
    command: Command,
    request: Frame,
) -> (Frame, Option<Box<BodyStream>>) {
    let started = Instant::now();
    let mut stream = None;
    let result = match command {
        Command::Invoke => invoke::invoke(context, request).map(|(frame, body)| {
            stream = body;
            frame
        }),
        Command::RegisterFunction => functions::register(context, &request.json),
        Command::DeployFunction => functions::deploy(context, request),
        Command::List => functions::list(context),
        Command::Info => functions::info(context, &request.json),
        Command::Rollback => functions::rollback(context, &request.json),
        Command::Delete => functions::delete(context, &request.json),
        Command::SetEnv => env::set_env(context, &request.json),
        Command::UnsetEnv => env::unset_env(context, &request.json),
        Command::ListEnv => env::list_env(context, &request.json),
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
    (frame, stream)
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
