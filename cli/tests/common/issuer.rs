//! The authorization server of the OAuth tests: `oidc-provider` (npm) on Node, running
//! `tests/servers/oidc_server.mjs`.

use super::http_stack::Running;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Starts `oidc-provider` issuing tokens for `resources`, with `env` set; the process and
/// the issuer's URL.
pub fn start(resources: &[&str], env: &[(&str, &str)]) -> (Running, String) {
    let dir = std::env::var("OIDC_PROVIDER_DIR").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/oidc"),
        PathBuf::from,
    );
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "this test needs oidc-provider: npm install --prefix {} oidc-provider@9 (or set OIDC_PROVIDER_DIR)",
        dir.display()
    );
    // ES modules resolve packages next to the script: run it from there, as a copy of
    // its own (tests run at once; one must not read a copy another is writing).
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let script = dir.join(format!("oidc_server-{}-{n}.mjs", std::process::id()));
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/oidc_server.mjs"),
        &script,
    )
    .unwrap();
    let mut process = Command::new("node")
        .arg(&script)
        .args(resources)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("this test needs node");
    let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
    let mut url = None;
    for line in lines.by_ref().map_while(Result::ok) {
        if let Ok(said) = serde_json::from_str::<Value>(&line) {
            url = said["issuer"].as_str().map(str::to_owned);
            break;
        }
    }
    // Read on: the server logs (its development pages do), and a closed pipe would end it.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    let _ = std::fs::remove_file(&script);
    (
        Running(process),
        url.expect("the authorization server did not start"),
    )
}
