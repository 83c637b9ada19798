// An independent identity provider for tower-oauth's interop test (tests/oidc_provider.rs):
// node-oidc-provider issuing client_credentials JWT access tokens (RFC 9068) on 127.0.0.1.
//
//   node tests/oidc/idp.mjs          (after `npm ci` in tests/oidc; scripts/test does that)
//
// Prints `ISSUER=http://127.0.0.1:PORT` on stdout once it listens; the issuer is that URL.
// Exits when stdin closes (so a test that dies cannot leak it), or on SIGTERM/SIGINT. Run it
// by hand with IDP_IGNORE_STDIN=1 to keep it up with stdin at EOF. IDP_PORT picks a port
// (default: any free one). A bad setting (below) stops it before the ISSUER= line, exit
// status 2, the reason on stderr. `node tests/oidc/selfcheck.mjs` checks it from Node.
//
// Besides the provider's own routes (/.well-known/openid-configuration, /jwks, /token, ...):
//   POST /__rotate  rotates the signing keys: a new Provider instance whose keystore is
//                   [new RS256, new ES256, previous RS256, previous ES256]; the new keys sign,
//                   the previous ones stay published in the JWKS so tokens they signed remain
//                   verifiable. Answers {"generation": n, "kids": {"RS256": ..., "ES256": ...}}.
//   GET  /__stats   how often each endpoint was requested, and the current generation:
//                   {"discovery", "jwks", "token" (the token endpoint, at either URL),
//                   "introspection", "rotations", "other", "mtls_token" (the mutual-TLS alias
//                   only), "token_exchange" (token-exchange requests that reached the grant:
//                   the client authenticated and holding the grant, whatever the outcome),
//                   "token_exchange_issued" (tokens issued by exchange),
//                   "token_exchange_by_subject" ({subject token's jti: tokens issued}),
//                   "generation"}; counts survive /__rotate.
//   GET  /__jwe_keys the resource server's PRIVATE decryption key as a JWK Set (RSA 2048,
//                   kid, alg RSA-OAEP-256, use enc), for tests/oidc_jwe.rs. The IdP only
//                   holds the public half in its configuration; this route stands in for the
//                   resource server's own key store. Test-only, like the rest of this file.
//
// IDP_OPAQUE=1 turns on the opaque mode, for tests/introspection_oidc.rs: on top of the
// above, a resource server https://opaque.example.test whose access tokens are opaque,
// `features.introspection` (RFC 7662, at the discovered `introspection_endpoint`) and two
// clients allowed to introspect, `rs-introspect` (client_secret_basic) and
// `rs-introspect-post` (client_secret_post). Without it, nothing differs. Any other client
// may introspect too (oidc-provider's default policy), authenticated as at the token
// endpoint: the private_key_jwt clients and rs-csjwt below included.
//
// Resource servers (RFC 8707 `resource`), scopes read, write and admin, tokens good for 600 s
// unless said otherwise: https://api.example.test (RS256 JWS; also the default when a request
// names no resource), https://es256.example.test (ES256 JWS), https://gateway.example.test
// (RS256 JWS: the inbound tokens of a token-exchange gateway, see below),
// https://expiring.example.test (RS256 JWS good for 2 s only: expired tokens without a wait
// of minutes), https://jwe.example.test (RS256 JWS nested in a JWE: RSA-OAEP-256 + A256GCM
// to the key above, with its kid) and https://jwe-nokid.example.test (the same, without a kid
// in the JWE header). A client_credentials token's `sub` is the client id.
//
// Clients, all client_credentials with scopes read, write and admin:
//   rs-test         secret `rs-secret`, client_secret_basic;
//   svc:special     secret `p@ss:w+rd%/ &=`, client_secret_basic (form-urlencoded first);
//   rs-csjwt        secret `csjwt-secret-with-32-bytes-or-more!!`, client_secret_jwt (HS256);
//   rs-exchange     secret `exchange-secret`, client_secret_basic; also the token-exchange
//                   grant, the only client with it (see below);
//   IDP_CLIENT_JWKS one private_key_jwt client per entry: a JSON object mapping client ids
//                   (any not listed here) to public JWK Sets, e.g.
//                   {"rs-pkjwt-rs256": {"keys": [{"kty": "RSA", "n": ..., "e": ..., "kid": ...}]},
//                    "rs-pkjwt-es256": {"keys": [{"kty": "EC", "crv": "P-256", ...}]}};
//                   kid optional; a key's `alg`, if given, restricts it to that algorithm.
//                   Private members, unusable keys or a duplicate client id stop the IdP;
// and the mode-dependent ones below (rs-introspect*, rs-dpop, rs-mtls*).
//
// JWT client authentication (RFC 7523 §2.2, client_assertion_type
// urn:ietf:params:oauth:client-assertion-type:jwt-bearer, client_id in the form optional):
// private_key_jwt assertions signed with RS256, PS256, ES256, Ed25519 or EdDSA (any of them:
// no client sets token_endpoint_auth_signing_alg), client_secret_jwt ones with HS256. As
// oidc-provider checks them: `iss` and `sub` the client id; `aud` the issuer, the token
// endpoint URL (`${issuer}/token`) or the URL of the endpoint called (the introspection
// endpoint there), a string or a list holding one of them; `exp` required, expired 15 s
// (oidc-provider's clock tolerance) after it; `jti` required, and an assertion is taken once
// only (a replay: 401 invalid_client). Any failure is 401 invalid_client, but for a
// client_assertion that is no JWT at all, or a missing or wrong client_assertion_type: 400
// invalid_request. Discovery lists client_secret_jwt and private_key_jwt in
// token_endpoint_auth_methods_supported, and token_endpoint_auth_signing_alg_values_supported
// (HS256, RS256, PS256, ES256, Ed25519, EdDSA). The other clients authenticate as before.
//
// Token exchange (RFC 8693): grant_type urn:ietf:params:oauth:grant-type:token-exchange at
// the token endpoint (listed in grant_types_supported), for rs-exchange only: any other
// client gets oidc-provider's 400 invalid_request ("requested grant type is not allowed for
// this client"). Parameters, each at most once (twice: 400 invalid_request): subject_token,
// subject_token_type, actor_token, actor_token_type, requested_token_type, audience,
// resource, scope. Checked in this order:
//   400 invalid_request  no subject_token; subject_token_type other than (or without)
//                        urn:ietf:params:oauth:token-type:access_token; an actor_token whose
//                        actor_token_type is not that, or an actor_token_type without
//                        actor_token; requested_token_type given and not that; neither
//                        audience nor resource;
//   400 invalid_target   audience and resource naming different targets; a target other
//                        than https://downstream.example.test (rs-exchange's only one);
//   400 invalid_grant    a subject_token (then an actor_token) that is not an access token of
//                        this provider: not a compact JWS (opaque, or a JWE), not typ at+jwt,
//                        not signed (RS256 or ES256) by a key /jwks publishes now (the
//                        current or the previous generation), `iss` not the issuer, no `sub`,
//                        or expired (`exp`, no tolerance);
//   400 invalid_scope    a scope requested of which the subject token holds none.
// Success, 200: {"access_token", "issued_token_type":
// "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer", "expires_in": 300,
// "scope"} (scope left out when empty). The access token: a JWS, header {alg RS256, kid of
// the current RS256 signing key, typ at+jwt}; claims iss, sub (the subject token's), aud
// (the target, a string), client_id ("rs-exchange"), scope (the requested scopes the subject
// token holds; by default all the subject token's), iat, exp (iat + 300), jti (a UUID) and
// act {"sub": the actor token's sub, or else "rs-exchange"}, with the subject token's own
// `act`, if any, nested inside (RFC 8693 §4.1: the delegation chain). Never sender-bound.
// https://downstream.example.test is no resource server of the provider's: only an exchange
// makes tokens for it. Subject tokens: any client's, e.g. rs-test's for
// https://gateway.example.test.
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
// counts, except for rs-mtls-self below; any other is as good as none. Two more clients,
// both client_credentials with the same scopes as rs-test and
// `tls_client_certificate_bound_access_tokens`:
//   rs-mtls        authenticates with its certificate alone (tls_client_auth, with client_id
//                  in the form), whose subject DN must be IDP_MTLS_CLIENT_DN (default
//                  `CN=rs-mtls`; RFC 4514 order, `CN=a,O=b,C=c`, or the reverse); without such
//                  a certificate: 401 invalid_client;
//   rs-mtls-bound  authenticates with client_secret_basic (secret `mtls-secret`); the
//                  certificate only binds the token; without one: 400 invalid_grant.
// Their JWT access tokens carry `cnf["x5t#S256"]`, base64url(SHA-256(certificate DER));
// token_type stays "Bearer". Other clients' tokens stay unbound, certificate or not.
// Two more settings, for the mutual-TLS mode only (without it they stop the IdP):
//   IDP_MTLS_SELF_SIGNED_CERT  a PEM file holding a certificate (the first one counts), any
//                  issuer, self-signed as a rule: registers a third client, rs-mtls-self
//                  (self_signed_tls_client_auth, RFC 8705 §2.2; client_id in the form;
//                  client_credentials, the scopes of rs-test, certificate-bound tokens as
//                  above), whose JWK Set is that certificate's public key with the
//                  certificate in x5c. It authenticates by presenting exactly that
//                  certificate (oidc-provider compares x5t#S256), which need not chain to the
//                  client CA; any other certificate, or none: 401 invalid_client.
//   IDP_MTLS_ALIASES=1  adds `mtls_endpoint_aliases: {"token_endpoint": "${issuer}/mtls/token"}`
//                  to discovery (RFC 8705 §5). That path is the token endpoint itself for a
//                  connection that presented a client certificate (any: each client's rules
//                  above still decide which counts); without one it answers 401
//                  {"error":"invalid_client"} before the provider sees the request. The token
//                  endpoint keeps taking requests with or without a certificate. Client
//                  assertions there name the same audiences as at the token endpoint (not the
//                  alias URL).
// Without them nothing differs: no rs-mtls-self (self_signed_tls_client_auth is advertised
// anyway), no alias (/mtls/token is a 404).
//
// IDP_MCP_RESOURCES turns on the MCP mode, for resource servers under test on loopback such
// as the mcp_server example (tests/it/mcp.rs): a comma-separated list of entries, each a
// resource URL and, after it, separated by spaces, the scopes it grants, e.g.
//   IDP_MCP_RESOURCES='http://127.0.0.1:4000/mcp mcp:tools read, http://127.0.0.1:4001/mcp write'
// Each URL (http or https; host 127.0.0.1, [::1] or localhost; no fragment, user info or
// comma) becomes a resource server (RFC 8707) with RS256 JWT access tokens good for 600 s,
// whose `aud` is the URL exactly as the entry writes it, and which a request must name the
// same way. A client_credentials request for one of them that names no scope gets all the
// scopes it grants: the authorization server's pre-defined default of RFC 6749 §3.3, which a
// client given nothing but its credentials relies on (the MCP TypeScript SDK's
// ClientCredentialsProvider asks for no scope). One more client: mcp-client, secret
// `mcp-secret`, client_secret_basic (the method the SDK picks), client_credentials, the
// scopes of rs-test (scopes other than read, write and admin are open to any client). An
// entry without a scope, a bad URL or scope, or a URL twice stops the IdP. Without it, no
// MCP resource and no mcp-client.

