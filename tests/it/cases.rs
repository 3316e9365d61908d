//! Runs every shared case of `tests/cases/cases.json` through the real gateway and
//! reports every difference at once. Cases are grouped into phases, one server each, so
//! that each function runs with the env its cases declare; `check.rs` holds the
//! expectations and `run.rs` sends the requests.

mod check;
mod run;

use std::collections::BTreeMap;
use std::path::Path;

use functions::api::codes::{Command, Status};
use serde::Deserialize;

use crate::support::{manifest_dir, write_env_file, Server, ServerBuilder};
use check::Expect;

type Env = BTreeMap<String, String>;

#[derive(Deserialize)]
pub struct Case {
    id: String,
    function_file: String,
    #[serde(default)]
    env: Env,
    request: CaseRequest,
    expect: Expect,
    #[serde(default)]
    then: Vec<Step>,
    signal: Option<CaseSignal>,
}

/// A follow-up request to the same function; `env` first changes the function's env.
#[derive(Deserialize)]
pub struct Step {
    env: Option<Env>,
    request: CaseRequest,
    expect: Expect,
}

#[derive(Deserialize)]
pub struct CaseRequest {
    method: String,
    path: String,
    headers: Option<Headers>,
    body_text: Option<String>,
    body_base64: Option<String>,
    body_generate: Option<Generate>,
    concurrency: Option<usize>,
    repeat: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Headers {
    Pairs(Vec<(String, String)>),
    Map(BTreeMap<String, String>),
}

#[derive(Deserialize)]
struct Generate {
    pattern: String,
    length: usize,
}

#[derive(Deserialize)]
pub struct CaseSignal {
    name: String,
    after_ms: u64,
}

impl Case {
    /// The function's name: the stem of its file.
    fn function(&self) -> String {
        let stem = Path::new(&self.function_file)
            .file_stem()
            .expect("function_file without a name");
        stem.to_string_lossy().into_owned()
    }
}

/// One server's worth of cases, run in order. `initial` is the env each function starts
/// with; `current` the env it has once the cases so far (and their `then` steps) ran.
struct Phase<'a> {
    cases: Vec<&'a Case>,
    initial: BTreeMap<String, Env>,
    current: BTreeMap<String, Env>,
    alone: bool,
}

/// Puts each case in the first phase where its function is absent or has the same env;
/// a case that signals the server gets a server of its own.
fn plan(cases: &[Case]) -> Vec<Phase<'_>> {
    let mut phases: Vec<Phase> = Vec::new();
    for case in cases {
        let name = case.function();
        let fits = |p: &Phase| !p.alone && p.current.get(&name).is_none_or(|env| *env == case.env);
        let index = match case.signal {
            Some(_) => None,
            None => phases.iter().position(fits),
        };
        let index = index.unwrap_or_else(|| {
            let (cases, initial, current) = Default::default();
            phases.push(Phase {
                cases,
                initial,
                current,
                alone: case.signal.is_some(),
            });
            phases.len() - 1
        });

        let phase = &mut phases[index];
        phase
            .initial
            .entry(name.clone())
            .or_insert_with(|| case.env.clone());
        let last_env = case.then.iter().filter_map(|s| s.env.as_ref()).next_back();
        phase
            .current
            .insert(name, last_env.unwrap_or(&case.env).clone());
        phase.cases.push(case);
    }
    phases
}

/// The server of a phase: the concurrent case assumes four workers and the 6 MiB upload
/// a body limit above 6 MiB. Cases 40 and 41 assume a ~2 s timeout, which they get from
/// [`TWO_SECOND_FUNCTIONS`]; the others get 10 s, so a loaded test machine cannot time out
/// a large upload. A signal case has a server of its own with a 5 s timeout for all,
/// since 40's graceful shutdown waits 2 s in its handler and must not race a 2 s deadline.
fn case_server(functions_dir: &Path, data_dir: &Path, alone: bool) -> ServerBuilder {
    Server::builder()
        .functions_dir(functions_dir)
        .data_dir(data_dir)
        .config("invocation_timeout", if alone { "5s" } else { "10s" })
        .config("max_workers", "4")
        .config("max_body_size", "16M")
        .config("shutdown_grace", "10s")
}

