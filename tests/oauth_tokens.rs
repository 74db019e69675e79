//! `http::oauth`: every check of an access token by the `Verifier`, and the `OAuthLayer`
//! in front of the `PolicyLayer` (metadata, 401s, identity per `sub`, step-up), on a
//! manual clock, with keys made for these tests (`tests/fixtures/oauth`) served as the
//! issuer's JWKS. The real authorization server (`oidc-provider`) drives the gateway end
//! to end in `cli/tests/oauth_gateway.rs`.

#![cfg(feature = "oauth")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "common/block_on.rs"]
mod block_on;

use block_on::block_on;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_policy::http::oauth::{JwksDocument, JwksSource, OAuthConfig, TokenError, Verifier};
use mcp_policy::{ManualClock, Timestamp};
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ISSUER: &str = "https://auth.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";
/// 2026-12-07T00:00:00Z.
const NOW: u64 = 1_796_601_600;

fn key(name: &str) -> EncodingKey {
    let pem = std::fs::read(format!("tests/fixtures/oauth/{name}.pem")).unwrap();
    match name {
        "rsa" => EncodingKey::from_rsa_pem(&pem).unwrap(),
        _ => EncodingKey::from_ec_pem(&pem).unwrap(),
    }
}

/// The public JWK of a key, with its `kid` and `alg`.
fn jwk(name: &str, alg: Algorithm) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&key(name), alg).unwrap();
    jwk.common.key_id = Some(name.to_owned());
    jwk
}

/// The public JWK of a key without `alg`: any algorithm of its kind.
fn jwk_any(name: &str, alg: Algorithm) -> Jwk {
    let mut jwk = jwk(name, alg);
    jwk.common.key_algorithm = None;
    jwk
}

/// The issuer's JWKS, as its server publishes it now; counts fetches; `None`: down.
#[derive(Clone, Default)]
struct Issuer {
    published: Arc<Mutex<Option<JwkSet>>>,
    fetches: Arc<AtomicUsize>,
}

impl Issuer {
    fn publishing(keys: Vec<Jwk>) -> Issuer {
        let issuer = Issuer::default();
        issuer.publish(keys);
        issuer
    }

    fn publish(&self, keys: Vec<Jwk>) {
        *self.published.lock().unwrap() = Some(JwkSet { keys });
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl JwksSource for Issuer {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<JwksDocument, String>> + Send + '_>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let published = self.published.lock().unwrap().clone();
        Box::pin(async move {
            let set = published.ok_or("connection refused")?;
            Ok(JwksDocument {
                body: serde_json::to_string(&set).unwrap(),
                max_age: None,
            })
        })
    }
}

fn verifier_of(issuer: &Issuer, clock: &ManualClock) -> Verifier {
    let config = OAuthConfig::new(ISSUER, RESOURCE).audience("api://tickets");
    let verifier = Verifier::new(config, issuer.clone()).clock(clock.clone());
    let _ = block_on(verifier.load_keys());
    verifier
}

fn clock() -> ManualClock {
    ManualClock::starting_at(Timestamp::from_millis(NOW * 1000))
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": RESOURCE, "sub": "user-7", "client_id": "agent-a",
           "scope": "tickets:read tickets:write", "iat": NOW - 10, "exp": NOW + 600})
}

fn sign(name: &str, alg: Algorithm, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(name.to_owned());
    jsonwebtoken::encode(&header, claims, &key(name)).unwrap()
}

fn with(changes: Value) -> Value {
    let mut claims = claims();
    for (name, value) in changes.as_object().unwrap() {
        match value {
            Value::Null => claims.as_object_mut().unwrap().remove(name),
            value => claims
                .as_object_mut()
                .unwrap()
                .insert(name.clone(), value.clone()),
        };
    }
    claims
}

