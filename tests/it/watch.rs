//! Redeploying a functions directory: `--watch` picks up edits while the server runs, and
//! a restart picks up an edit to an imported file, while unchanged code keeps its version.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::Server;

const ENTRY: &str = r#"import { message } from "./lib/message";
export default () => new Response(`${message} ${process.env.SUFFIX ?? ""}`.trim());
"#;

fn write_function(dir: &Path, message: &str) {
    fs::create_dir_all(dir.join("lib")).unwrap();
    fs::write(dir.join("greet.ts"), ENTRY).unwrap();
    fs::write(
        dir.join("lib/message.ts"),
        format!("export const message = {message:?};\n"),
    )
    .unwrap();
}

/// Polls `path` until its body is `want`, or fails after `timeout` with the last answer.
fn wait_for_body(server: &Server, path: &str, want: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        let response = server.get(path);
        last = format!("{} {}", response.status, response.text());
        if response.status == 200 && response.text() == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{path} never answered {want:?}; last: {last}\n{}",
        server.logs_tail(3000)
    );
}

#[test]
fn watch_redeploys_edits_keeps_serving_through_a_broken_build_and_adds_new_functions() {
    let functions = tempfile::tempdir().unwrap();
    write_function(functions.path(), "one");
    let server = Server::builder()
        .functions_dir(functions.path())
        .config("watch", "true")
        .start();
    assert_eq!(server.get("/functions/greet").text(), "one");

    // An edit to an imported file is a new version.
    fs::write(
        functions.path().join("lib/message.ts"),
        "export const message = \"two\";\n",
    )
    .unwrap();
    wait_for_body(&server, "/functions/greet", "two", Duration::from_secs(10));

    // A broken edit is logged and the previous version keeps serving.
    fs::write(
        functions.path().join("greet.ts"),
        "export default () => new Response(;\n",
    )
    .unwrap();
    assert!(server.wait_for_log("failed to build function greet", Duration::from_secs(10)));
    assert_eq!(server.get("/functions/greet").text(), "two");

    // Fixing it, adding an env file and a new function are all picked up.
    fs::write(functions.path().join("greet.ts"), ENTRY).unwrap();
    fs::write(functions.path().join("greet.env"), "SUFFIX=again\n").unwrap();
    fs::write(
        functions.path().join("added.ts"),
        "export default () => new Response('new');\n",
    )
    .unwrap();
    wait_for_body(
        &server,
        "/functions/greet",
        "two again",
        Duration::from_secs(10),
    );
    wait_for_body(&server, "/functions/added", "new", Duration::from_secs(10));
}

#[test]
fn restart_deploys_an_edited_import_and_keeps_the_version_of_unchanged_code() {
    let functions = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    write_function(functions.path(), "one");
    let start = || {
        Server::builder()
            .functions_dir(functions.path())
            .data_dir(data.path())
            .start()
    };

    let first = start();
    assert_eq!(first.get("/functions/greet").text(), "one");
    first.stop();

    fs::write(
        functions.path().join("lib/message.ts"),
        "export const message = \"two\";\n",
    )
    .unwrap();
    let second = start();
    assert_eq!(second.get("/functions/greet").text(), "two");
    assert!(
        second.logs().contains("deployed function=greet version=2"),
        "{}",
        second.logs_tail(3000)
    );
    second.stop();

    let third = start();
    assert_eq!(third.get("/functions/greet").text(), "two");
    assert!(
        third
            .logs()
            .contains("function unchanged function=greet version=2"),
        "{}",
        third.logs_tail(3000)
    );
}
