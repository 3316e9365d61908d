//! Managing deployed functions over the socket: ROLLBACK, the environment commands,
//! REGISTER_FUNCTION and DELETE, end to end.

use serde_json::json;

use super::{assert_error, call, client, deploy, invoke, ok, start};
use crate::support::Server;
use functions::api::codes::{Command, Status};

#[test]
fn rollback_env_and_delete_work_end_to_end() {
    let server = start(Server::builder());
    let versioned = |tag: &str| {
        format!("export default () => new Response('{tag}:' + (process.env.GREETING ?? '-'));\n")
    };
    assert_eq!(deploy(&server, "app", &versioned("one")).status, Status::Ok);
    assert_eq!(deploy(&server, "app", &versioned("two")).status, Status::Ok);
    let mut conn = client(&server);
    let answer = |conn: &mut functions::client::Client| {
        String::from_utf8(invoke(&server, conn, "app", b"").1).unwrap()
    };

    // ROLLBACK: to the previous version, to a named one, to none that exists.
    let back = ok(&server, Command::Rollback, json!({"name": "app"}), b"");
    assert_eq!(
        (
            back.json["version"].as_i64(),
            back.json["previous_version"].as_i64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(answer(&mut conn), "one:-");
    ok(
        &server,
        Command::Rollback,
        json!({"name": "app", "version": 2}),
        b"",
    );
    assert_eq!(answer(&mut conn), "two:-");
    let missing = call(
        &server,
        &mut conn,
        Command::Rollback,
        json!({"name": "app", "version": 9}),
        b"",
    );
    assert_error(&missing, Status::NotFound, "not_found");

    // SET_ENV restarts the workers with the new value; LIST_ENV hides it unless asked.
    let set = ok(
        &server,
        Command::SetEnv,
        json!({"name": "app", "vars": {"GREETING": "hey"}}),
        b"",
    );
    assert_eq!(set.json["keys"], json!(["GREETING"]));
    assert_eq!(answer(&mut conn), "two:hey");
    let hidden = ok(&server, Command::ListEnv, json!({"name": "app"}), b"");
    assert_eq!(
        (&hidden.json["env"], &hidden.json["revealed"]),
        (&json!({"GREETING": "********"}), &json!(false))
    );
    let shown = ok(
        &server,
        Command::ListEnv,
        json!({"name": "app", "reveal": true}),
        b"",
    );
    assert_eq!(shown.json["env"], json!({"GREETING": "hey"}));
    let bad_key = call(
        &server,
        &mut conn,
        Command::SetEnv,
        json!({"name": "app", "vars": {"1X": "v"}}),
        b"",
    );
    assert_error(&bad_key, Status::BadRequest, "bad_request");
    let unset = ok(
        &server,
        Command::UnsetEnv,
        json!({"name": "app", "keys": ["GREETING"]}),
        b"",
    );
    assert_eq!(unset.json["keys"], json!([]));
    assert_eq!(answer(&mut conn), "two:-");

    // REGISTER_FUNCTION lists a name without serving it; DELETE removes both.
    let registered = ok(
        &server,
        Command::RegisterFunction,
        json!({"name": "later"}),
        b"",
    );
    assert_eq!(registered.json["registered"], true);
    let list = ok(&server, Command::List, json!({}), b"");
    assert_eq!(
        list.json["functions"][1]["state"], "registered",
        "{}",
        list.json
    );
    for name in ["app", "later"] {
        let deleted = ok(&server, Command::Delete, json!({ "name": name }), b"");
        assert_eq!(deleted.json["deleted"], true);
    }
    let gone = call(
        &server,
        &mut conn,
        Command::Invoke,
        json!({"name": "app"}),
        b"",
    );
    assert_error(&gone, Status::NotFound, "not_found");
    let again = call(
        &server,
        &mut conn,
        Command::Delete,
        json!({"name": "app"}),
        b"",
    );
    assert_error(&again, Status::NotFound, "not_found");
    assert_eq!(
        ok(&server, Command::List, json!({}), b"").json["functions"],
        json!([])
    );
}
