//! The console's HTTP side: routes, sign-in sessions (an `HttpOnly; SameSite=Strict`
//! cookie), CSRF tokens bound to the session, and the approve and decline actions.

use super::approvers::{Approver, ApproversFileWatch};
use super::file_watch::FileWatch;
use super::pages::{self, Viewer};
use crate::gateway::auth::Tokens;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use mcp_policy::mcp::{ApprovalBoard, BoardEntry, Verdict};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const SESSION_COOKIE: &str = "mcp_policy_console";
const LOGIN_COOKIE: &str = "mcp_policy_login";
const OAUTH_COOKIE: &str = "mcp_policy_oauth";
const SESSION_LIFE: Duration = Duration::from_secs(8 * 3600);
const MAX_SESSIONS: usize = 10_000;
const MAX_FORM: usize = 16 * 1024;

/// How a session's approver signed in: looked up in the approvers file on every request,
/// so one removed from it loses access at once.
#[derive(Clone)]
enum SignedIn {
    /// With a token of the approvers file (its digest).
    Token(String),
    /// Through the authorization server, as this identity.
    OAuth(String),
}

struct Session {
    who: SignedIn,
    csrf: String,
    started: Instant,
}

/// Everything a console request needs.
pub struct Console {
    pub board: Arc<dyn ApprovalBoard>,
    pub approvers: ApproversFileWatch,
    /// The gateway's tokens file: an approver whose token is also a caller's token has
    /// that caller's grant as their own.
    pub tokens: Option<FileWatch<Tokens>>,
    /// Whether cookies may travel over plain HTTP (a console on loopback).
    pub loopback: bool,
    /// Sign-in through the authorization server, when configured.
    pub oauth: Option<super::oauth::ConsoleOAuth>,
    sessions: Mutex<HashMap<String, Session>>,
}

type Page = Response<Full<Bytes>>;

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    let _ = getrandom::fill(&mut bytes);
    hex::encode(bytes)
}

fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Equal in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn page(status: StatusCode, html: String) -> Page {
    let mut response = Response::new(Full::new(Bytes::from(html)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn redirect(to: &'static str) -> Page {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::from_static(to));
    response
}

/// The headers every answer carries: nothing from elsewhere, no framing, no caching.
fn guarded(mut response: Page) -> Page {
    let headers = response.headers_mut();
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn cookie(request_headers: &http::HeaderMap, name: &str) -> Option<String> {
    request_headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

impl Console {
    pub fn new(
        board: Arc<dyn ApprovalBoard>,
        approvers: ApproversFileWatch,
        tokens: Option<FileWatch<Tokens>>,
        loopback: bool,
        oauth: Option<super::oauth::ConsoleOAuth>,
    ) -> Console {
        Console {
            board,
            approvers,
            tokens,
            loopback,
            oauth,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn set_cookie(&self, response: &mut Page, name: &str, value: &str, max_age: u64) {
        let secure = if self.loopback { "" } else { "; Secure" };
        let text =
            format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
        if let Ok(value) = HeaderValue::try_from(text) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }

    /// The signed-in approver and their session's CSRF token.
    fn signed_in(&self, headers: &http::HeaderMap) -> Option<(Approver, String)> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let (who, csrf) = {
            let mut sessions = self.sessions.lock().ok()?;
            sessions.retain(|_, s| s.started.elapsed() < SESSION_LIFE);
            let session = sessions.get(&id)?;
            (session.who.clone(), session.csrf.clone())
        };
        let approver = match who {
            SignedIn::Token(digest) => self.approvers.by_digest(&digest)?,
            SignedIn::OAuth(name) => self.approvers.by_name(&name)?,
        };
        Some((approver, csrf))
    }

    /// The grants that are the approver's own: their name, and the grant of their token
    /// in the gateway's tokens file.
    fn own_grants(&self, approver: &Approver) -> Vec<String> {
        let tokens = self.tokens.as_ref().and_then(FileWatch::current);
        tokens
            .zip(approver.digest.as_ref())
            .and_then(|(tokens, digest)| tokens.get(digest).map(|t| t.grant().to_owned()))
            .into_iter()
            .collect()
    }

    pub async fn serve<B>(self: Arc<Self>, request: Request<B>) -> Page
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, MAX_FORM).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return guarded(page(StatusCode::PAYLOAD_TOO_LARGE, String::new())),
        };
        let path = parts.uri.path().to_owned();
        let response = match (&parts.method, path.as_str()) {
            (&Method::GET, "/style.css") => {
                let mut response = Response::new(Full::new(Bytes::from(pages::style())));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/css"));
                response
            }
            (&Method::GET, "/login") => self.login_page(&parts.headers, None),
            (&Method::GET, "/login/oauth") => self.oauth_start().await,
            (&Method::GET, "/login/callback") => {
                self.oauth_finish(&parts.headers, parts.uri.query()).await
            }
            (&Method::GET, "/favicon.ico") => page(StatusCode::NOT_FOUND, String::new()),
            (&Method::POST, "/login") => self.login(&parts.headers, &body),
            _ => match self.signed_in(&parts.headers) {
                None if parts.method == Method::GET => redirect("/login"),
                None => page(
                    StatusCode::FORBIDDEN,
                    pages::message(None, "Refused", "Sign in first."),
                ),
                Some((approver, csrf)) => {
                    let viewer = Viewer {
                        name: &approver.name,
                        csrf: &csrf,
                    };
                    let posted = form(&body);
                    if parts.method == Method::POST
                        && !posted.get("csrf").is_some_and(|sent| same(sent, &csrf))
                    {
                        let text = "The form's CSRF token is missing or wrong: reload the page and try again.";
                        page(
                            StatusCode::FORBIDDEN,
                            pages::message(Some(&viewer), "Refused", text),
                        )
                    } else {
                        self.signed_in_route(
                            &parts.method,
                            &path,
                            &approver,
                            &viewer,
                            &posted,
                            &parts.headers,
                        )
                    }
                }
            },
        };
        guarded(response)
    }

    /// The sign-in page, with a CSRF token kept in a cookie of its own (the one the
    /// browser has, if any: two tabs, or a page's other requests, must not undo it).
    fn login_page(&self, headers: &http::HeaderMap, problem: Option<&str>) -> Page {
        let csrf = cookie(headers, LOGIN_COOKIE)
            .filter(|c| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()))
            .unwrap_or_else(random_token);
        let status = if problem.is_some() {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::OK
        };
        let mut response = page(status, pages::login(&csrf, problem, self.oauth.is_some()));
        self.set_cookie(&mut response, LOGIN_COOKIE, &csrf, 3600);
        response
    }

    fn login(&self, headers: &http::HeaderMap, body: &[u8]) -> Page {
        let posted = form(body);
        let expected = cookie(headers, LOGIN_COOKIE);
        let csrf_ok =
            matches!((posted.get("csrf"), &expected), (Some(sent), Some(exp)) if same(sent, exp));
        if !csrf_ok {
            let text = "The sign-in form's CSRF token is missing or wrong: reload the page.";
            return page(StatusCode::FORBIDDEN, pages::message(None, "Refused", text));
        }
        let approver = posted.get("token").and_then(|t| self.approvers.by_token(t));
        let Some(digest) = approver.and_then(|a| a.digest) else {
            return self.login_page(headers, Some("That token is not an approver's."));
        };
        self.start_session(SignedIn::Token(digest))
    }

    /// Signs an approver in: a fresh session id in the session cookie, with a CSRF token
    /// of its own.
    fn start_session(&self, who: SignedIn) -> Page {
        let id = random_token();
        if let Ok(mut sessions) = self.sessions.lock() {
            if sessions.len() >= MAX_SESSIONS {
                sessions.retain(|_, s| s.started.elapsed() < SESSION_LIFE / 8);
            }
            sessions.insert(
                id.clone(),
                Session {
                    who,
                    csrf: random_token(),
                    started: Instant::now(),
                },
            );
        }
        let mut response = redirect("/");
        self.set_cookie(&mut response, SESSION_COOKIE, &id, SESSION_LIFE.as_secs());
        self.set_cookie(&mut response, LOGIN_COOKIE, "", 0);
        response
    }

    /// `GET /login/oauth`: off to the authorization server, the sign-in's `state` kept in
    /// a cookie (`SameSite=Lax`: the way back is a navigation from the server's site).
    async fn oauth_start(&self) -> Page {
        let Some(oauth) = &self.oauth else {
            return page(
                StatusCode::NOT_FOUND,
                pages::message(None, "Not found", "No such page."),
            );
        };
        match oauth.start().await {
            Ok((url, state)) => {
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::SEE_OTHER;
                if let Ok(location) = HeaderValue::try_from(url) {
                    response.headers_mut().insert(LOCATION, location);
                }
                let secure = if self.loopback { "" } else { "; Secure" };
                let text = format!(
                    "{OAUTH_COOKIE}={state}; Path=/login; HttpOnly; SameSite=Lax; Max-Age=600{secure}"
                );
                if let Ok(value) = HeaderValue::try_from(text) {
                    response.headers_mut().append(SET_COOKIE, value);
                }
                response
            }
            Err(e) => {
                let text = format!("The authorization server cannot be reached: {e}");
                page(
                    StatusCode::BAD_GATEWAY,
                    pages::message(None, "Unavailable", &text),
                )
            }
        }
    }

    /// `GET /login/callback?code&state`: the code exchanged, the token verified, and its
    /// identity signed in if the approvers file names it.
    async fn oauth_finish(&self, headers: &http::HeaderMap, query: Option<&str>) -> Page {
        let Some(oauth) = &self.oauth else {
            return page(
                StatusCode::NOT_FOUND,
                pages::message(None, "Not found", "No such page."),
            );
        };
        let fields = form(query.unwrap_or_default().as_bytes());
        let refused =
            |text: &str| page(StatusCode::FORBIDDEN, pages::message(None, "Refused", text));
        if let Some(error) = fields.get("error") {
            return refused(&format!("The authorization server said: {error}"));
        }
        let (Some(state), Some(code)) = (fields.get("state"), fields.get("code")) else {
            return refused("The sign-in came back without a code and state; start again.");
        };
        let cookie_state = cookie(headers, OAUTH_COOKIE);
        match oauth.finish(state, cookie_state.as_deref(), code).await {
            Ok(identity) if self.approvers.by_name(&identity).is_some() => {
                self.start_session(SignedIn::OAuth(identity))
            }
            Ok(identity) => refused(&format!("{identity} is not an approver of this console.")),
            Err(e) => refused(&e),
        }
    }

    fn signed_in_route(
        &self,
        method: &Method,
        path: &str,
        approver: &Approver,
        viewer: &Viewer<'_>,
        posted: &HashMap<String, String>,
        headers: &http::HeaderMap,
    ) -> Page {
        let now = now_ms();
        let own = self.own_grants(approver);
        let failed = |e: mcp_policy::store::StoreError| {
            let text = format!("The approval board cannot be read: {e}");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::message(Some(viewer), "Unavailable", &text),
            )
        };
        // One approval's page, with why this approver may not decide it (if so).
        let one = |entry: &BoardEntry| {
            let blocked = approver
                .may_decide(entry.approval.grant.as_deref(), &own)
                .err();
            page(
                StatusCode::OK,
                pages::one(viewer, entry, blocked.as_deref(), now),
            )
        };
        let not_found = |text: &str| {
            page(
                StatusCode::NOT_FOUND,
                pages::message(Some(viewer), "Not found", text),
            )
        };
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            (&Method::GET, [""]) => {
                let (pending, decided) = match (self.board.pending(now), self.board.decided()) {
                    (Ok(pending), Ok(decided)) => (pending, decided),
                    (Err(e), _) | (_, Err(e)) => return failed(e),
                };
                let shown: Vec<_> = pending
                    .into_iter()
                    .filter(|a| match &approver.grants {
                        Some(grants) => grants
                            .iter()
                            .any(|g| Some(g.as_str()) == a.grant.as_deref()),
                        None => true,
                    })
                    .map(|a| {
                        let blocked = approver.may_decide(a.grant.as_deref(), &own).err();
                        (a, blocked)
                    })
                    .collect();
                page(StatusCode::OK, pages::list(viewer, &shown, &decided, now))
            }
            (&Method::POST, ["logout"]) => {
                if let (Some(id), Ok(mut sessions)) =
                    (cookie(headers, SESSION_COOKIE), self.sessions.lock())
                {
                    sessions.remove(&id);
                }
                let mut response = redirect("/login");
                self.set_cookie(&mut response, SESSION_COOKIE, "", 0);
                response
            }
            (&Method::GET, ["approvals", id]) => match self.board.get(id) {
                Ok(Some(entry)) => one(&entry),
                Ok(None) => not_found("No such approval (it may have expired)."),
                Err(e) => failed(e),
            },
            (&Method::POST, ["approvals", id, action @ ("approve" | "decline")]) => {
                let entry = match self.board.get(id) {
                    Ok(Some(entry)) => entry,
                    Ok(None) => return not_found("No such approval (it may have expired)."),
                    Err(e) => return failed(e),
                };
                if let Err(why) = approver.may_decide(entry.approval.grant.as_deref(), &own) {
                    return page(
                        StatusCode::FORBIDDEN,
                        pages::message(Some(viewer), "Refused", &why),
                    );
                }
                let note = posted
                    .get("note")
                    .map(|n| n.trim().chars().take(500).collect::<String>())
                    .filter(|n| !n.is_empty());
                let verdict = Verdict::by(&approver.name, *action == "approve", note, now);
                match self.board.decide(id, verdict) {
                    Ok(Some(decided)) => one(&decided),
                    Ok(None) => not_found("No such approval."),
                    Err(e) => failed(e),
                }
            }
            _ => page(
                StatusCode::NOT_FOUND,
                pages::message(Some(viewer), "Not found", "No such page."),
            ),
        }
    }
}
