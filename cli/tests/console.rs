//! The approval console of `mcp-policy gateway --console`, over raw HTTP: sign-in, the
//! session cookie's flags, CSRF on every POST, escaping of hostile arguments, separation
//! of duties, the webhook's body, and a call held by the gateway that runs once when
//! approved (the `approval_pending` path of a client that can neither show a URL nor
//! wait).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::console::{approvers_file, http, sign_in, ANA, BO};
use common::{gateway, http_stack};

use gateway::Session;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

const POLICY: &str = r#"{"version":"1","default":"deny","tools":{
  "whmcs_get_ticket":{},
  "whmcs_add_credit":{"action":"require_approval","reason":"credits need a second person",
    "approvers":"console"}}}"#;

/// A webhook receiver: each POST's body, as JSON.
fn webhook() -> (u16, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            let mut line = String::new();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some(n) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = n.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            let _ = sender.send(serde_json::from_slice(&body).unwrap());
        }
    });
    (port, receiver)
}

fn start(webhook_port: u16) -> (Session, u16) {
    let port = http_stack::free_port();
    let dir =
        std::env::temp_dir().join(format!("mcp-policy-console-{}-{port}", std::process::id()));
    let approvers = approvers_file(&dir);
    let console = format!("127.0.0.1:{port}");
    let hook = format!("http://127.0.0.1:{webhook_port}/hook");
    let server = gateway::whmcs_server().display().to_string();
    let gw = Session::start(
        POLICY,
        &[
            "--grant",
            "g1",
            "--console",
            &console,
            "--approvers",
            approvers.to_str().unwrap(),
            "--approval-webhook",
            &hook,
        ],
        &[server],
    );
    gw.wait_for_stderr("approval console on");
    (gw, port)
}

