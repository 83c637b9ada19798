// An independent DPoP (RFC 9449) client and resource server for tower-oauth's interop tests,
// built on panva's `dpop` and `oauth4webapi` (pinned in package-lock.json).
//
//   node tests/oidc/dpop.mjs client            (also spelled `proof` or `token`)
//   node tests/oidc/dpop.mjs resource-server
//
// Both exit when stdin closes (the client once it has answered every line), or on
// SIGTERM/SIGINT. Logs go to stderr.
//
// CLIENT: one JSON object per stdin line in, one JSON object per stdout line out, in order.
// Keys are WebCrypto key pairs (private half not extractable), made on first use of a `key`
// name and kept for the life of the process, so a token obtained with a key can then be
// presented with proofs from that same key. `alg` picks the kind of key: ES256 (default),
// EdDSA or Ed25519 (an Ed25519 key: the proof's `alg` header is "Ed25519"), PS256, RS256
// (RSA 2048). Naming an existing key with another `alg` is an error. Without `key`, a fresh
// key serves that one line.
//
//   A proof:  {"htm":"GET","htu":"http://127.0.0.1:3000/me","accessToken":"...",
//              "nonce":"...","alg":"ES256","key":"k1"}
//             htm and htu are required; accessToken adds `ath`, nonce adds `nonce`.
//          -> {"proof":"<compact JWS>","jkt":"<RFC 7638 SHA-256 thumbprint, base64url>","alg":"ES256"}
//             The proof is dpop.generateProof's: header {alg, typ: "dpop+jwt", jwk}, claims
//             iat, jti (a UUID), htm, htu (as given), nonce and ath when given.
//
//   A token:  {"tokenEndpoint":"http://127.0.0.1:PORT/token","clientId":"rs-dpop",
//              "clientSecret":"dpop-secret","resource":"https://api.example.test",
//              "scope":"read","key":"k1","alg":"ES256","nonceRetry":true,
//              "auth":"client_secret_basic","issuer":"http://127.0.0.1:PORT"}
//             (a line with `tokenEndpoint`, or with "op":"token"; resource, scope, alg,
//             nonceRetry (default true), auth (client_secret_basic, the default, or
//             client_secret_post) and issuer (default: the token endpoint's origin) are
//             optional.) A client_credentials grant with oauth4webapi, its DPoP proof made by
//             oauth4webapi's DPoP handle for that key. When the server answers use_dpop_nonce
//             and nonceRetry is not false, the request is made once more with the nonce it sent
//             (the handle also remembers the last nonce per origin for later requests).
//          -> {"access_token":"...","token_type":"DPoP","expires_in":600,"scope":"read",
//              "jkt":"...","nonce_retried":false,"dpop_nonce":"<last DPoP-Nonce seen, if any>"}
//             token_type is as the server sent it.
//
//   Any failure answers that line with {"error":"<code>","message":"..."} (a token endpoint
//   error also carries "status", "error_description" and "dpop_nonce" when it had them).
//   An HTTPS endpoint signed by a private CA needs NODE_EXTRA_CA_CERTS=<CA PEM>.
//
// RESOURCE SERVER: RS_ISSUER (required) names the authorization server, found by OpenID
// discovery (http allowed; an https issuer with a private CA needs NODE_EXTRA_CA_CERTS, as
// above); RS_AUDIENCE is the audience it expects (default
// https://api.example.test); RS_PORT picks a port (default: any free one). Prints
// `LISTENING=http://127.0.0.1:PORT` once it listens. It answers GET /me:
//   200 {"sub":...,"client_id":...,"cnf":{"jkt":...},"scope":...} when the request carries
//       `Authorization: DPoP <JWT access token>` and a `DPoP` proof that oauth4webapi's
//       validateJwtAccessToken accepts (RFC 9068 token: signature from the issuer's JWKS,
//       typ at+jwt, iss, aud, exp; RFC 9449 proof: typ dpop+jwt, signature, iat within 300 s,
//       htm, htu equal to http://127.0.0.1:PORT/me (query and fragment ignored), ath,
//       cnf.jkt equal to the proof key's thumbprint) and whose jti this process has not seen
//       before for that key;
//   401 with a JSON body {"error":..., "message":...} and a `WWW-Authenticate: DPoP ...`
//       challenge (`algs="..."`, and `error`, `error_description` unless the request had no
//       Authorization header at all) otherwise. error is invalid_token for a token that is
//       missing, malformed, unverifiable or not DPoP-bound (a Bearer token included);
//       invalid_dpop_proof for a proof that is missing, invalid, mismatched or replayed;
//       invalid_request (body only) when there is no Authorization header;
//       use_dpop_nonce, with a `DPoP-Nonce` header, when RS_DPOP_NONCE=1 and the proof has no
//       nonce or one that is no longer current.
// With RS_DPOP_NONCE=1 the server issues its own nonces (oauth4webapi leaves nonces to the
// caller): a random value, renewed every 60 s, the previous one still accepted; every
// response carries the current one in `DPoP-Nonce`. Anything but /me is 404; /me with another
// method is 405.