import { createPublicKey, generateKeyPairSync, randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import process from 'node:process';

import { createLocalJWKSet, importJWK, jwtVerify, SignJWT } from 'jose';
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
const MTLS_SELF_SIGNED_CERT = process.env.IDP_MTLS_SELF_SIGNED_CERT || undefined;
const MTLS_ALIASES = process.env.IDP_MTLS_ALIASES === '1';
// The token endpoint's mutual-TLS alias (RFC 8705 §5), same origin, another path.
const MTLS_TOKEN_PATH = '/mtls/token';
for (const [name, set] of [['IDP_MTLS_SELF_SIGNED_CERT', MTLS_SELF_SIGNED_CERT], ['IDP_MTLS_ALIASES', MTLS_ALIASES]]) {
  if (set && !TLS) {
    console.error(`[idp] ${name} needs the mutual-TLS mode (${TLS_FILES.join(', ')})`);
    process.exit(2);
  }
}

// Client authentication with a signed JWT (RFC 7523 §2.2): the algorithms accepted, HS256
// for client_secret_jwt, the others for private_key_jwt (Ed25519 is EdDSA's fully-specified
// name, RFC 9864). The clients leave token_endpoint_auth_signing_alg unset: any of these.
const CLIENT_AUTH_SIGNING_ALGS = ['HS256', 'RS256', 'PS256', 'ES256', 'Ed25519', 'EdDSA'];

// Token exchange (RFC 8693).
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
// The resource server that receives the subject tokens, and the one it exchanges them for.
const API_GATEWAY = 'https://gateway.example.test';
const API_DOWNSTREAM = 'https://downstream.example.test';
// Access tokens that expire within seconds: for expired subject (or inbound) tokens.
const API_EXPIRING = 'https://expiring.example.test';
const EXPIRING_TTL = 2;
// The clients allowed to exchange, each with the targets (audience or resource) it may ask for.
const EXCHANGE_POLICY = new Map([['rs-exchange', new Set([API_DOWNSTREAM])]]);
const EXCHANGE_TTL = 300;

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
  // The token-exchange gateway: the resource server whose inbound tokens get exchanged.
  [API_GATEWAY]: {
    scope: SCOPES.join(' '),
    audience: API_GATEWAY,
    accessTokenFormat: 'jwt',
    accessTokenTTL: 600,
    jwt: { sign: { alg: 'RS256' } },
  },
  [API_EXPIRING]: {
    scope: SCOPES.join(' '),
    audience: API_EXPIRING,
    accessTokenFormat: 'jwt',
    accessTokenTTL: EXPIRING_TTL,
    jwt: { sign: { alg: 'RS256' } },
  },
  [API_JWE]: encryptedResource(API_JWE, JWE_KID),
  [API_JWE_NO_KID]: encryptedResource(API_JWE_NO_KID, undefined),
  ...(OPAQUE
    ? { [API_OPAQUE]: { scope: SCOPES.join(' '), audience: API_OPAQUE, accessTokenFormat: 'opaque', accessTokenTTL: 600 } }
    : {}),
};