#[test]
fn a_held_call_runs_once_after_an_approver_approves_it_on_the_console() {
    let (hook_port, hooks) = webhook();
    let (mut gw, port) = start(hook_port);
    gw.handshake();
    let hostile = "<script>alert(1)</script>\u{202e}\"'&";
    let args = json!({"client_id": 7, "amount": 25, "description": hostile});
    let refused = gw.call(1, "whmcs_add_credit", args.clone());
    let result = &refused["result"];
    assert_eq!(
        result["structuredContent"]["code"], "approval_pending",
        "{refused}"
    );
    let text = gateway::text(&refused).to_owned();
    let page_at = text
        .find(&format!("http://127.0.0.1:{port}/approvals/"))
        .unwrap();
    let page = text[page_at..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let id = page.rsplit('/').next().unwrap().to_owned();

    // The webhook heard of it, with a Slack-compatible text.
    let notice = hooks.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(notice["id"], id.as_str());
    assert_eq!(notice["tool"], "whmcs_add_credit");
    assert_eq!(notice["grant"], "g1");
    assert_eq!(notice["url"], page.as_str());
    assert!(notice["text"]
        .as_str()
        .unwrap()
        .contains("whmcs_add_credit"));

    // Signed out: every page but the sign-in page sends there; every POST is refused.
    let answer = http(port, "GET", "/", &[], "");
    assert_eq!(
        (answer.status, answer.header("location")),
        (303, Some("/login"))
    );
    let answer = http(
        port,
        "POST",
        &format!("/approvals/{id}/approve"),
        &[],
        "csrf=x",
    );
    assert_eq!(answer.status, 403);

    // The sign-in page: its headers, and a wrong token.
    let login = http(port, "GET", "/login", &[], "");
    assert_eq!(login.status, 200);
    let csp = login.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    let flags = login
        .headers
        .iter()
        .find(|(n, v)| n == "set-cookie" && v.starts_with("mcp_policy_login="))
        .unwrap()
        .1
        .clone();
    assert!(
        flags.contains("HttpOnly") && flags.contains("SameSite=Strict"),
        "{flags}"
    );
    // On loopback the console may be plain HTTP: no Secure flag.
    assert!(!flags.contains("Secure"), "{flags}");
    let login_cookie = format!(
        "mcp_policy_login={}",
        login.cookie("mcp_policy_login").unwrap()
    );
    let wrong = format!("csrf={}&token=nope", login.csrf());
    let answer = http(port, "POST", "/login", &[login_cookie.as_str()], &wrong);
    assert_eq!(answer.status, 403);
    let forged = format!("csrf=forged&token={ANA}");
    let answer = http(port, "POST", "/login", &[login_cookie.as_str()], &forged);
    assert_eq!(answer.status, 403, "a sign-in without its CSRF token");

    let ana = sign_in(port, ANA);
    let list = http(port, "GET", "/", &[ana.as_str()], "");
    assert_eq!(list.status, 200);
    assert!(list.body.contains("whmcs_add_credit"));
    // Hostile arguments are shown escaped, never as markup.
    assert!(!list.body.contains("<script>alert(1)"), "{}", list.body);
    assert!(list.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let csrf = list.csrf();

    // A POST without the session's CSRF token is refused, and decides nothing.
    let approve = format!("/approvals/{id}/approve");
    let answer = http(port, "POST", &approve, &[ana.as_str()], "note=x");
    assert_eq!(answer.status, 403);
    let answer = http(port, "POST", &approve, &[ana.as_str()], "csrf=0000&note=x");
    assert_eq!(answer.status, 403);
    let still = gw.call(2, "whmcs_add_credit", args.clone());
    assert_eq!(
        still["result"]["structuredContent"]["code"],
        "approval_pending"
    );

    // bo may decide only g2's calls; g1 may not decide its own.
    let bo = sign_in(port, BO);
    let bo_csrf = http(port, "GET", &format!("/approvals/{id}"), &[bo.as_str()], "").csrf();
    let answer = http(
        port,
        "POST",
        &approve,
        &[bo.as_str()],
        &format!("csrf={bo_csrf}"),
    );
    assert_eq!(answer.status, 403, "{}", answer.body);
    let own = sign_in(port, "g1-self-token");
    let own_csrf = http(
        port,
        "GET",
        &format!("/approvals/{id}"),
        &[own.as_str()],
        "",
    )
    .csrf();
    let answer = http(
        port,
        "POST",
        &approve,
        &[own.as_str()],
        &format!("csrf={own_csrf}"),
    );
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(answer.body.contains("your own grant"), "{}", answer.body);

    let answer = http(
        port,
        "POST",
        &approve,
        &[ana.as_str()],
        &format!("csrf={csrf}&note=ok"),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("Approved"));

    let ran = gw.call(3, "whmcs_add_credit", args.clone());
    assert!(ran["result"]["isError"] != true, "{ran}");
    let again = gw.call(4, "whmcs_add_credit", args);
    assert_eq!(
        again["result"]["structuredContent"]["code"],
        "approval_pending"
    );
    let runs = gw
        .server_log()
        .iter()
        .filter(|line| line.contains("whmcs_add_credit"))
        .count();
    assert_eq!(runs, 1, "{:?}", gw.server_log());

    // The decision is listed, with who made it.
    let list = http(port, "GET", "/", &[ana.as_str()], "");
    assert!(list.body.contains("approved") && list.body.contains("ana"));
    let answer = http(
        port,
        "POST",
        "/logout",
        &[ana.as_str()],
        &format!("csrf={csrf}"),
    );
    assert_eq!(answer.status, 303);
    let answer = http(port, "GET", "/", &[ana.as_str()], "");
    assert_eq!(answer.status, 303, "signed out");
}

#[test]
fn a_declined_call_is_refused_and_never_reaches_the_server() {
    let (hook_port, _hooks) = webhook();
    let (mut gw, port) = start(hook_port);
    gw.handshake();
    let args = json!({"client_id": 8, "amount": 99});
    let refused = gw.call(1, "whmcs_add_credit", args.clone());
    let text = gateway::text(&refused).to_owned();
    let id = text
        .split_whitespace()
        .find_map(|w| w.split("/approvals/").nth(1))
        .unwrap()
        .to_owned();
    let ana = sign_in(port, ANA);
    let csrf = http(port, "GET", "/", &[ana.as_str()], "").csrf();
    let decline = format!("/approvals/{id}/decline");
    let answer = http(
        port,
        "POST",
        &decline,
        &[ana.as_str()],
        &format!("csrf={csrf}&note=too+much"),
    );
    assert_eq!(answer.status, 200);
    let refused = gw.call(2, "whmcs_add_credit", args);
    assert_eq!(
        refused["result"]["structuredContent"]["code"],
        "approval_declined"
    );
    assert!(gateway::text(&refused).contains("too much"));
    assert!(gw
        .server_log()
        .iter()
        .all(|l| !l.contains("whmcs_add_credit")));
}