import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import process from 'node:process';
import { createInterface } from 'node:readline';

import * as dpop from 'dpop';
import * as oauth from 'oauth4webapi';

const HOST = '127.0.0.1';

function log(...args) {
  console.error('[dpop]', ...args);
}

function writeLine(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

// ---------------------------------------------------------------------------------------
// Client

const KEY_ALGS = { ES256: 'ES256', EdDSA: 'Ed25519', Ed25519: 'Ed25519', PS256: 'PS256', RS256: 'RS256' };

/** name -> { alg, keyPair, jkt, handle (oauth4webapi DPoP handle, made on first token use) } */
const keys = new Map();

class LineError extends Error {
  constructor(error, message, extra = {}) {
    super(message);
    this.error = error;
    this.extra = extra;
  }
}

async function keyFor(name, alg = 'ES256') {
  const kind = KEY_ALGS[alg];
  if (!kind) throw new LineError('invalid_request', `unsupported alg ${JSON.stringify(alg)}; one of ${Object.keys(KEY_ALGS).join(', ')}`);
  if (name !== undefined && keys.has(name)) {
    const existing = keys.get(name);
    if (existing.kind !== kind) {
      throw new LineError('invalid_request', `key ${JSON.stringify(name)} is ${existing.kind}, not ${kind}`);
    }
    return existing;
  }
  const keyPair = await dpop.generateKeyPair(kind, { extractable: false });
  const entry = { kind, keyPair, jkt: await dpop.calculateThumbprint(keyPair.publicKey), handle: undefined };
  if (name !== undefined) keys.set(name, entry);
  return entry;
}

function required(line, field) {
  const value = line[field];
  if (typeof value !== 'string' || value === '') throw new LineError('invalid_request', `"${field}" must be a non-empty string`);
  return value;
}

function optionalString(line, field) {
  const value = line[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new LineError('invalid_request', `"${field}" must be a string`);
  return value;
}

async function proof(line) {
  const htm = required(line, 'htm');
  const htu = required(line, 'htu');
  const entry = await keyFor(optionalString(line, 'key'), optionalString(line, 'alg'));
  const jwt = await dpop.generateProof(
    entry.keyPair,
    htu,
    htm,
    optionalString(line, 'nonce'),
    optionalString(line, 'accessToken'),
  );
  const header = JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString('utf8'));
  return { proof: jwt, jkt: entry.jkt, alg: header.alg };
}

async function token(line) {
  const tokenEndpoint = required(line, 'tokenEndpoint');
  const clientId = required(line, 'clientId');
  const clientSecret = required(line, 'clientSecret');
  const auth = optionalString(line, 'auth') ?? 'client_secret_basic';
  if (auth !== 'client_secret_basic' && auth !== 'client_secret_post') {
    throw new LineError('invalid_request', `"auth" must be client_secret_basic or client_secret_post`);
  }
  const entry = await keyFor(optionalString(line, 'key'), optionalString(line, 'alg'));
  const as = {
    issuer: optionalString(line, 'issuer') ?? new URL(tokenEndpoint).origin,
    token_endpoint: tokenEndpoint,
  };
  const client = { client_id: clientId };
  const clientAuth = auth === 'client_secret_basic' ? oauth.ClientSecretBasic(clientSecret) : oauth.ClientSecretPost(clientSecret);
  entry.handle ??= oauth.DPoP(client, entry.keyPair);
  const parameters = new URLSearchParams();
  const resource = optionalString(line, 'resource');
  const scope = optionalString(line, 'scope');
  if (resource !== undefined) parameters.set('resource', resource);
  if (scope !== undefined) parameters.set('scope', scope);

  let lastNonce;
  const attempt = async () => {
    const response = await oauth.clientCredentialsGrantRequest(as, client, clientAuth, parameters, {
      DPoP: entry.handle,
      [oauth.allowInsecureRequests]: true,
    });
    lastNonce = response.headers.get('dpop-nonce') ?? lastNonce;
    // As the server sent it (oauth4webapi lower-cases token_type).
    const raw = await response
      .clone()
      .json()
      .catch(() => undefined);
    const processed = await oauth.processClientCredentialsResponse(as, client, response);
    return { raw, processed };
  };

  let retried = false;
  let result;
  try {
    try {
      result = await attempt();
    } catch (error) {
      if (line.nonceRetry === false || !oauth.isDPoPNonceError(error)) throw error;
      retried = true;
      result = await attempt();
    }
  } catch (error) {
    if (error instanceof oauth.ResponseBodyError) {
      throw new LineError(error.error, error.message, {
        status: error.status,
        error_description: error.error_description,
        dpop_nonce: lastNonce,
        nonce_retried: retried,
      });
    }
    throw error;
  }
  const { raw, processed } = result;
  return {
    access_token: processed.access_token,
    token_type: raw?.token_type ?? processed.token_type,
    expires_in: processed.expires_in,
    scope: processed.scope,
    jkt: entry.jkt,
    nonce_retried: retried,
    dpop_nonce: lastNonce,
  };
}

async function clientLine(text) {
  let line;
  try {
    line = JSON.parse(text);
  } catch (error) {
    return { error: 'invalid_request', message: `not JSON: ${error.message}` };
  }
  if (line === null || typeof line !== 'object' || Array.isArray(line)) {
    return { error: 'invalid_request', message: 'each line must be a JSON object' };
  }
  try {
    const op = line.op ?? (line.tokenEndpoint !== undefined ? 'token' : 'proof');
    if (op === 'proof') return await proof(line);
    if (op === 'token') return await token(line);
    return { error: 'invalid_request', message: `unknown op ${JSON.stringify(op)}` };
  } catch (error) {
    if (error instanceof LineError) return { error: error.error, message: error.message, ...error.extra };
    return { error: error.code ?? error.name ?? 'error', message: error.message };
  }
}

async function runClient() {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const text of lines) {
    if (text.trim() === '') continue;
    writeLine(await clientLine(text));
  }
  process.exit(0);
}

