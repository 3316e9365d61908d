//! Routing of one HTTP request: `/functions/{name}[/rest]` invokes, `GET /health` reports,
//! `GET /metrics` shows the Prometheus metrics (unless `enable_metrics` is off), anything
//! else is 404. Writes one access line per request.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::Instant;

use tiny_http::{Method, Request};

use super::answer::{self, Answer};
use super::request::{self, BodyError};
use super::streaming;
use super::Context;
use crate::observe::escape_controls;
use crate::registry::{valid_name, Route};
use crate::scheduler::InvokeError;

pub fn handle(mut request: Request, context: &Context) {
    let started = Instant::now();
    let id = request::new_invocation_id();
    let method = request.method().clone();
    let url = request.url().to_string();
    let path = url.split('?').next().unwrap_or("").to_string();

    let mut answer = catch_unwind(AssertUnwindSafe(|| {
        // While stopping, only /health answers (503 "stopping", for load balancers).
        if context.stopping.load(Ordering::Acquire) && path != "/health" {
            return answer::shutting_down();
        }
        if let Some(refusal) = request::framing_problem(&request, &path) {
            return answer::refused(refusal);
        }
        route(&mut request, context, &id, &method, &path)
    }))
    .unwrap_or_else(|_| {
        log::error!("gateway panicked invocation={id}");
        answer::internal()
    });

    let function = answer.function.clone();
    let cold = answer.cold;
    let (status, note) = match answer.stream.take() {
        Some(stream) => streaming::deliver(request, answer, stream, &id, context.local_addr.port()),
        None => {
            let status = answer.status;
            let is_head = method == Method::Head;
            if let Err(e) = request.respond(answer.into_response(&id, is_head)) {
                log::debug!("failed to write the response invocation={id}: {e}");
            }
            (status, String::new())
        }
    };
    // Method and path come from the client: escaped, they cannot forge log lines.
    log::info!(
        "{} {} status={status} function={} invocation={id} cold={} duration_ms={}{note}",
        escape_controls(method.as_str()),
        escape_controls(&path),
        function.as_deref().unwrap_or("-"),
        cold.map_or("-", |c| if c { "true" } else { "false" }),
        started.elapsed().as_millis()
    );
}

fn route(
    request: &mut Request,
    context: &Context,
    id: &str,
    method: &Method,
    path: &str,
) -> Answer {
    match (method, path) {
        (Method::Get | Method::Head, "/health") => health(context),
        (Method::Get | Method::Head, "/metrics") if context.enable_metrics => metrics(context),
        (_, p) if p.starts_with("/functions/") => {
            invoke(request, context, id, &p["/functions/".len()..])
        }
        _ => answer::not_found(&format!("no route for {method} {path}")),
    }
}

fn health(context: &Context) -> Answer {
    let stopping = context.stopping.load(Ordering::Acquire);
    let body = serde_json::json!({
        "status": if stopping { "stopping" } else { "ok" },
        "functions": context.registry.stats(),
    });
    Answer::json(if stopping { 503 } else { 200 }, &body)
}

fn metrics(context: &Context) -> Answer {
    let body = crate::metrics::prometheus_text(&context.registry);
    let content_type = crate::metrics::prometheus::CONTENT_TYPE;
    Answer {
        status: 200,
        headers: vec![("content-type".into(), content_type.into())],
        body: body.into_bytes(),
        stream: None,
        function: None,
        cold: None,
    }
}

fn invoke(request: &mut Request, context: &Context, id: &str, rest: &str) -> Answer {
    let received = Instant::now();
    let name = rest.split('/').next().unwrap_or("");
    if !valid_name(name) {
        return answer::not_found("no such function (names match [a-z0-9][a-z0-9_-]{0,63})");
    }
    // The function's own body limit when it has one (a deploy setting), else the server's.
    let max_body = match context.registry.lookup(name) {
        None => return answer::error(InvokeError::NotFound, false).for_function(name),
        Some(Route::Active(pool)) => pool.limits.max_body_size,
        Some(Route::Failed(_)) => context.max_body_size,
    };
    let invocation = match request::to_invocation(received, request, context, id, name, max_body) {
        Ok(invocation) => invocation,
        Err(BodyError::TooLarge) => return answer::too_large(max_body).for_function(name),
        Err(BodyError::Read(e)) => {
            return answer::bad_request(&format!("failed to read the request body: {e}"))
        }
    };
    let completed = context.scheduler.invoke(&invocation);
    log::debug!(
        "invocation finished function={name} invocation={id} version={:?} cold={} invoke_ms={}",
        completed.facts.version,
        completed.facts.cold,
        completed.duration.as_millis()
    );
    let mut answer = match completed.result {
        Ok(response) => Answer::from_function(response),
        Err(e) => answer::error(e, context.detailed_errors),
    };
    answer.cold = completed.facts.version.map(|_| completed.facts.cold);
    answer.for_function(name)
}

/// Answers a request that arrived while the server stops.
pub fn refuse_shutting_down(request: Request) {
    let id = request::new_invocation_id();
    let is_head = *request.method() == Method::Head;
    let _ = request.respond(answer::shutting_down().into_response(&id, is_head));
}