// IDP_MCP_RESOURCES: resource URL -> the scopes it grants (a space-separated string), for
// resource servers under test on loopback. Checked here so that a bad value stops the IdP
// at start-up, not at the first request.
function mcpResourcesFromEnv() {
  const text = process.env.IDP_MCP_RESOURCES;
  const resources = new Map();
  if (!text) return resources;
  // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ); a comma separates entries.
  const SCOPE_TOKEN = /^[\x21\x23-\x2b\x2d-\x5b\x5d-\x7e]+$/;
  const LOOPBACK = new Set(['127.0.0.1', '[::1]', 'localhost']);
  for (const entry of text.split(',')) {
    const [resource, ...scopes] = entry.trim().split(/\s+/).filter(Boolean);
    const where = `IDP_MCP_RESOURCES entry ${JSON.stringify(entry.trim())}`;
    if (!resource) fail(`${where}: empty (a stray comma?)`);
    const url = URL.parse(resource);
    if (!url || !['http:', 'https:'].includes(url.protocol)) fail(`${where}: ${resource} is no http(s) URL`);
    if (!LOOPBACK.has(url.hostname)) fail(`${where}: ${resource} is not on loopback (127.0.0.1, [::1] or localhost)`);
    if (resource.includes('#') || url.username || url.password) fail(`${where}: a resource has no fragment or user info (RFC 8707 §2)`);
    if (scopes.length === 0) fail(`${where}: no scope after the URL`);
    const bad = scopes.filter((scope) => !SCOPE_TOKEN.test(scope));
    if (bad.length) fail(`${where}: not a scope token (RFC 6749 §3.3): ${bad.join(' ')}`);
    if (resources.has(resource) || resource in RESOURCE_SERVERS) fail(`${where}: ${resource} is registered twice`);
    resources.set(resource, [...new Set(scopes)].join(' '));
  }
  return resources;
}
const MCP_RESOURCES = mcpResourcesFromEnv();
const MCP = MCP_RESOURCES.size > 0;
for (const [resource, scope] of MCP_RESOURCES) {
  RESOURCE_SERVERS[resource] = {
    scope,
    audience: resource,
    accessTokenFormat: 'jwt',
    accessTokenTTL: 600,
    jwt: { sign: { alg: 'RS256' } },
  };
}