fn b64(value: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[test]
fn a_token_of_the_issuer_for_this_resource_names_who_calls() {
    let issuer = Issuer::publishing(vec![
        jwk("ec-1", Algorithm::ES256),
        jwk_any("rsa", Algorithm::RS256),
    ]);
    let verifier = verifier_of(&issuer, &clock());
    let verified = block_on(verifier.verify(&sign("ec-1", Algorithm::ES256, &claims()))).unwrap();
    assert_eq!(verified.grant(), "user-7");
    assert_eq!(verified.agent(), Some("agent-a"));
    assert_eq!(verified.scopes(), ["tickets:read", "tickets:write"]);
    // RS256 and PS256 with the RSA key; `scp` as an array; an accepted audience.
    for alg in [Algorithm::RS256, Algorithm::PS256] {
        let claims = with(json!({"scope": null, "scp": ["a", "b"], "aud": ["x", "api://tickets"]}));
        let verified = block_on(verifier.verify(&sign("rsa", alg, &claims))).unwrap();
        assert_eq!(verified.scopes(), ["a", "b"]);
    }
    assert_eq!(issuer.fetches(), 1, "keys fetched once, at start");
    // A key that names its algorithm verifies that one only.
    let pinned = Issuer::publishing(vec![jwk("rsa", Algorithm::RS256)]);
    let strict = verifier_of(&pinned, &clock());
    assert!(block_on(strict.verify(&sign("rsa", Algorithm::RS256, &claims()))).is_ok());
    let ps = sign("rsa", Algorithm::PS256, &claims());
    assert!(matches!(
        block_on(strict.verify(&ps)),
        Err(TokenError::UnknownKey(_))
    ));
}

#[test]
fn times_are_checked_with_a_minute_of_leeway() {
    let issuer = Issuer::publishing(vec![jwk("ec-1", Algorithm::ES256)]);
    let verifier = verifier_of(&issuer, &clock());
    let verify =
        |claims: Value| block_on(verifier.verify(&sign("ec-1", Algorithm::ES256, &claims)));
    assert_eq!(
        verify(with(json!({"exp": NOW - 61}))),
        Err(TokenError::Expired)
    );
    assert!(
        verify(with(json!({"exp": NOW - 30}))).is_ok(),
        "within the leeway"
    );
    assert_eq!(
        verify(with(json!({"nbf": NOW + 120}))),
        Err(TokenError::NotYetValid)
    );
    assert_eq!(
        verify(with(json!({"iat": NOW + 120}))),
        Err(TokenError::NotYetValid)
    );
    assert!(
        verify(with(json!({"nbf": NOW + 30}))).is_ok(),
        "within the leeway"
    );
    assert_eq!(
        verify(with(json!({"exp": null}))),
        Err(TokenError::Claim("exp".into())),
        "exp is required"
    );
}

#[test]
fn another_issuer_or_resource_is_refused() {
    let issuer = Issuer::publishing(vec![jwk("ec-1", Algorithm::ES256)]);
    let verifier = verifier_of(&issuer, &clock());
    let verify =
        |claims: Value| block_on(verifier.verify(&sign("ec-1", Algorithm::ES256, &claims)));
    assert_eq!(
        verify(with(json!({"iss": "https://evil.example"}))),
        Err(TokenError::Issuer)
    );
    assert_eq!(
        verify(with(json!({"iss": format!("{ISSUER}/")}))),
        Err(TokenError::Issuer)
    );
    assert_eq!(verify(with(json!({"iss": null}))), Err(TokenError::Issuer));
    let other = "https://mcp.example.com/other";
    assert_eq!(
        verify(with(json!({"aud": other}))),
        Err(TokenError::Audience)
    );
    assert_eq!(
        verify(with(json!({"aud": null}))),
        Err(TokenError::Audience)
    );
    assert_eq!(
        verify(with(json!({"sub": null}))),
        Err(TokenError::Claim("sub".into())),
        "no grant, no identity"
    );
}

#[test]
fn forged_tokens_are_refused() {
    let issuer = Issuer::publishing(vec![
        jwk("ec-1", Algorithm::ES256),
        jwk("rsa", Algorithm::RS256),
    ]);
    let verifier = verifier_of(&issuer, &clock());
    let verify = |token: &str| block_on(verifier.verify(token));
    // `alg: none`, unsigned.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "ec-1"})),
        b64(&claims())
    );
    assert!(
        matches!(verify(&none), Err(TokenError::Algorithm(_))),
        "{:?}",
        verify(&none)
    );
    // HS256 keyed with the RSA public key, which anyone can read from the JWKS.
    let public = std::fs::read("tests/fixtures/oauth/rsa.pub.pem").unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa".into());
    let hs = jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(&public)).unwrap();
    assert!(
        matches!(verify(&hs), Err(TokenError::Algorithm(_))),
        "{:?}",
        verify(&hs)
    );
    // A token for the EC key claiming RS256, and one for the RSA key claiming ES256.
    let mut mismatched = Header::new(Algorithm::RS256);
    mismatched.kid = Some("ec-1".into());
    let token = jsonwebtoken::encode(&mismatched, &claims(), &key("rsa")).unwrap();
    assert!(
        matches!(verify(&token), Err(TokenError::UnknownKey(_))),
        "{:?}",
        verify(&token)
    );
    // A payload changed after signing.
    let good = sign("ec-1", Algorithm::ES256, &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&with(json!({"sub": "admin"}))),
        parts[2]
    );
    assert_eq!(verify(&tampered), Err(TokenError::Signature));
    // Garbage, and a token past the size bound (refused unread).
    assert_eq!(verify("not.a.jwt"), Err(TokenError::Malformed));
    let huge = sign(
        "ec-1",
        Algorithm::ES256,
        &with(json!({"pad": "x".repeat(17_000)})),
    );
    assert_eq!(verify(&huge), Err(TokenError::TooLarge(16 * 1024)));
    assert_eq!(
        issuer.fetches(),
        1 + 1,
        "the mismatched kid asked for one refetch"
    );
}

