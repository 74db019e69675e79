//! `http::oauth::Verifier`: every check of an access token, on a manual clock, with keys
//! made for these tests (`tests/fixtures/oauth`) served as the issuer's JWKS. The real
//! authorization server (`oidc-provider`) drives the gateway end to end in
//! `cli/tests/oauth_gateway.rs`.

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
