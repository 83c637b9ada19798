// An independent identity provider for tower-oauth's interop test (tests/oidc_provider.rs):
// node-oidc-provider issuing client_credentials JWT access tokens (RFC 9068) on 127.0.0.1.
//
//   node tests/oidc/idp.mjs          (after `npm ci` in tests/oidc; scripts/test does that)
//
// Prints `ISSUER=http://127.0.0.1:PORT` on stdout once it listens; the issuer is that URL.
// Exits when stdin closes (so a test that dies cannot leak it), or on SIGTERM/SIGINT. Run it
// by hand with IDP_IGNORE_STDIN=1 to keep it up with stdin at EOF. IDP_PORT picks a port
// (default: any free one).
//
// Besides the provider's own routes (/.well-known/openid-configuration, /jwks, /token, ...):
//   POST /__rotate  rotates the signing keys: a new Provider instance whose keystore is
//                   [new RS256, new ES256, previous RS256, previous ES256]; the new keys sign,
//                   the previous ones stay published in the JWKS so tokens they signed remain
//                   verifiable. Answers {"generation": n, "kids": {"RS256": ..., "ES256": ...}}.
//   GET  /__stats   how often each endpoint was requested, and the current generation.
//   GET  /__jwe_keys the resource server's PRIVATE decryption key as a JWK Set (RSA 2048,
//                   kid, alg RSA-OAEP-256, use enc), for tests/oidc_jwe.rs. The IdP only
//                   holds the public half in its configuration; this route stands in for the
//                   resource server's own key store. Test-only, like the rest of this file.
//
// IDP_OPAQUE=1 turns on the opaque mode, for tests/introspection_oidc.rs: on top of the
// above, a resource server https://opaque.example.test whose access tokens are opaque,
// `features.introspection` (RFC 7662, at the discovered `introspection_endpoint`) and two
// clients allowed to introspect, `rs-introspect` (client_secret_basic) and
// `rs-introspect-post` (client_secret_post). Without it, nothing differs.
//
// Resource servers (RFC 8707 `resource`): https://api.example.test (RS256 JWS),
// https://es256.example.test (ES256 JWS), https://jwe.example.test (RS256 JWS nested in a
// JWE: RSA-OAEP-256 + A256GCM to the key above, with its kid) and
// https://jwe-nokid.example.test (the same, without a kid in the JWE header).

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import process from 'node:process';

import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';
const API = 'https://api.example.test';
const API_ES256 = 'https://es256.example.test';
const API_JWE = 'https://jwe.example.test';
const API_JWE_NO_KID = 'https://jwe-nokid.example.test';
const SCOPES = ['read', 'write', 'admin'];
const OPAQUE = process.env.IDP_OPAQUE === '1';
const API_OPAQUE = 'https://opaque.example.test';

// RFC 9068 JWT access tokens, one signing algorithm per resource server.
// The resource server's encryption key pair, made once per process (it survives /__rotate,
// which only rotates the IdP's signing keys). oidc-provider encrypts to the public half.
const JWE_KID = `rs-enc-${randomBytes(4).toString('hex')}`;
const jweKeyPair = generateKeyPairSync('rsa', { modulusLength: 2048 });
const JWE_PRIVATE_JWKS = {
  keys: [{ ...jweKeyPair.privateKey.export({ format: 'jwk' }), kid: JWE_KID, alg: 'RSA-OAEP-256', use: 'enc' }],
};

// RFC 9068 JWT access tokens signed, then encrypted (oidc-provider 9: `jwt.encrypt` takes
// alg, enc, a public KeyObject and an optional kid; with `jwt.sign` too, the plaintext is the
// signed token and the JWE header carries `cty: "at+jwt"`, `iss` and `aud`).
function encryptedResource(audience, kid) {
  return {
    scope: SCOPES.join(' '),
    audience,
    accessTokenFormat: 'jwt',
    accessTokenTTL: 600,
    jwt: {
      sign: { alg: 'RS256' },
      encrypt: { alg: 'RSA-OAEP-256', enc: 'A256GCM', key: jweKeyPair.publicKey, ...(kid ? { kid } : {}) },
    },
  };
}

const RESOURCE_SERVERS = {
  [API]: {
    scope: SCOPES.join(' '),
    audience: API,
    accessTokenFormat: 'jwt',
    accessTokenTTL: 600,
    jwt: { sign: { alg: 'RS256' } },
  },
  [API_ES256]: {
    scope: SCOPES.join(' '),
    audience: API_ES256,
    accessTokenFormat: 'jwt',
    accessTokenTTL: 600,
    jwt: { sign: { alg: 'ES256' } },
  },
  [API_JWE]: encryptedResource(API_JWE, JWE_KID),
  [API_JWE_NO_KID]: encryptedResource(API_JWE_NO_KID, undefined),
  ...(OPAQUE
    ? { [API_OPAQUE]: { scope: SCOPES.join(' '), audience: API_OPAQUE, accessTokenFormat: 'opaque', accessTokenTTL: 600 } }
    : {}),
};