#[test]
fn a_rotated_key_is_fetched_at_most_every_30_seconds() {
    let clock = clock();
    let issuer = Issuer::publishing(vec![jwk("ec-1", Algorithm::ES256)]);
    let verifier = verifier_of(&issuer, &clock);
    let rotated = sign("ec-2", Algorithm::ES256, &claims());
    // Unknown to the issuer too: one refetch (the start's fetch does not hold it back),
    // then none for 30 s.
    assert!(matches!(
        block_on(verifier.verify(&rotated)),
        Err(TokenError::UnknownKey(_))
    ));
    assert_eq!(issuer.fetches(), 2);
    issuer.publish(vec![jwk("ec-2", Algorithm::ES256)]);
    clock.advance(Duration::from_secs(10));
    assert!(
        block_on(verifier.verify(&rotated)).is_err(),
        "too soon to fetch again"
    );
    assert_eq!(issuer.fetches(), 2);
    clock.advance(Duration::from_secs(21));
    assert!(
        block_on(verifier.verify(&rotated)).is_ok(),
        "picked up after 30 s"
    );
    assert_eq!(issuer.fetches(), 3);
    let old = sign("ec-1", Algorithm::ES256, &claims());
    clock.advance(Duration::from_secs(1));
    assert!(
        block_on(verifier.verify(&old)).is_err(),
        "the retired key no longer verifies"
    );
}

#[test]
fn an_issuer_down_at_start_lets_nothing_through_until_it_is_back() {
    let clock = clock();
    let issuer = Issuer::default();
    let verifier =
        Verifier::new(OAuthConfig::new(ISSUER, RESOURCE), issuer.clone()).clock(clock.clone());
    assert!(block_on(verifier.load_keys()).is_err());
    let token = sign("ec-1", Algorithm::ES256, &claims());
    assert!(matches!(
        block_on(verifier.verify(&token)),
        Err(TokenError::UnknownKey(_))
    ));
    issuer.publish(vec![jwk("ec-1", Algorithm::ES256)]);
    clock.advance(Duration::from_secs(31));
    assert!(
        block_on(verifier.verify(&token)).is_ok(),
        "keys fetched once it is back"
    );
}

#[test]
fn keys_are_fetched_again_when_their_max_age_passes_and_kept_if_that_fails() {
    let clock = clock();
    let issuer = Issuer::publishing(vec![jwk("ec-1", Algorithm::ES256)]);
    let verifier = verifier_of(&issuer, &clock);
    let token = sign("ec-1", Algorithm::ES256, &with(json!({"exp": NOW + 3600})));
    clock.advance(Duration::from_secs(301));
    *issuer.published.lock().unwrap() = None;
    assert!(
        block_on(verifier.verify(&token)).is_ok(),
        "stale keys stay in use"
    );
    assert_eq!(
        issuer.fetches(),
        2,
        "a fetch was tried when the max-age passed"
    );
}

/// An upstream that records what reaches it: each message, and whether it carried an
/// `Authorization` header.
#[derive(Clone, Default)]
struct Upstream {
    seen: Arc<Mutex<Vec<(Value, bool)>>>,
}

impl tower_service::Service<http::Request<http_body_util::Full<bytes::Bytes>>> for Upstream {
    type Response = http::Response<http_body_util::Full<bytes::Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<http_body_util::Full<bytes::Bytes>>) -> Self::Future {
        use http_body_util::BodyExt;
        let authorized = request.headers().contains_key("authorization");
        let body = block_on(request.into_body().collect()).unwrap().to_bytes();
        let message: Value = serde_json::from_slice(&body).unwrap();
        self.seen
            .lock()
            .unwrap()
            .push((message.clone(), authorized));
        let answer = json!({"jsonrpc": "2.0", "id": message["id"],
            "result": {"content": [{"type": "text", "text": "ran"}]}});
        let response = http::Response::builder()
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                answer.to_string(),
            )))
            .unwrap();
        std::future::ready(Ok(response))
    }
}