// The resource server a request names. For an MCP resource and a client_credentials request
// that names no scope, it also supplies the default scope (RFC 6749 §3.3: "the authorization
// server MUST either process the request using a pre-defined default value or fail"), all the
// scopes the resource grants. oidc-provider resolves the resources of a client_credentials
// request before it reads the requested scope, and edits `params.scope` there itself.
function resourceServerInfo(ctx, resourceIndicator) {
  const info = RESOURCE_SERVERS[resourceIndicator];
  if (!info) throw new errors.InvalidTarget();
  const { params } = ctx.oidc;
  if (MCP_RESOURCES.has(resourceIndicator) && params?.grant_type === 'client_credentials' && !params.scope) {
    params.scope = info.scope;
  }
  return info;
}

// The members of a JWK (RFC 7518 §6) that only a private or secret key has.
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

function fail(message) {
  console.error(`[idp] ${message}`);
  process.exit(2);
}

// IDP_CLIENT_JWKS: {"client id": {"keys": [public JWKs]}, ...}, one private_key_jwt client per
// entry. Checked here so that a bad value stops the IdP at start-up, not at the first request.
function clientJwksFromEnv() {
  const text = process.env.IDP_CLIENT_JWKS;
  if (!text) return {};
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    fail(`IDP_CLIENT_JWKS is not JSON: ${error.message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    fail('IDP_CLIENT_JWKS must be a JSON object: client id -> JWK Set');
  }
  for (const [clientId, jwks] of Object.entries(parsed)) {
    const keys = jwks?.keys;
    if (!clientId || !Array.isArray(keys) || keys.length === 0) {
      fail(`IDP_CLIENT_JWKS[${JSON.stringify(clientId)}] must be a JWK Set with at least one key`);
    }
    for (const key of keys) {
      if (key === null || typeof key !== 'object' || typeof key.kty !== 'string') {
        fail(`IDP_CLIENT_JWKS[${JSON.stringify(clientId)}]: every key needs a kty`);
      }
      const secret = PRIVATE_JWK_MEMBERS.filter((member) => member in key);
      if (secret.length) {
        fail(`IDP_CLIENT_JWKS[${JSON.stringify(clientId)}]: public keys only (found ${secret.join(', ')})`);
      }
      try {
        createPublicKey({ key, format: 'jwk' });
      } catch (error) {
        fail(`IDP_CLIENT_JWKS[${JSON.stringify(clientId)}]: not a usable public key: ${error.message}`);
      }
    }
  }
  return parsed;
}
const CLIENT_JWKS = clientJwksFromEnv();

// IDP_MTLS_SELF_SIGNED_CERT: rs-mtls-self's certificate, registered as its JWK Set: the
// certificate's public key with the certificate itself in x5c (oidc-provider matches the
// x5t#S256 of x5c[0] against the certificate presented).
function selfSignedClientJwks(path) {
  let cert;
  try {
    cert = new X509Certificate(readFileSync(path));
  } catch (error) {
    fail(`IDP_MTLS_SELF_SIGNED_CERT: no PEM certificate in ${path}: ${error.message}`);
  }
  return { keys: [{ ...cert.publicKey.export({ format: 'jwk' }), x5c: [cert.raw.toString('base64')] }] };
}

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
  // Mutual-TLS mode with IDP_MTLS_SELF_SIGNED_CERT: a client authenticated by a self-signed
  // certificate registered in advance (RFC 8705 §2.2), its tokens bound to it.
  ...(TLS && MTLS_SELF_SIGNED_CERT
    ? [
        {
          client_id: 'rs-mtls-self',
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          token_endpoint_auth_method: 'self_signed_tls_client_auth',
          jwks: selfSignedClientJwks(MTLS_SELF_SIGNED_CERT),
          tls_client_certificate_bound_access_tokens: true,
          scope: SCOPES.join(' '),
        },
      ]
    : []),
  // JWT client authentication (RFC 7523 §2.2): one client per IDP_CLIENT_JWKS entry
  // (private_key_jwt), and one with a shared secret (client_secret_jwt, HS256).
  ...Object.entries(CLIENT_JWKS).map(([clientId, jwks]) => ({
    client_id: clientId,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'private_key_jwt',
    jwks,
    scope: SCOPES.join(' '),
  })),
  {
    client_id: 'rs-csjwt',
    // HS256 wants a key of at least 32 bytes.
    client_secret: 'csjwt-secret-with-32-bytes-or-more!!',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_jwt',
    scope: SCOPES.join(' '),
  },
  // MCP mode: a client given nothing but its credentials, as an MCP client is.
  ...(MCP
    ? [
        {
          client_id: 'mcp-client',
          client_secret: 'mcp-secret',
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          token_endpoint_auth_method: 'client_secret_basic',
          scope: SCOPES.join(' '),
        },
      ]
    : []),
  // Token exchange (RFC 8693): the client in EXCHANGE_POLICY, the only one with the grant.
  {
    client_id: 'rs-exchange',
    client_secret: 'exchange-secret',
    grant_types: ['client_credentials', TOKEN_EXCHANGE],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: SCOPES.join(' '),
  },
];
{
  const seen = new Set();
  for (const { client_id: clientId } of CLIENTS) {
    if (seen.has(clientId)) fail(`client id ${JSON.stringify(clientId)} is registered twice (IDP_CLIENT_JWKS?)`);
    seen.add(clientId);
  }
}

// The client certificate of this request's TLS connection, only when it chains to the
// client CA (the server asks for one but lets the handshake through without it).
function peerCertificate(ctx) {
  const socket = ctx.socket ?? ctx.req?.socket;
  if (!socket?.encrypted || socket.authorized !== true) return undefined;
  return socket.getPeerX509Certificate?.() ?? undefined;
}

// Any client certificate of this request's TLS connection, whoever issued it.
function presentedCertificate(socket) {
  if (!socket?.encrypted) return undefined;
  return socket.getPeerX509Certificate?.() ?? undefined;
}

// The certificate oidc-provider authenticates with and binds tokens to: one that chains to
// the client CA; for a self_signed_tls_client_auth client (RFC 8705 §2.2), whatever it
// presented, its registered x5c being the only trust anchor.
function clientCertificate(ctx) {
  if (ctx.oidc?.client?.clientAuthMethod === 'self_signed_tls_client_auth') {
    return presentedCertificate(ctx.socket ?? ctx.req?.socket);
  }
  return peerCertificate(ctx);
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

// A JWK without its private members.
function publicJwk(jwk) {
  return Object.fromEntries(Object.entries(jwk).filter(([member]) => !PRIVATE_JWK_MEMBERS.includes(member)));
}

// An error of oidc-provider's with the error_description given (InvalidGrant has a fixed one).
function refusal(ErrorClass, description, detail) {
  const error = new ErrorClass(detail);
  error.error_description = description;
  return error;
}

/**
 * The token-exchange grant (RFC 8693) for the provider signing with `keys`: an access token of
 * this provider's for another one, for a target of EXCHANGE_POLICY. oidc-provider has already
 * authenticated the client (any method) and checked that TOKEN_EXCHANGE is among its grant
 * types; `ctx.oidc.params` holds the parameters given to registerGrantType, each at most once.
 */
function tokenExchangeGrant(keys) {
  // What this provider signs access tokens with, and publishes at /jwks.
  const publishedKeys = createLocalJWKSet({ keys: keys.map(publicJwk) });
  const signingJwk = keys.find((key) => key.alg === 'RS256');
  const signingKey = importJWK(signingJwk, 'RS256');

  // An access token this provider issued (a JWS, typ at+jwt, signed by a published key) and
  // that has not expired: its claims; otherwise invalid_grant.
  async function issuedAccessToken(ctx, token, name) {
    try {
      const { payload } = await jwtVerify(token, publishedKeys, {
        issuer: ctx.oidc.issuer,
        typ: 'at+jwt',
        algorithms: ['RS256', 'ES256'],
        requiredClaims: ['exp', 'sub'],
      });
      return payload;
    } catch (cause) {
      throw refusal(errors.InvalidGrant, `${name} is not a valid access token of this issuer`, `${name}: ${cause.message}`);
    }
  }

  return async function tokenExchange(ctx) {
    stats.token_exchange += 1;
    const { client, params } = ctx.oidc;

    const targets = EXCHANGE_POLICY.get(client.clientId);
    if (!targets) throw new errors.UnauthorizedClient('the client may not exchange tokens');

    if (!params.subject_token) throw new errors.InvalidRequest('missing required parameter subject_token');
    if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest(`subject_token_type must be ${ACCESS_TOKEN_TYPE}`);
    }
    if (params.actor_token && params.actor_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest(`actor_token_type must be ${ACCESS_TOKEN_TYPE}`);
    }
    if (!params.actor_token && params.actor_token_type) {
      throw new errors.InvalidRequest('actor_token_type without actor_token');
    }
    if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest(`requested_token_type must be ${ACCESS_TOKEN_TYPE}`);
    }

    // The target: `audience`, `resource`, or both naming the same one, in the client's policy.
    const named = [...new Set([params.audience, params.resource].filter(Boolean))];
    if (named.length === 0) throw new errors.InvalidRequest('missing required parameter audience (or resource)');
    if (named.length > 1) throw new errors.InvalidTarget('audience and resource name different targets');
    const [audience] = named;
    if (!targets.has(audience)) throw new errors.InvalidTarget(`the client may not obtain tokens for ${audience}`);

    const subject = await issuedAccessToken(ctx, params.subject_token, 'subject_token');
    const actor = params.actor_token ? await issuedAccessToken(ctx, params.actor_token, 'actor_token') : undefined;

    // The scope requested, or the subject token's, narrowed to the subject token's.
    const held = new Set((subject.scope ?? '').split(' ').filter(Boolean));
    const requested = params.scope ? new Set(params.scope.split(' ').filter(Boolean)) : held;
    const scope = [...requested].filter((value) => held.has(value)).join(' ');
    if (params.scope && !scope) {
      throw new errors.InvalidScope('the subject token holds none of the requested scopes', params.scope);
    }

    // The acting party (RFC 8693 §4.1): the actor token's subject, else the exchanging client;
    // an `act` the subject token already had is nested (the delegation chain).
    const act = { sub: actor ? actor.sub : client.clientId, ...(subject.act ? { act: subject.act } : {}) };
    const now = Math.floor(Date.now() / 1000);
    const accessToken = await new SignJWT({ client_id: client.clientId, ...(scope ? { scope } : {}), act })
      .setProtectedHeader({ alg: 'RS256', kid: signingJwk.kid, typ: 'at+jwt' })
      .setIssuer(ctx.oidc.issuer)
      .setSubject(subject.sub)
      .setAudience(audience)
      .setIssuedAt(now)
      .setExpirationTime(now + EXCHANGE_TTL)
      .setJti(randomUUID())
      .sign(await signingKey);

    log(`token exchange: ${client.clientId} for ${audience}, sub ${subject.sub}, act.sub ${act.sub}`);
    stats.token_exchange_issued += 1;
    const key = subject.jti ?? subject.sub;
    stats.token_exchange_by_subject[key] = (stats.token_exchange_by_subject[key] ?? 0) + 1;
    ctx.body = {
      access_token: accessToken,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: EXCHANGE_TTL,
      ...(scope ? { scope } : {}),
    };
  };
}

function buildProvider(issuer, keys) {
  const provider = new Provider(issuer, {
    clients: CLIENTS,
    jwks: { keys },
    scopes: ['openid', 'offline_access', ...SCOPES],
    // Global: every endpoint that authenticates clients (token, introspection) takes them all.
    clientAuthMethods: [
      'client_secret_basic',
      'client_secret_post',
      'client_secret_jwt',
      'private_key_jwt',
      ...(TLS ? ['tls_client_auth', 'self_signed_tls_client_auth'] : []),
    ],
    enabledJWA: {
      // A copy: oidc-provider edits the list it is given.
      clientAuthSigningAlgValues: [...CLIENT_AUTH_SIGNING_ALGS],
      ...(DPOP ? { dPoPSigningAlgValues: ['ES256', 'Ed25519', 'EdDSA', 'PS256', 'RS256'] } : {}),
    },
    // Metadata oidc-provider does not produce itself, added to discovery as is.
    ...(MTLS_ALIASES ? { discovery: { mtls_endpoint_aliases: { token_endpoint: `${issuer}${MTLS_TOKEN_PATH}` } } } : {}),
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
              getCertificate: clientCertificate,
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
        getResourceServerInfo: async (ctx, resourceIndicator) => resourceServerInfo(ctx, resourceIndicator),
      },
    },
    // A function, or it would override the resource servers' accessTokenTTL.
    ttl: { ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? 600 },
  });
  provider.registerGrantType(TOKEN_EXCHANGE, tokenExchangeGrant(keys), [
    'subject_token',
    'subject_token_type',
    'actor_token',
    'actor_token_type',
    'requested_token_type',
    'audience',
    'resource',
    'scope',
  ]);
  provider.on('server_error', (_ctx, error) => log('server_error:', error));
  provider.on('grant.error', (_ctx, error) =>
    log('grant.error:', error.message, error.error_description ?? '', error.error_detail ? `(${error.error_detail})` : ''),
  );
  return provider;
}

const stats = {
  discovery: 0,
  jwks: 0,
  token: 0,
  introspection: 0,
  rotations: 0,
  other: 0,
  mtls_token: 0,
  token_exchange: 0,
  token_exchange_issued: 0,
  token_exchange_by_subject: {},
};
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
  } else if (MTLS_ALIASES && path === MTLS_TOKEN_PATH) {
    // The token endpoint's mutual-TLS alias: the token endpoint itself, for connections with
    // a client certificate (any: the provider decides, per client, which certificate counts).
    if (!presentedCertificate(req.socket)) {
      req.resume();
      return json(res, 401, { error: 'invalid_client', error_description: 'this endpoint requires a client certificate' });
    }
    stats.token += 1;
    stats.mtls_token += 1;
    req.url = `/token${req.url.slice(path.length)}`;
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
server.listen(port, HOST, async () => {
  const { port: bound } = server.address();
  issuerUrl = `${TLS ? 'https' : 'http'}://${HOST}:${bound}`;
  const first = rotate(issuerUrl);
  // oidc-provider checks a static client's metadata when first asked for it: ask for every
  // one now, so that a bad one (IDP_CLIENT_JWKS, IDP_MTLS_SELF_SIGNED_CERT) stops the IdP here.
  for (const { client_id: clientId } of CLIENTS) {
    try {
      await provider.Client.find(clientId);
    } catch (error) {
      const why = [error.message, error.error_description, error.cause?.message].filter(Boolean).join(': ');
      fail(`client ${JSON.stringify(clientId)}: ${why}`);
    }
  }
  const modes = [
    OPAQUE && 'opaque',
    DPOP && (DPOP_NONCE ? 'DPoP (nonce required)' : 'DPoP'),
    TLS && 'mutual TLS',
    MTLS_ALIASES && 'mTLS endpoint aliases',
    MCP && `MCP resources: ${[...MCP_RESOURCES.keys()].join(', ')}`,
  ];
  const extra = modes.filter(Boolean).join(', ');
  log(`oidc-provider listening${extra ? ` (${extra})` : ''}; signing with ${first.kids.RS256} and ${first.kids.ES256}`);
  process.stdout.write(`ISSUER=${issuerUrl}\n`);
});