const CLIENTS = [
  // A secret full of characters that RFC 6749 §2.3.1 requires the client to
  // form-urlencode before Basic auth: proves the encoding end to end.
  {
    client_id: 'svc:special',
    client_secret: 'p@ss:w+rd%/ &=',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: SCOPES.join(' '),
  },
  {
    client_id: 'rs-test',
    client_secret: 'rs-secret',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: SCOPES.join(' '),
  },
  // The resource servers' own credentials for the introspection endpoint.
  ...(OPAQUE
    ? ['client_secret_basic', 'client_secret_post'].map((method) => ({
        client_id: method === 'client_secret_basic' ? 'rs-introspect' : 'rs-introspect-post',
        client_secret: 'introspect-secret',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: method,
        scope: SCOPES.join(' '),
      }))
    : []),
];

function log(...args) {
  console.error('[idp]', ...args);
}

let generation = 0;

/** A fresh RS256 and ES256 signing key, as private JWKs with kid, alg and use. */
function newSigningKeys() {
  generation += 1;
  const tag = `${generation}-${randomBytes(4).toString('hex')}`;
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return [
    { ...rsa, kid: `rsa-${tag}`, alg: 'RS256', use: 'sig' },
    { ...ec, kid: `ec-${tag}`, alg: 'ES256', use: 'sig' },
  ];
}

function buildProvider(issuer, keys) {
  const provider = new Provider(issuer, {
    clients: CLIENTS,
    jwks: { keys },
    scopes: ['openid', 'offline_access', ...SCOPES],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: OPAQUE },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        // A request without `resource` still gets a JWT for the main API.
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? API,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resourceIndicator) => {
          const info = RESOURCE_SERVERS[resourceIndicator];
          if (!info) throw new errors.InvalidTarget();
          return info;
        },
      },
    },
    // A function, or it would override the resource servers' accessTokenTTL.
    ttl: { ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? 600 },
  });
  provider.on('server_error', (_ctx, error) => log('server_error:', error));
  provider.on('grant.error', (_ctx, error) => log('grant.error:', error.message, error.error_description ?? ''));
  return provider;
}

const stats = { discovery: 0, jwks: 0, token: 0, introspection: 0, rotations: 0, other: 0 };
let keys = [];
let provider;
let callback;

function rotate(issuer) {
  const fresh = newSigningKeys();
  // New keys first: the provider signs with the first key that fits the algorithm.
  // Keep one previous generation published (the newest two in all).
  keys = [...fresh, ...keys].slice(0, 4);
  provider = buildProvider(issuer, keys);
  callback = provider.callback();
  return { generation, kids: { RS256: fresh[0].kid, ES256: fresh[1].kid } };
}

function json(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const server = createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0];
  if (!callback) return json(res, 503, { error: 'starting' });
  if (path === '/__rotate') {
    if (req.method !== 'POST') return json(res, 405, { error: 'POST only' });
    req.resume();
    const rotated = rotate(issuerUrl);
    stats.rotations += 1;
    log(`rotated keys: generation ${rotated.generation}, signing with ${rotated.kids.RS256} and ${rotated.kids.ES256}`);
    return json(res, 200, rotated);
  }
  if (path === '/__stats') return json(res, 200, { ...stats, generation });
  if (path === '/__jwe_keys') return json(res, 200, JWE_PRIVATE_JWKS);

  if (path === '/.well-known/openid-configuration') {
    stats.discovery += 1;
    log(`discovery fetch #${stats.discovery}`);
  } else if (path === '/jwks') {
    stats.jwks += 1;
    log(`JWKS fetch #${stats.jwks} (generation ${generation})`);
  } else if (path === '/token') {
    stats.token += 1;
  } else if (path === '/token/introspection') {
    stats.introspection += 1;
  } else {
    stats.other += 1;
  }
  // The provider of the moment: requests in flight keep the instance they started with.
  return callback(req, res);
});

let issuerUrl;

function shutdown(why) {
  log(`exiting: ${why}`);
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
}

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
if (!process.env.IDP_IGNORE_STDIN) {
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('close', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}

const port = Number.parseInt(process.env.IDP_PORT ?? '0', 10) || 0;
server.listen(port, HOST, () => {
  const { port: bound } = server.address();
  issuerUrl = `http://${HOST}:${bound}`;
  const first = rotate(issuerUrl);
  log(`oidc-provider listening; signing with ${first.kids.RS256} and ${first.kids.ES256}`);
  process.stdout.write(`ISSUER=${issuerUrl}\n`);
});