/// The functions whose cases assume a function timeout of about 2 s.
const TWO_SECOND_FUNCTIONS: [&str; 2] = ["40-never-resolves", "41-cpu-spin"];

/// Deploys the phase's [`TWO_SECOND_FUNCTIONS`] again with a 2 s timeout of their own
/// (a per-function setting, kept by restarts of the same data dir).
fn set_two_second_timeouts(
    phase: &Phase,
    server: &Server,
    functions_dir: &Path,
    failures: &mut Vec<String>,
) {
    for name in TWO_SECOND_FUNCTIONS {
        if !phase.initial.contains_key(name) {
            continue;
        }
        let filename = format!("{name}.ts");
        let source = std::fs::read(functions_dir.join(&filename)).unwrap();
        let payload = serde_json::json!({
            "name": name,
            "filename": filename,
            "settings": { "timeout_ms": 2000 },
        });
        let reply = functions::client::Client::connect(server.socket_path())
            .and_then(|mut c| c.call(Command::DeployFunction, payload, source));
        match reply {
            Ok(reply) if reply.status == Status::Ok => {}
            Ok(reply) => failures.push(format!("[{name}] 2 s timeout not set: {}", reply.json)),
            Err(e) => failures.push(format!("[{name}] 2 s timeout not set: {e}")),
        }
    }
}

fn env_pairs(env: &Env) -> Vec<(String, String)> {
    env.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn run_phase(phase: &Phase, failures: &mut Vec<String>) {
    let root = tempfile::TempDir::new().unwrap();
    let (functions_dir, data_dir) = (root.path().join("functions"), root.path().join("data"));
    std::fs::create_dir_all(&functions_dir).unwrap();
    let cases_dir = manifest_dir().join("tests/cases");
    for case in &phase.cases {
        let file = Path::new(&case.function_file);
        std::fs::copy(
            cases_dir.join(file),
            functions_dir.join(file.file_name().unwrap()),
        )
        .unwrap_or_else(|e| panic!("failed to copy {}: {e}", case.function_file));
    }
    for (name, env) in &phase.initial {
        write_env_file(&functions_dir, name, &env_pairs(env));
    }

    let start = || case_server(&functions_dir, &data_dir, phase.alone).try_start();
    let mut server = match start() {
        Ok(server) => server,
        Err(e) => {
            failures.extend(
                phase
                    .cases
                    .iter()
                    .map(|c| format!("[{}] not run: {e}", c.id)),
            );
            return;
        }
    };
    if !phase.alone {
        set_two_second_timeouts(phase, &server, &functions_dir, failures);
    }
    for (i, case) in phase.cases.iter().enumerate() {
        if let Err(e) = run::run_case(case, &mut server, &functions_dir, &start, failures) {
            failures.push(format!("[{}] {e}", case.id));
            let rest = &phase.cases[i + 1..];
            failures.extend(
                rest.iter()
                    .map(|c| format!("[{}] not run: the server is gone", c.id)),
            );
            return;
        }
    }
}

#[test]
fn every_shared_case_gets_the_expected_answer_through_the_gateway() {
    let path = manifest_dir().join("tests/cases/cases.json");
    let json = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
    let cases: Vec<Case> =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("bad {}: {e}", path.display()));

    let mut failures = Vec::new();
    for (n, phase) in plan(&cases).iter().enumerate() {
        let names: Vec<&str> = phase.initial.keys().map(String::as_str).collect();
        eprintln!(
            "phase {n}: {} cases; functions {names:?}",
            phase.cases.len()
        );
        run_phase(phase, &mut failures);
    }

    let failed = cases.iter().filter(|c| {
        failures
            .iter()
            .any(|f| f.starts_with(&format!("[{}]", c.id)))
    });
    let count = failed.count();
    assert!(
        failures.is_empty(),
        "{count} of {} cases failed:\n{}",
        cases.len(),
        failures.join("\n")
    );
}