// ---------------------------------------------------------------------------------------
// Resource server

// What oauth4webapi verifies by default (ML-DSA aside), advertised in the challenge.
const RS_ALGS = ['ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512', 'Ed25519', 'EdDSA'];
const PROOF_WINDOW = 300; // seconds either side of now that a proof's iat may be
const NONCE_STEP_MS = 60_000;
// oauth4webapi's message when the token needs a DPoP proof and the request carried none.
const NO_PROOF = 'operation indicated DPoP use but the request has no DPoP HTTP Header';

class Refusal extends Error {
  constructor(error, message, { challengeError = true, nonce = false } = {}) {
    super(message);
    this.error = error;
    this.challengeError = challengeError;
    this.nonce = nonce;
  }
}

function quoted(text) {
  return `"${String(text).replace(/["\\]/g, "'").replace(/[\r\n]+/g, ' ')}"`;
}

function decodePayload(jwt) {
  try {
    return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
  } catch {
    return {};
  }
}

async function runResourceServer() {
  const issuer = process.env.RS_ISSUER;
  if (!issuer) {
    log('RS_ISSUER is required');
    process.exit(2);
  }
  const audience = process.env.RS_AUDIENCE || 'https://api.example.test';
  const requireNonce = process.env.RS_DPOP_NONCE === '1';
  const issuerUrl = new URL(issuer);
  const as = await oauth.processDiscoveryResponse(
    issuerUrl,
    await oauth.discoveryRequest(issuerUrl, { algorithm: 'oidc', [oauth.allowInsecureRequests]: true }),
  );

  // Replay: `${jkt} ${jti}` -> when it may be forgotten (its iat can no longer pass).
  const seen = new Map();
  const forget = () => {
    const now = Date.now() / 1000;
    for (const [key, until] of seen) if (until < now) seen.delete(key);
  };

  // Server nonces: the current one and the one before.
  let nonces = [randomBytes(16).toString('base64url')];
  if (requireNonce) {
    setInterval(() => {
      nonces = [randomBytes(16).toString('base64url'), nonces[0]];
    }, NONCE_STEP_MS).unref();
  }

  let origin;

  async function authorize(req) {
    const authorization = req.headers.authorization;
    if (authorization === undefined) {
      throw new Refusal('invalid_request', 'no Authorization header', { challengeError: false });
    }
    const [scheme, value, ...rest] = authorization.split(/ +/);
    if (!/^(dpop|bearer)$/i.test(scheme ?? '') || !value || rest.length !== 0) {
      throw new Refusal('invalid_token', 'the Authorization header is not `DPoP <access token>`');
    }
    const proofs = req.headersDistinct?.dpop ?? (req.headers.dpop === undefined ? [] : [req.headers.dpop]);
    if (proofs.length > 1) throw new Refusal('invalid_dpop_proof', 'more than one DPoP header');
    const url = `${origin}${req.url}`;
    const options = { [oauth.allowInsecureRequests]: true };

    // The token alone first (no proof): tells a bad token from a bad proof.
    try {
      await oauth.validateJwtAccessToken(
        as,
        new Request(url, { method: req.method, headers: { authorization: `${scheme} ${value}` } }),
        audience,
        options,
      );
      throw new Refusal('invalid_token', 'the access token is not DPoP-bound (no cnf.jkt)');
    } catch (error) {
      if (error instanceof Refusal) throw error;
      if (error?.message !== NO_PROOF) throw new Refusal('invalid_token', error?.message ?? String(error));
    }
    if (!/^dpop$/i.test(scheme)) {
      throw new Refusal('invalid_token', 'a DPoP-bound access token must be sent with the DPoP scheme');
    }
    if (proofs.length === 0) throw new Refusal('invalid_dpop_proof', 'no DPoP proof');

    let claims;
    try {
      claims = await oauth.validateJwtAccessToken(
        as,
        new Request(url, { method: req.method, headers: { authorization: `${scheme} ${value}`, dpop: proofs[0] } }),
        audience,
        { ...options, requireDPoP: true },
      );
    } catch (error) {
      throw new Refusal('invalid_dpop_proof', error?.message ?? String(error));
    }

    const proof = decodePayload(proofs[0]);
    if (requireNonce && (typeof proof.nonce !== 'string' || !nonces.includes(proof.nonce))) {
      throw new Refusal(
        'use_dpop_nonce',
        proof.nonce === undefined ? 'a DPoP nonce is required' : 'the DPoP nonce is not current',
        { nonce: true },
      );
    }
    forget();
    const key = `${claims.cnf.jkt} ${proof.jti}`;
    if (seen.has(key)) throw new Refusal('invalid_dpop_proof', 'DPoP proof replayed (jti already used)');
    seen.set(key, proof.iat + PROOF_WINDOW + 60);
    return claims;
  }

  function send(res, status, body, headers = {}) {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      'cache-control': 'no-store',
      ...(requireNonce ? { 'dpop-nonce': nonces[0] } : {}),
      ...headers,
    });
    res.end(text);
  }

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    req.resume();
    if (path !== '/me') return send(res, 404, { error: 'not_found', message: `no route ${path}` });
    if (req.method !== 'GET') return send(res, 405, { error: 'method_not_allowed', message: 'GET only' }, { allow: 'GET' });
    authorize(req).then(
      (claims) => send(res, 200, { sub: claims.sub, client_id: claims.client_id, cnf: claims.cnf, scope: claims.scope }),
      (error) => {
        const refusal = error instanceof Refusal ? error : new Refusal('invalid_token', error?.message ?? String(error));
        const params = [];
        if (refusal.challengeError) {
          params.push(`error=${quoted(refusal.error)}`, `error_description=${quoted(refusal.message)}`);
        }
        params.push(`algs=${quoted(RS_ALGS.join(' '))}`);
        log(`401 ${refusal.error}: ${refusal.message}`);
        send(res, 401, { error: refusal.error, message: refusal.message }, { 'www-authenticate': `DPoP ${params.join(', ')}` });
      },
    );
    return undefined;
  });

  const port = Number.parseInt(process.env.RS_PORT ?? '0', 10) || 0;
  server.listen(port, HOST, () => {
    origin = `http://${HOST}:${server.address().port}`;
    log(`resource server for ${audience}, tokens from ${as.issuer}${requireNonce ? ', DPoP nonce required' : ''}`);
    process.stdout.write(`LISTENING=${origin}\n`);
  });

  const shutdown = (why) => {
    log(`exiting: ${why}`);
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  };
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('close', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}

// ---------------------------------------------------------------------------------------

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));

const mode = process.argv[2];
if (mode === 'client' || mode === 'proof' || mode === 'token') {
  await runClient();
} else if (mode === 'resource-server') {
  await runResourceServer().catch((error) => {
    log('could not start:', error);
    process.exit(1);
  });
} else {
  console.error('usage: node dpop.mjs client|proof|token|resource-server');
  process.exit(2);
}