#[test]
fn the_oauth_layer_in_front_of_the_policy_layer() {
    use mcp_policy::http::oauth::{identity, OAuthLayer};
    use mcp_policy::http::PolicyLayer;
    use tower_layer::Layer;
    use tower_service::Service;

    let clock = clock();
    let issuer = Issuer::publishing(vec![jwk("ec-1", Algorithm::ES256)]);
    let config = OAuthConfig::new(ISSUER, RESOURCE).scopes_supported(["tickets:read"]);
    let metadata_url = config.metadata_url();
    let oauth = OAuthLayer::new(Verifier::new(config, issuer).clock(clock.clone()));
    block_on(oauth.verifier().load_keys()).unwrap();
    let policy: mcp_policy::Policy = r#"{"version": "1", "tools": {
        "get_ticket": {"limits": [{"window": "minute", "max": 1, "scope": "grant"}]},
        "update_ticket": {"scopes": ["tickets:write"]}}}"#
        .parse()
        .unwrap();
    let engine = mcp_policy::Engine::builder(policy).clock(clock).build();
    let policy = PolicyLayer::new(engine, identity).resource_metadata(metadata_url.clone());
    let upstream = Upstream::default();
    let mut service = oauth.layer(policy.layer(upstream.clone()));
    let mut send = |method: &str, path: &str, token: Option<&str>, body: &str| {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("https://mcp.example.com{path}"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_owned(),
            )))
            .unwrap();
        let response = block_on(service.call(request)).unwrap();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        use http_body_util::BodyExt;
        let status = response.status().as_u16();
        let body = block_on(response.into_body().collect()).unwrap().to_bytes();
        (
            status,
            challenge,
            serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
        )
    };
    let call = |tool: &str| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": {}}})
        .to_string()
    };

    let (status, _, metadata) = send("GET", "/.well-known/oauth-protected-resource/mcp", None, "");
    assert_eq!(status, 200);
    assert_eq!(metadata["authorization_servers"], json!([ISSUER]));
    let (status, challenge, _) = send("POST", "/mcp", None, &call("get_ticket"));
    assert_eq!(status, 401);
    assert_eq!(
        challenge.unwrap(),
        format!("Bearer resource_metadata=\"{metadata_url}\"")
    );
    let forged = sign(
        "ec-1",
        Algorithm::ES256,
        &with(json!({"aud": "https://elsewhere/mcp"})),
    );
    let (status, challenge, _) = send("POST", "/mcp", Some(&forged), &call("get_ticket"));
    assert_eq!(status, 401);
    assert!(challenge
        .unwrap()
        .starts_with("Bearer error=\"invalid_token\""));
    assert!(
        upstream.seen.lock().unwrap().is_empty(),
        "nothing reached the upstream"
    );

    let reader = sign(
        "ec-1",
        Algorithm::ES256,
        &with(json!({"scope": "tickets:read"})),
    );
    let (status, _, answer) = send("POST", "/mcp", Some(&reader), &call("get_ticket"));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(upstream.seen.lock().unwrap().len(), 1);
    assert!(
        !upstream.seen.lock().unwrap()[0].1,
        "the token never reaches the upstream"
    );
    // Limits count per `sub`: this grant's minute is used; another subject's is not.
    let (_, _, limited) = send("POST", "/mcp", Some(&reader), &call("get_ticket"));
    assert_eq!(
        limited["result"]["structuredContent"]["code"],
        "rate_limited"
    );
    let other = sign(
        "ec-1",
        Algorithm::ES256,
        &with(json!({"sub": "user-8", "scope": "tickets:read"})),
    );
    assert_eq!(
        send("POST", "/mcp", Some(&other), &call("get_ticket")).0,
        200
    );
    // Step-up: 403 naming the scopes to ask for, before anything reaches the upstream.
    let seen = upstream.seen.lock().unwrap().len();
    let (status, challenge, _) = send("POST", "/mcp", Some(&reader), &call("update_ticket"));
    assert_eq!(status, 403);
    assert_eq!(
        challenge.unwrap(),
        format!("Bearer error=\"insufficient_scope\", scope=\"tickets:write tickets:read\", resource_metadata=\"{metadata_url}\"")
    );
    assert_eq!(upstream.seen.lock().unwrap().len(), seen);
}
