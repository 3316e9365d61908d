//! README.md's run command and curl session, as a newcomer runs them: from a directory
//! holding `examples/` and `functions.conf`, with the default (relative) data dir.

use crate::support::{assert_error, Request, Server};

#[test]
fn readme_run_command_serves_every_example_as_the_curl_session_shows() {
    let server = Server::builder().like_the_readme().start();

    let hello = server.get("/functions/hello-world");
    assert_eq!(
        hello.status,
        200,
        "{}\n{}",
        hello.text(),
        server.logs_tail(4000)
    );
    assert_eq!(hello.text(), "Hello, world!\n");
    assert!(hello.header("x-invocation-id").is_some());
    assert!(hello.header("x-cold-start").is_some());
    assert_eq!(
        server.get("/functions/hello-world?name=Ada").text(),
        "Hello, Ada!\n"
    );

    let echo = server.call(
        &Request::new("POST", "/functions/json-echo")
            .header("content-type", "application/json")
            .body(r#"{"name":"ada"}"#),
    );
    assert_eq!(echo.status, 200, "{}", echo.text());
    assert_eq!(
        echo.json()["received"],
        serde_json::json!({ "name": "ada" })
    );

    assert_eq!(
        server
            .get("/functions/todos")
            .json()
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(server.get("/functions/todos/1").json()["id"], 1);
    let created =
        server.call(&Request::new("POST", "/functions/todos").body(r#"{"title":"Read the docs"}"#));
    assert_eq!(created.status, 201, "{}", created.text());

    let greeting = server.get("/functions/greeting");
    assert!(
        greeting
            .text()
            .starts_with("Bonjour from an environment variable!"),
        "{}",
        greeting.text()
    );

    let ticks = server.get("/functions/ticker?count=3");
    assert_eq!(
        ticks.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(
        ticks.text().matches("event: tick\n").count(),
        3,
        "{}",
        ticks.text()
    );

    assert_error(&server.get("/functions/fails"), 500, "function_error");
    assert_error(&server.get("/functions/nope"), 404, "not_found");
    assert_eq!(server.get("/health").status, 200);

    // The relative default data dir is where the README says, beside examples/.
    let socket = server.socket_path();
    assert!(socket.exists(), "no socket at {}", socket.display());
    let bundles = socket.parent().unwrap().join("bundles");
    assert!(bundles.is_dir(), "no bundles in {}", bundles.display());

    // The server created the data dir, for its owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(socket.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "data dir mode {:o}", mode & 0o777);
}
