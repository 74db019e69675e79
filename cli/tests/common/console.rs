//! The approval console over raw HTTP/1.1: one exchange per connection, sign-in, and an
//! approvers file for the tests.

use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Ana's sign-in token (see [`approvers_file`]).
pub const ANA: &str = "ana-approver-token";
pub const BO: &str = "bo-approver-token";

/// One HTTP exchange: status, headers (lowercase names), body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `name`'s value from this answer's `Set-Cookie`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .find_map(|(_, v)| v.strip_prefix(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap_or_default().to_owned())
    }

    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").unwrap();
        let rest = &self.body[at + 19..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

pub fn http(port: u16, method: &str, path: &str, cookies: &[&str], form: &str) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let cookie = if cookies.is_empty() {
        String::new()
    } else {
        format!("Cookie: {}\r\n", cookies.join("; "))
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{cookie}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').unwrap();
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut body = String::new();
    let _ = reader.read_to_string(&mut body);
    Answer {
        status,
        headers,
        body,
    }
}

/// Signs in with `token`; the session cookie (`name=value`).
pub fn sign_in(port: u16, token: &str) -> String {
    let page = http(port, "GET", "/login", &[], "");
    let login = format!(
        "mcp_policy_login={}",
        page.cookie("mcp_policy_login").unwrap()
    );
    let form = format!("csrf={}&token={token}", page.csrf());
    let answer = http(port, "POST", "/login", &[login.as_str()], &form);
    assert_eq!(answer.status, 303, "{}", answer.body);
    format!(
        "mcp_policy_console={}",
        answer.cookie("mcp_policy_console").unwrap()
    )
}

/// Writes an approvers file naming ana (any grant but g1, her own) and bo (only g2).
pub fn approvers_file(dir: &std::path::Path) -> std::path::PathBuf {
    let digest = |t: &str| hex::encode(Sha256::digest(t.as_bytes()));
    let path = dir.join("approvers.json");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        &path,
        json!({"approvers": [
            {"sha256": digest(ANA), "name": "ana"},
            {"sha256": digest(BO), "name": "bo", "grants": ["g2"]},
            {"sha256": digest("g1-self-token"), "name": "g1"}]})
        .to_string(),
    )
    .unwrap();
    path
}
