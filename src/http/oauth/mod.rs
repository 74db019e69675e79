//! Feature `oauth`: the gateway as an OAuth 2.1 resource server, as the MCP authorization
//! specification describes. Access tokens are JWTs from the organisation's authorization
//! server (Okta, Entra ID, Keycloak, Auth0, …), verified against its published keys; the
//! verified identity (grant, agent, scopes) is what [`PolicyLayer`](super::PolicyLayer)
//! counts limits by and checks rules' `scopes` against.
//!
//! - [`OAuthConfig`]: the issuer, this resource, which claims name whom.
//! - [`Verifier`]: checks one bearer token (signature by a key of the issuer's JWKS with
//!   `RS256`, `PS256`, `ES256` or `EdDSA`, never `none` or an HMAC; `iss`; `aud` holding
//!   the resource; `exp`, `nbf`, `iat` with leeway; 16 KiB at most) and keeps the keys,
//!   fetched through a [`JwksSource`] you provide (any HTTP client).
//! - [`OAuthLayer`]: a `tower` layer that serves the protected resource metadata
//!   (RFC 9728), answers 401 with the `WWW-Authenticate` challenge MCP clients follow to
//!   log in, and hands the verified token on in the request's extensions, without its
//!   `Authorization` header. [`identity`] reads it back for `PolicyLayer`.
//!
//! Verification writes no cryptography of its own: signatures are `jsonwebtoken`'s (pure
//! Rust). Which check failed is for the operator (`TokenError`), never the client: every
//! failure gets the same challenge.

mod config;
mod keys;
mod layer;
mod token;

pub use config::OAuthConfig;
pub use keys::{JwksDocument, JwksSource};
pub use layer::{
    bearer_token, identity, metadata_response, unauthorized, OAuthLayer, OAuthService,
};
pub use token::{TokenError, Verified, Verifier};
