// A real OAuth 2.1 authorization server for the gateway's tests: `oidc-provider` (npm),
// issuing JWT access tokens for a resource (RFC 8707 resource indicators) to clients
// that use the client-credentials grant.
//
// Usage: node oidc_server.mjs RESOURCE [RESOURCE...]
// Prints one JSON line when listening: {"issuer": "http://127.0.0.1:PORT"}.
//
// Clients: agent-a / secret-a and agent-b / secret-b, each allowed the scopes
// `tickets:read tickets:write`. With CONSOLE_REDIRECT_URI set, also `console`: a public
// client of the authorization code grant with PKCE redirecting there, whose users sign
// in through oidc-provider's development login and consent pages (any login name).
//
// Test-only endpoints (never part of a real server), for tokens no real server issues:
// - POST /__mint {"claims": {...}, "key": "ec" | "rsa" | "stranger" | "hs256-rsa-public",
//   "header": {...}} → {"token": "..."}, signed with that key;
// - POST /__rotate → a new signing key replaces the old one in the JWKS.
import Provider from 'oidc-provider';
import http from 'node:http';
import crypto from 'node:crypto';

const resources = process.argv.slice(2);
if (resources.length === 0) {
  console.error('usage: node oidc_server.mjs RESOURCE [RESOURCE...]');
  process.exit(2);
}
const SCOPES = 'tickets:read tickets:write';

function ecKey(kid) {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { kid, privateKey, jwk: { ...privateKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' } };
}
function rsaKey(kid) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    kid, privateKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }),
    jwk: { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' },
  };
}

let generation = 1;
let ec = ecKey('ec-1');
const rsa = rsaKey('rsa-1');
const stranger = ecKey('stranger');

const consoleRedirect = process.env.CONSOLE_REDIRECT_URI;

function makeProvider(issuer) {
  const clients = ['a', 'b'].map((n) => ({
    client_id: `agent-${n}`,
    client_secret: `secret-${n}`,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: SCOPES,
  }));
  if (consoleRedirect) {
    clients.push({
      client_id: 'console',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: [consoleRedirect],
    });
  }
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [ec.jwk, rsa.jwk] },
    scopes: SCOPES.split(' '),
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: Boolean(consoleRedirect) },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resources[0],
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          if (!resources.includes(resourceIndicator)) {
            throw new Provider.errors.InvalidTarget();
          }
          return {
            scope: SCOPES,
            audience: resourceIndicator,
            accessTokenTTL: 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
  });
  provider.proxy = true;
  return provider;
}

const b64 = (value) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

function mint({ claims, key = 'ec', header = {} }) {
  const pick = { ec, rsa, stranger }[key === 'hs256-rsa-public' ? 'rsa' : key];
  const alg = key === 'hs256-rsa-public' ? 'HS256' : key === 'rsa' ? 'RS256' : 'ES256';
  const head = { alg, typ: 'at+jwt', kid: pick.kid, ...header };
  const input = `${b64(head)}.${b64(claims)}`;
  let signature;
  if (key === 'hs256-rsa-public') {
    signature = crypto.createHmac('sha256', rsa.publicPem).update(input).digest();
  } else if (alg === 'RS256') {
    signature = crypto.sign('sha256', Buffer.from(input), pick.privateKey);
  } else {
    signature = crypto.sign('sha256', Buffer.from(input), { key: pick.privateKey, dsaEncoding: 'ieee-p1363' });
  }
  return `${input}.${signature.toString('base64url')}`;
}

function readBody(req) {
  return new Promise((resolve) => {
    let text = '';
    req.on('data', (chunk) => { text += chunk; });
    req.on('end', () => resolve(text));
  });
}

let provider;
const server = http.createServer(async (req, res) => {
  const answer = (value) => {
    const body = JSON.stringify(value);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  if (req.method === 'POST' && req.url === '/__mint') {
    answer({ token: mint(JSON.parse(await readBody(req))) });
  } else if (req.method === 'POST' && req.url === '/__rotate') {
    generation += 1;
    ec = ecKey(`ec-${generation}`);
    provider = makeProvider(provider.issuer);
    answer({ kid: ec.kid });
  } else {
    provider.callback()(req, res);
  }
});
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  provider = makeProvider(issuer);
  console.log(JSON.stringify({ issuer }));
});
