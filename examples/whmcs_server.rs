//! A small WHMCS-like MCP server over stdio, for demos and tests of the gateway.
//!
//! It speaks newline-delimited JSON-RPC 2.0: `initialize`, `notifications/initialized`,
//! `ping`, `tools/list` and `tools/call`, with a handful of ticket and client tools over
//! in-memory data. With `WHMCS_SERVER_LOG=FILE` it appends the name of every tool it runs
//! to FILE, so a test can check which calls reached it.
//!
//! ```sh
//! cargo run --example whmcs_server
//! ```

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};

struct Ticket {
    subject: String,
    status: String,
    priority: String,
    replies: Vec<String>,
}

struct Desk {
    tickets: BTreeMap<u64, Ticket>,
    credit: BTreeMap<u64, f64>,
    log: Option<std::fs::File>,
}

fn main() {
    let mut desk = Desk {
        tickets: (1..=3)
            .map(|id| {
                let ticket = Ticket {
                    subject: format!("Ticket {id}: invoice question"),
                    status: "Open".into(),
                    priority: "Medium".into(),
                    replies: Vec::new(),
                };
                (id, ticket)
            })
            .collect(),
        credit: BTreeMap::new(),
        log: std::env::var_os("WHMCS_SERVER_LOG").and_then(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
        }),
    };
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Value>(&line) {
            Ok(message) => desk.handle(&message),
            Err(e) => Some(json!({"jsonrpc": "2.0", "id": null,
                "error": {"code": -32700, "message": format!("parse error: {e}")}})),
        };
        if let Some(reply) = reply {
            if writeln!(stdout, "{reply}")
                .and_then(|()| stdout.flush())
                .is_err()
            {
                break;
            }
        }
    }
}

impl Desk {
    fn handle(&mut self, message: &Value) -> Option<Value> {
        let id = message.get("id")?.clone();
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let result = match method {
            "initialize" => Ok(json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "whmcs-demo", "version": "0.1.0"}
            })),
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({"tools": tools()})),
            "tools/call" => {
                let params = message.get("params").cloned().unwrap_or(Value::Null);
                let name = params
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let empty = Value::Object(Map::new());
                let args = params.get("arguments").unwrap_or(&empty);
                self.call(name, args)
            }
            _ => Err((-32601, format!("method not found: {method}"))),
        };
        Some(match result {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err((code, message)) => {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            }
        })
    }

    fn call(&mut self, name: &str, args: &Value) -> Result<Value, (i64, String)> {
        if !tools().iter().any(|t| t["name"] == name) {
            return Err((-32602, format!("unknown tool: {name}")));
        }
        if let Some(log) = &mut self.log {
            let _ = writeln!(log, "{name}");
        }
        let number = |field: &str| args.get(field).and_then(Value::as_u64);
        let text = |field: &str| args.get(field).and_then(Value::as_str).map(str::to_owned);
        let outcome: Result<String, String> = match name {
            "whmcs_list_tickets" => Ok(self
                .tickets
                .iter()
                .map(|(id, t)| format!("#{id} [{}] {}", t.status, t.subject))
                .collect::<Vec<_>>()
                .join("\n")),
            "whmcs_get_ticket" => {
                match number("ticket_id").and_then(|id| self.tickets.get(&id).map(|t| (id, t))) {
                    Some((id, t)) => Ok(format!(
                        "#{id} {} — status {}, priority {}, {} replies",
                        t.subject,
                        t.status,
                        t.priority,
                        t.replies.len()
                    )),
                    None => Err("no such ticket".into()),
                }
            }
            "whmcs_update_ticket" => {
                match number("ticket_id").and_then(|id| self.tickets.get_mut(&id)) {
                    Some(t) => {
                        if let Some(status) = text("status") {
                            t.status = status;
                        }
                        if let Some(priority) = text("priority") {
                            t.priority = priority;
                        }
                        Ok(format!(
                            "updated: status {}, priority {}",
                            t.status, t.priority
                        ))
                    }
                    None => Err("no such ticket".into()),
                }
            }
            "whmcs_add_ticket_reply" => match (
                number("ticket_id").and_then(|id| self.tickets.get_mut(&id)),
                text("message"),
            ) {
                (Some(t), Some(message)) => {
                    t.replies.push(message);
                    Ok(format!("reply added ({} in total)", t.replies.len()))
                }
                (None, _) => Err("no such ticket".into()),
                (_, None) => Err("a reply needs a message".into()),
            },
            "whmcs_add_credit" => match (
                number("client_id"),
                args.get("amount").and_then(Value::as_f64),
            ) {
                (Some(client), Some(amount)) if amount > 0.0 => {
                    let balance = self.credit.entry(client).or_default();
                    *balance += amount;
                    Ok(format!(
                        "credit added; client {client} balance {balance:.2}"
                    ))
                }
                _ => Err("needs client_id and a positive amount".into()),
            },
            "whmcs_send_email" => Ok("email queued".into()),
            "whmcs_close_client" | "whmcs_delete_client" => Ok(format!("{name} done")),
            _ => Err("not implemented".into()),
        };
        Ok(match outcome {
            Ok(text) => json!({"content": [{"type": "text", "text": text}], "isError": false}),
            Err(text) => json!({"content": [{"type": "text", "text": text}], "isError": true}),
        })
    }
}

fn tools() -> Vec<Value> {
    let tool = |name: &str, description: &str, properties: Value| {
        json!({"name": name, "description": description,
               "inputSchema": {"type": "object", "properties": properties}})
    };
    vec![
        tool("whmcs_list_tickets", "List support tickets", json!({})),
        tool(
            "whmcs_get_ticket",
            "Read one ticket",
            json!({"ticket_id": {"type": "integer"}}),
        ),
        tool(
            "whmcs_update_ticket",
            "Change a ticket's status or priority",
            json!({
            "ticket_id": {"type": "integer"}, "status": {"type": "string"}, "priority": {"type": "string"}}),
        ),
        tool(
            "whmcs_add_ticket_reply",
            "Reply to a ticket",
            json!({
            "ticket_id": {"type": "integer"}, "message": {"type": "string"}}),
        ),
        tool(
            "whmcs_add_credit",
            "Add account credit",
            json!({
            "client_id": {"type": "integer"}, "amount": {"type": "number"}}),
        ),
        tool(
            "whmcs_send_email",
            "Email a client",
            json!({"client_id": {"type": "integer"}}),
        ),
        tool(
            "whmcs_close_client",
            "Close a client account",
            json!({"client_id": {"type": "integer"}}),
        ),
        tool(
            "whmcs_delete_client",
            "Delete a client",
            json!({"client_id": {"type": "integer"}}),
        ),
    ]
    .into_iter()
    .map(|mut tool| {
        // MCP annotations, as `examples/policies/whmcs_tools.json` lists them; the delete
        // tool sends none, so policies treat it as destructive.
        let annotations = match tool.get("name").and_then(Value::as_str) {
            Some("whmcs_list_tickets" | "whmcs_get_ticket") => json!({"readOnlyHint": true}),
            Some("whmcs_update_ticket") => json!({"destructiveHint": false, "idempotentHint": true}),
            Some("whmcs_add_ticket_reply" | "whmcs_add_credit") => json!({"destructiveHint": false}),
            Some("whmcs_send_email") => json!({"destructiveHint": false, "openWorldHint": true}),
            Some("whmcs_close_client") => json!({"destructiveHint": true}),
            _ => return tool,
        };
        if let Some(map) = tool.as_object_mut() {
            map.insert("annotations".into(), annotations);
        }
        tool
    })
    .collect()
}
