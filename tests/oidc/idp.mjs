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
//
// IDP_DPOP=1 turns on the DPoP mode (RFC 9449), for sender-constrained tokens: DPoP with
// server nonces available (a random nonce secret per process, kept across /__rotate), proofs
// signed with ES256, Ed25519, EdDSA, PS256 or RS256, replayed proofs (same jti) refused
// (invalid_grant at the token endpoint), and a
// client `rs-dpop` (secret `dpop-secret`, client_secret_basic, client_credentials, the same
// scopes as rs-test) registered with `dpop_bound_access_tokens`: its token requests without a
// DPoP proof are refused (invalid_grant). A token request with a valid proof, from any client,
// gets `token_type: "DPoP"` and a JWT access token whose `cnf.jkt` is the proof key's
// RFC 7638 thumbprint. IDP_DPOP_NONCE=1 (implies IDP_DPOP=1) makes a server nonce mandatory:
// a proof without one, or with a stale one, is answered 400 {"error":"use_dpop_nonce"} with the
// nonce to use in a `DPoP-Nonce` header. In either case, any response to a DPoP request whose
// proof did not carry the current nonce offers that nonce in `DPoP-Nonce`.
// Without IDP_DPOP, DPoP stays as oidc-provider has it by default: proofs accepted and bound
// (ES256, Ed25519, EdDSA), no nonces.
//
// IDP_TLS_CERT, IDP_TLS_KEY and IDP_TLS_CLIENT_CA (PEM file paths, all three or none) turn on
// the mutual-TLS mode (RFC 8705): the IdP serves HTTPS with that certificate and key,
// requests (without requiring) a client certificate, checks it against the client CA, and
// prints `ISSUER=https://127.0.0.1:PORT`. Only a certificate that chains to the client CA
// counts; any other is as good as none. Same origin for everything (no
// mtls_endpoint_aliases). Two more clients, both client_credentials with the same scopes as
// rs-test and `tls_client_certificate_bound_access_tokens`:
//   rs-mtls        authenticates with its certificate alone (tls_client_auth, with client_id
//                  in the form), whose subject DN must be IDP_MTLS_CLIENT_DN (default
//                  `CN=rs-mtls`; RFC 4514 order, `CN=a,O=b,C=c`, or the reverse); without such
//                  a certificate: 401 invalid_client;
//   rs-mtls-bound  authenticates with client_secret_basic (secret `mtls-secret`); the
//                  certificate only binds the token; without one: 400 invalid_grant.
// Their JWT access tokens carry `cnf["x5t#S256"]`, base64url(SHA-256(certificate DER));
// token_type stays "Bearer". Other clients' tokens stay unbound, certificate or not. The
// self_signed_tls_client_auth method is advertised, but no client uses it.

import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
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
const DPOP_NONCE = process.env.IDP_DPOP_NONCE === '1';
const DPOP = process.env.IDP_DPOP === '1' || DPOP_NONCE;
// One nonce secret per process: nonces stay valid across /__rotate.
const DPOP_NONCE_SECRET = randomBytes(32);

const TLS_FILES = ['IDP_TLS_CERT', 'IDP_TLS_KEY', 'IDP_TLS_CLIENT_CA'];
const TLS_SET = TLS_FILES.filter((name) => process.env[name]);
if (TLS_SET.length !== 0 && TLS_SET.length !== TLS_FILES.length) {
  console.error(`[idp] set all of ${TLS_FILES.join(', ')} or none (set: ${TLS_SET.join(', ')})`);
  process.exit(2);
}
const TLS = TLS_SET.length === TLS_FILES.length;
const MTLS_CLIENT_DN = process.env.IDP_MTLS_CLIENT_DN || 'CN=rs-mtls';

// A key pair made as JWKs by the key generation itself. Not generateKeyPairSync(...) and then
// KeyObject.export({ format: 'jwk' }): on Node 20 that can deadlock (the main thread blocks
// for good, deaf even to SIGTERM) when a garbage collection during the export finalizes the
// generation job, whose destructor takes the lock the export holds. That was the rare stall
// at start-up (before the ISSUER= line).
function newJwkPair(type, options) {
  return generateKeyPairSync(type, { ...options, publicKeyEncoding: { format: 'jwk' }, privateKeyEncoding: { format: 'jwk' } });
}

// RFC 9068 JWT access tokens, one signing algorithm per resource server.
// The resource server's encryption key pair, made once per process (it survives /__rotate,
// which only rotates the IdP's signing keys). oidc-provider encrypts to the public half.
const JWE_KID = `rs-enc-${randomBytes(4).toString('hex')}`;
const jweKeyPair = newJwkPair('rsa', { modulusLength: 2048 });
const jwePublicKey = createPublicKey({ key: jweKeyPair.publicKey, format: 'jwk' });
const JWE_PRIVATE_JWKS = {
  keys: [{ ...jweKeyPair.privateKey, kid: JWE_KID, alg: 'RSA-OAEP-256', use: 'enc' }],
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
      encrypt: { alg: 'RSA-OAEP-256', enc: 'A256GCM', key: jwePublicKey, ...(kid ? { kid } : {}) },
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
  // DPoP mode: a client whose access tokens must be DPoP-bound.
  ...(DPOP
    ? [
        {
          client_id: 'rs-dpop',
          client_secret: 'dpop-secret',
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          token_endpoint_auth_method: 'client_secret_basic',
          scope: SCOPES.join(' '),
          dpop_bound_access_tokens: true,
        },
      ]
    : []),
  // Mutual-TLS mode: certificate-bound access tokens, the client authenticated by its
  // certificate (rs-mtls) or by a secret (rs-mtls-bound).
  ...(TLS
    ? [
        {
          client_id: 'rs-mtls',
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          token_endpoint_auth_method: 'tls_client_auth',
          tls_client_auth_subject_dn: MTLS_CLIENT_DN,
          tls_client_certificate_bound_access_tokens: true,
          scope: SCOPES.join(' '),
        },
        {
          client_id: 'rs-mtls-bound',
          client_secret: 'mtls-secret',
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          token_endpoint_auth_method: 'client_secret_basic',
          tls_client_certificate_bound_access_tokens: true,
          scope: SCOPES.join(' '),
        },
      ]
    : []),
];

