//! The approval console in a real headless browser (Debian's `chromium`, driven through
//! `chromedriver` by `fantoccini`), deciding calls that the official MCP Python SDK made
//! through `mcp-policy gateway --console` (`tests/e2e/sdk_console_client.py`): an approver
//! signs in, sees the held call, approves it and the server ran it once; declines the
//! next, which never reaches the server; an approver of the calling grant gets no
//! buttons. The list page's screenshot is kept in `target/console-list.png`. And an
//! approver who signs in through the organisation's authorization server (`oidc-provider`,
//! authorization code with PKCE, its login and consent pages filled in the browser)
//! approves a call held by the HTTP gateway.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::console::{approvers_file, ANA};
use common::{gateway, http_stack, issuer};

use fantoccini::{Client, ClientBuilder, Locator};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const POLICY: &str = r#"{"version":"1","default":"deny","tools":{
  "whmcs_add_credit":{"action":"require_approval","reason":"credits need a second person",
    "approvers":"console"}}}"#;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> (Killed, u16) {
    let port = http_stack::free_port();
    let driver = Killed(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("this test needs chromedriver: apt-get install chromium chromium-driver"),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (driver, port);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("chromedriver did not start");
}

async fn browser(port: u16) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"binary": "/usr/bin/chromium", "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--window-size=1280,900"]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap()
}

async fn sign_in(client: &Client, console: &str, token: &str) {
    client.goto(&format!("{console}/")).await.unwrap();
    // Signed out: the list sends to the sign-in page.
    assert!(client
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/login"));
    fill(client, "input[name=token]", token).await;
    click(client, "button[type=submit]").await;
    await_signed_in(client).await;
}

/// The element `css` finds, once it is there (10 s at most).
async fn element(browser: &Client, css: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("no {css}"))
}

async fn click(browser: &Client, css: &str) {
    element(browser, css).await.click().await.unwrap();
}

async fn fill(browser: &Client, css: &str, text: &str) {
    element(browser, css).await.send_keys(text).await.unwrap();
}

/// Waits for a page of a signed-in approver (its sign-out form); says where the browser
/// is otherwise.
async fn await_signed_in(browser: &Client) {
    let signed_in = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("form[action='/logout']"))
        .await;
    if signed_in.is_err() {
        let url = browser.current_url().await.unwrap();
        panic!(
            "not signed in: at {url}: {}",
            browser.source().await.unwrap()
        );
    }
}

/// Lines the SDK client prints, as they come.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    receiver
}

fn next_line(lines: &mpsc::Receiver<String>, prefix: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no line starting {prefix:?} from the SDK client"));
        assert!(!line.starts_with("FAILED"), "{line}");
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest.to_owned();
        }
    }
}

fn artifact(name: &str) -> PathBuf {
    let target = gateway::binary()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    target.join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium, chromedriver and the MCP Python SDK"]
async fn an_approver_decides_in_a_browser_what_the_python_sdk_client_called() {
    let python = gateway::python_with_sdk();
    let dir = std::env::temp_dir().join(format!("mcp-policy-browser-{}", std::process::id()));
    let approvers = approvers_file(&dir);
    std::fs::write(dir.join("policy.json"), POLICY).unwrap();
    let port = http_stack::free_port();
    let console = format!("http://127.0.0.1:{port}");
    let mut client = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/sdk_console_client.py"))
        .arg(dir.join("policy.json"))
        .arg(dir.join("server.log"))
        .arg(gateway::binary())
        .args([
            "gateway",
            "--console",
            &format!("127.0.0.1:{port}"),
            "--approvers",
        ])
        .arg(&approvers)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut client);
    let client = Killed(client);
    let page = next_line(&lines, "url: ");
    assert!(page.starts_with(&format!("{console}/approvals/")), "{page}");

    let (_driver, driver_port) = chromedriver();
    let browser = browser(driver_port).await;

    // The calling grant's own approver sees the call but may not decide it.
    sign_in(&browser, &console, "g1-self-token").await;
    let row = browser.find(Locator::Css("tr.pending")).await.unwrap();
    let text = row.text().await.unwrap();
    assert!(text.contains("another approver must decide"), "{text}");
    assert!(row.find(Locator::Css("button.approve")).await.is_err());
    click(&browser, "form[action='/logout'] button").await;

    sign_in(&browser, &console, ANA).await;
    let row = browser.find(Locator::Css("tr.pending")).await.unwrap();
    let text = row.text().await.unwrap();
    assert!(
        text.contains("whmcs_add_credit") && text.contains("<b>goodwill</b>"),
        "{text}"
    );
    let screenshot = browser.screenshot().await.unwrap();
    std::fs::write(artifact("console-list.png"), screenshot).unwrap();
    row.find(Locator::Css("button.approve"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    next_line(
        &lines,
        "ok: approved on the console, the call ran exactly once",
    );

    // The next call: declined.
    let page = next_line(&lines, "url: ");
    browser.goto(&page).await.unwrap();
    click(&browser, "button.decline").await;
    next_line(
        &lines,
        "ok: declined on the console, the call never reached the server",
    );
    browser.goto(&format!("{console}/")).await.unwrap();
    let decided = browser.find_all(Locator::Css("tr.decided")).await.unwrap();
    assert_eq!(decided.len(), 2);
    browser.close().await.unwrap();
    drop(client);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium, chromedriver, oidc-provider and the MCP Python SDK"]
async fn an_approver_signs_in_through_the_authorization_server_and_approves() {
    let python = gateway::python_with_sdk();
    let (port, console_port) = (http_stack::free_port(), http_stack::free_port());
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let console = format!("http://127.0.0.1:{console_port}");
    let callback = format!("{console}/login/callback");
    let (_issuer, issuer_url) = issuer::start(&[&resource], &[("CONSOLE_REDIRECT_URI", &callback)]);
    let dir = std::env::temp_dir().join(format!("mcp-policy-oauth-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let approvers = dir.join("approvers.json");
    std::fs::write(&approvers, r#"{"approvers": [{"name": "carol"}]}"#).unwrap();
    let flags: Vec<String> = [
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--oauth-issuer",
        &issuer_url,
        "--resource",
        &resource,
        "--console",
        &format!("127.0.0.1:{console_port}"),
        "--approvers",
        approvers.to_str().unwrap(),
        "--console-oauth-client",
        "console",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let stack = http_stack::Stack::start_custom(&python, "json", &flags, POLICY);
    let bearer = format!("Bearer {}", http_stack::TOKEN);
    // A 2026-07-28 client that can neither show a URL nor wait: refused approval_pending.
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_add_credit","arguments":{"client_id":7,"amount":25},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let headers = [
        ("authorization", bearer.as_str()),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "whmcs_add_credit"),
    ];
    let (status, _, body) = stack.post(call, &headers);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("approval_pending") && body.contains(&console),
        "{body}"
    );

    let (_driver, driver_port) = chromedriver();
    let browser = browser(driver_port).await;
    browser.goto(&format!("{console}/login")).await.unwrap();
    click(&browser, "#oauth").await;
    // oidc-provider's development login, then its consent page.
    fill(&browser, "input[name=login]", "carol").await;
    fill(&browser, "input[name=password]", "any").await;
    click(&browser, "button[type=submit]").await;
    // The consent page (not the login page's button, which may still be there).
    click(
        &browser,
        "input[name=prompt][value=consent] ~ button[type=submit]",
    )
    .await;
    await_signed_in(&browser).await;
    let header = browser
        .find(Locator::Css(".bar"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(header.contains("carol"), "{header}");
    click(&browser, "tr.pending button.approve").await;
    element(&browser, "strong.ok").await;
    browser.close().await.unwrap();

    let (status, _, body) = stack.post(call, &headers);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("credited 25"), "{body}");
    assert_eq!(stack.tools_run("whmcs_add_credit"), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