// The client certificate of this request's TLS connection, only when it chains to the
// client CA (the server asks for one but lets the handshake through without it).
function peerCertificate(ctx) {
  const socket = ctx.socket ?? ctx.req?.socket;
  if (!socket?.encrypted || socket.authorized !== true) return undefined;
  return socket.getPeerX509Certificate?.() ?? undefined;
}

// A distinguished name as a list of `TYPE=value`, most significant first. `subject` of a
// node X509Certificate is that list joined with newlines; an RFC 4514 string (as registered
// in tls_client_auth_subject_dn) lists it the other way round, joined with commas.
function rdns(text, separator) {
  const parts = [];
  let current = '';
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (c === '\\' && i + 1 < text.length) {
      current += c + text[i + 1];
      i += 1;
    } else if (separator.test(c)) {
      parts.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  parts.push(current);
  return parts
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part) => {
      const eq = part.indexOf('=');
      return eq < 0 ? part : `${part.slice(0, eq).trim().toUpperCase()}=${part.slice(eq + 1).trim()}`;
    });
}

function sameList(a, b) {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

// RFC 8705 §2.1.2: the registered tls_client_auth_* value against the certificate.
function certificateSubjectMatches(ctx, property, expected) {
  const cert = peerCertificate(ctx);
  if (!cert) return false;
  if (property === 'tls_client_auth_subject_dn') {
    const actual = rdns(cert.subject ?? '', /\n/);
    const registered = rdns(expected, /[,;]/);
    return sameList(registered, [...actual].reverse()) || sameList(registered, actual);
  }
  const prefix = {
    tls_client_auth_san_dns: 'DNS:',
    tls_client_auth_san_ip: 'IP Address:',
    tls_client_auth_san_uri: 'URI:',
    tls_client_auth_san_email: 'email:',
  }[property];
  if (!prefix) return false;
  return (cert.subjectAltName ?? '')
    .split(', ')
    .some((entry) => entry.startsWith(prefix) && entry.slice(prefix.length) === expected);
}

function log(...args) {
  console.error('[idp]', ...args);
}

let generation = 0;

/** A fresh RS256 and ES256 signing key, as private JWKs with kid, alg and use. */
function newSigningKeys() {
  generation += 1;
  const tag = `${generation}-${randomBytes(4).toString('hex')}`;
  const rsa = newJwkPair('rsa', { modulusLength: 2048 }).privateKey;
  const ec = newJwkPair('ec', { namedCurve: 'P-256' }).privateKey;
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
    clientAuthMethods: [
      'client_secret_basic',
      'client_secret_post',
      ...(TLS ? ['tls_client_auth', 'self_signed_tls_client_auth'] : []),
    ],
    ...(DPOP ? { enabledJWA: { dPoPSigningAlgValues: ['ES256', 'Ed25519', 'EdDSA', 'PS256', 'RS256'] } } : {}),
    features: {
      devInteractions: { enabled: false },
      ...(DPOP
        ? {
            dPoP: {
              enabled: true,
              nonceSecret: DPOP_NONCE_SECRET,
              requireNonce: () => DPOP_NONCE,
              allowReplay: false,
            },
          }
        : {}),
      ...(TLS
        ? {
            mTLS: {
              enabled: true,
              certificateBoundAccessTokens: true,
              tlsClientAuth: true,
              selfSignedTlsClientAuth: true,
              // A PEM string or an X509Certificate: oidc-provider takes the thumbprint of either.
              getCertificate: peerCertificate,
              certificateAuthorized: (ctx) => peerCertificate(ctx) !== undefined,
              certificateSubjectMatches,
            },
          }
        : {}),
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
  provider.on('grant.error', (_ctx, error) =>
    log('grant.error:', error.message, error.error_description ?? '', error.error_detail ? `(${error.error_detail})` : ''),
  );
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

function handle(req, res) {
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
}

// Mutual-TLS mode: HTTPS, a client certificate asked for but not required (the provider
// decides per client), checked against the client CA.
const server = TLS
  ? createTlsServer(
      {
        cert: readFileSync(process.env.IDP_TLS_CERT),
        key: readFileSync(process.env.IDP_TLS_KEY),
        ca: readFileSync(process.env.IDP_TLS_CLIENT_CA),
        requestCert: true,
        rejectUnauthorized: false,
      },
      handle,
    )
  : createServer(handle);

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
  issuerUrl = `${TLS ? 'https' : 'http'}://${HOST}:${bound}`;
  const first = rotate(issuerUrl);
  const modes = [OPAQUE && 'opaque', DPOP && (DPOP_NONCE ? 'DPoP (nonce required)' : 'DPoP'), TLS && 'mutual TLS'];
  const extra = modes.filter(Boolean).join(', ');
  log(`oidc-provider listening${extra ? ` (${extra})` : ''}; signing with ${first.kids.RS256} and ${first.kids.ES256}`);
  process.stdout.write(`ISSUER=${issuerUrl}\n`);
});
