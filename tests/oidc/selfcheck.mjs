// A Node-only check of idp.mjs and dpop.mjs, without the Rust side:
//
//   node tests/oidc/selfcheck.mjs [SECTION...]      (after `npm ci` here)
//
// SECTION is any of `dpop` (the DPoP mode, and dpop.mjs), `mtls` (the mutual-TLS mode, with
// rs-mtls-self and the mtls_endpoint_aliases; needs the `openssl` CLI), `jwt-auth`
// (private_key_jwt and client_secret_jwt, at the token and introspection endpoints),
// `exchange` (token exchange) and `mcp` (the MCP mode, IDP_MCP_RESOURCES, with the MCP
// TypeScript SDK's discovery); all of them when none is named. Prints one line per check and
// exits non-zero on the first failure.

import { spawn, execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, randomUUID, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { discoverAuthorizationServerMetadata } from '@modelcontextprotocol/sdk/client/auth.js';
import { decodeProtectedHeader, importJWK, SignJWT } from 'jose';
import * as oauth from 'oauth4webapi';

const HERE = dirname(fileURLToPath(import.meta.url));
const API = 'https://api.example.test';
const API_OPAQUE = 'https://opaque.example.test';
const API_GATEWAY = 'https://gateway.example.test';
const API_DOWNSTREAM = 'https://downstream.example.test';
const API_EXPIRING = 'https://expiring.example.test';
const API_JWE = 'https://jwe.example.test';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const CSJWT = ['rs-csjwt', 'csjwt-secret-with-32-bytes-or-more!!'];
const EXCHANGE = ['rs-exchange', 'exchange-secret'];
// oauth4webapi refuses plain http unless told.
const INSECURE = { [oauth.allowInsecureRequests]: true };
const children = [];

function check(condition, what, detail) {
  if (!condition) {
    console.log(`FAIL ${what}${detail === undefined ? '' : `: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`}`);
    for (const child of children) child.kill();
    process.exit(1);
  }
  console.log(`ok   ${what}`);
}

function claims(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
}

/** Runs a script, resolves with the process and the value of its first `PREFIX=` line. */
function start(script, args, env, prefix) {
  const child = spawn(process.execPath, [join(HERE, script), ...args], {
    cwd: HERE,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.push(child);
  let log = '';
  child.stderr.on('data', (chunk) => {
    log += chunk;
  });
  const lines = createInterface({ input: child.stdout });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script}: no ${prefix}= line; stderr:\n${log}`)), 30_000);
    child.on('exit', (code) => reject(new Error(`${script} exited (${code}); stderr:\n${log}`)));
    lines.on('line', (line) => {
      if (line.startsWith(`${prefix}=`)) {
        clearTimeout(timer);
        resolve({ child, url: line.slice(prefix.length + 1), lines });
      }
    });
  });
}

/** The JSON-lines client of dpop.mjs: send(object) resolves with its answer. */
function dpopClient() {
  const child = spawn(process.execPath, [join(HERE, 'dpop.mjs'), 'client'], { cwd: HERE, stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  const waiting = [];
  createInterface({ input: child.stdout }).on('line', (line) => waiting.shift()(JSON.parse(line)));
  return (object) =>
    new Promise((resolve) => {
      waiting.push(resolve);
      child.stdin.write(`${JSON.stringify(object)}\n`);
    });
}

function basic(id, secret) {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

async function callMe(url, token, proof, scheme = 'DPoP') {
  const headers = { authorization: `${scheme} ${token}` };
  if (proof) headers.dpop = proof;
  const response = await fetch(url, { headers });
  return { status: response.status, challenge: response.headers.get('www-authenticate'), nonce: response.headers.get('dpop-nonce'), body: await response.json() };
}

async function dpopChecks() {
  const idp = await start('idp.mjs', [], { IDP_DPOP: '1', IDP_DPOP_NONCE: '1' }, 'ISSUER');
  const issuer = idp.url;
  const tokenEndpoint = `${issuer}/token`;
  const send = dpopClient();

  const got = await send({ tokenEndpoint, clientId: 'rs-dpop', clientSecret: 'dpop-secret', resource: API, scope: 'read', key: 'k1' });
  check(typeof got.access_token === 'string', 'rs-dpop gets a token with a DPoP proof', got);
  check(got.token_type === 'DPoP', 'token_type is DPoP', got.token_type);
  check(got.nonce_retried === true, 'the IdP asked for a DPoP nonce first (IDP_DPOP_NONCE=1)', got);
  const at = claims(got.access_token);
  check(at.cnf?.jkt === got.jkt, 'the access token carries cnf.jkt, the key thumbprint', at);
  check(at.aud === API && at.client_id === 'rs-dpop', 'aud and client_id', at);

  const noRetry = await send({ tokenEndpoint, clientId: 'rs-dpop', clientSecret: 'dpop-secret', resource: API, key: 'fresh', nonceRetry: false });
  check(noRetry.error === 'use_dpop_nonce' && noRetry.status === 400 && noRetry.dpop_nonce, 'without a nonce: 400 use_dpop_nonce and a DPoP-Nonce header', noRetry);

  const bearer = await fetch(tokenEndpoint, {
    method: 'POST',
    headers: { authorization: basic('rs-dpop', 'dpop-secret'), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource: API }),
  });
  const bearerBody = await bearer.json();
  check(bearer.status === 400 && bearerBody.error === 'invalid_grant', 'rs-dpop without a proof is refused', bearerBody);

  const plain = await fetch(tokenEndpoint, {
    method: 'POST',
    headers: { authorization: basic('rs-test', 'rs-secret'), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource: API }),
  });
  const plainBody = await plain.json();
  check(plainBody.token_type === 'Bearer' && claims(plainBody.access_token).cnf === undefined, 'rs-test without a proof still gets a plain Bearer token', plainBody);

  for (const nonce of [false, true]) {
    const rs = await start('dpop.mjs', ['resource-server'], { RS_ISSUER: issuer, RS_AUDIENCE: API, RS_DPOP_NONCE: nonce ? '1' : '' }, 'LISTENING');
    const me = `${rs.url}/me`;
    const tag = nonce ? ' (RS_DPOP_NONCE=1)' : '';
    let rsNonce;
    if (nonce) {
      const first = await send({ htm: 'GET', htu: me, accessToken: got.access_token, key: 'k1' });
      const challenged = await callMe(me, got.access_token, first.proof);
      check(challenged.status === 401 && challenged.body.error === 'use_dpop_nonce' && challenged.nonce && /use_dpop_nonce/.test(challenged.challenge), `no nonce: 401 use_dpop_nonce${tag}`, challenged);
      rsNonce = challenged.nonce;
    }
    const fresh = await send({ htm: 'GET', htu: me, accessToken: got.access_token, key: 'k1', nonce: rsNonce });
    const ok = await callMe(me, got.access_token, fresh.proof);
    check(ok.status === 200 && ok.body.client_id === 'rs-dpop' && ok.body.cnf?.jkt === got.jkt, `a fresh proof is accepted${tag}`, ok);
    const replay = await callMe(me, got.access_token, fresh.proof);
    check(replay.status === 401 && replay.body.error === 'invalid_dpop_proof', `a replayed proof is refused${tag}`, replay);
    const wrongHtu = await send({ htm: 'GET', htu: `${rs.url}/other`, accessToken: got.access_token, key: 'k1', nonce: rsNonce });
    const htu = await callMe(me, got.access_token, wrongHtu.proof);
    check(htu.status === 401 && htu.body.error === 'invalid_dpop_proof' && /htu/.test(htu.body.message), `a proof for another htu is refused${tag}`, htu);
    const otherKey = await send({ htm: 'GET', htu: me, accessToken: got.access_token, key: 'k2', nonce: rsNonce });
    const key = await callMe(me, got.access_token, otherKey.proof);
    check(key.status === 401 && key.body.error === 'invalid_dpop_proof', `a proof from another key is refused${tag}`, key);
    const asBearer = await callMe(me, got.access_token, undefined, 'Bearer');
    check(asBearer.status === 401 && asBearer.body.error === 'invalid_token' && /^DPoP /.test(asBearer.challenge), `the bound token as a Bearer token is refused${tag}`, asBearer);
    const unbound = await send({ htm: 'GET', htu: me, accessToken: plainBody.access_token, key: 'k1', nonce: rsNonce });
    const plainCall = await callMe(me, plainBody.access_token, unbound.proof);
    check(plainCall.status === 401 && plainCall.body.error === 'invalid_token', `an unbound token is refused${tag}`, plainCall);
    const none = await fetch(me);
    check(none.status === 401 && !/error=/.test(none.headers.get('www-authenticate')), `no Authorization: 401 with a bare DPoP challenge${tag}`, none.headers.get('www-authenticate'));
    rs.child.stdin.end();
  }
  idp.child.stdin.end();
}

function openssl(dir, ...args) {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function makeCertificates(dir) {
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const ca of ['ca', 'rogue-ca']) {
    openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${ca}`, '-keyout', `${ca}.key`, '-out', `${ca}.pem`);
  }
  const leaf = (name, subject, ca, ext) => {
    openssl(dir, 'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', subject, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', `${name}.pem`);
  };
  leaf('server', '/CN=127.0.0.1', 'ca', 'server.ext');
  leaf('client', '/CN=rs-mtls', 'ca', 'client.ext');
  leaf('rogue', '/CN=rs-mtls', 'rogue-ca', 'client.ext');
  // Self-signed client certificates: rs-mtls-self's, and another one.
  for (const name of ['self', 'self-other']) {
    openssl(
      dir,
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=rs-mtls-self'],
      ...['-addext', 'extendedKeyUsage=clientAuth', '-keyout', `${name}.key`, '-out', `${name}.pem`],
    );
  }
}

function thumbprint(dir, name) {
  return createHash('sha256').update(new X509Certificate(readFileSync(join(dir, `${name}.pem`))).raw).digest('base64url');
}

/** An HTTPS request to the mutual-TLS IdP, with the client certificate `cert` if given. */
function tlsRequest(url, dir, { method = 'GET', cert, headers = {}, body }) {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method,
        ca: readFileSync(join(dir, 'ca.pem')),
        ...(cert ? { cert: readFileSync(join(dir, `${cert}.pem`)), key: readFileSync(join(dir, `${cert}.key`)) } : {}),
        headers,
        agent: false,
      },
      (res) => {
        let text = '';
        res.on('data', (chunk) => {
          text += chunk;
        });
        res.on('end', () => {
          let parsed = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // Not JSON (a 404 of the provider's router): kept as text.
          }
          resolve({ status: res.statusCode, body: parsed });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function tlsToken(tokenEndpoint, dir, { cert, auth, resource = API, clientId = 'rs-mtls' }) {
  const body = new URLSearchParams({ grant_type: 'client_credentials', resource, ...(auth ? {} : { client_id: clientId }) }).toString();
  const headers = { 'content-type': 'application/x-www-form-urlencoded', ...(auth ? { authorization: auth } : {}) };
  return tlsRequest(tokenEndpoint, dir, { method: 'POST', cert, headers, body });
}

async function mtlsChecks() {
  const dir = mkdtempSync(join(tmpdir(), 'idp-mtls-'));
  try {
    makeCertificates(dir);
    const idp = await start(
      'idp.mjs',
      [],
      { IDP_TLS_CERT: join(dir, 'server.pem'), IDP_TLS_KEY: join(dir, 'server.key'), IDP_TLS_CLIENT_CA: join(dir, 'ca.pem') },
      'ISSUER',
    );
    check(idp.url.startsWith('https://127.0.0.1:'), 'the mutual-TLS IdP announces an https issuer', idp.url);
    const tokenEndpoint = `${idp.url}/token`;
    const expected = createHash('sha256').update(new X509Certificate(readFileSync(join(dir, 'client.pem'))).raw).digest('base64url');

    const mtls = await tlsToken(tokenEndpoint, dir, { cert: 'client' });
    check(mtls.status === 200, 'rs-mtls authenticates with its certificate (tls_client_auth)', mtls);
    check(mtls.body.token_type === 'Bearer', 'token_type stays Bearer for a certificate-bound token', mtls.body);
    check(claims(mtls.body.access_token).cnf?.['x5t#S256'] === expected, 'its access token carries cnf["x5t#S256"] of the certificate', claims(mtls.body.access_token));

    const bound = await tlsToken(tokenEndpoint, dir, { cert: 'client', auth: basic('rs-mtls-bound', 'mtls-secret') });
    check(bound.status === 200 && claims(bound.body.access_token).cnf?.['x5t#S256'] === expected, 'rs-mtls-bound: secret authenticates, certificate binds', bound);

    const noCert = await tlsToken(tokenEndpoint, dir, {});
    check(noCert.status === 401 && noCert.body.error === 'invalid_client', 'rs-mtls without a certificate: invalid_client', noCert);
    const rogue = await tlsToken(tokenEndpoint, dir, { cert: 'rogue' });
    check(rogue.status === 401 && rogue.body.error === 'invalid_client', 'rs-mtls with a certificate from another CA: invalid_client', rogue);
    const boundNoCert = await tlsToken(tokenEndpoint, dir, { auth: basic('rs-mtls-bound', 'mtls-secret') });
    check(boundNoCert.status === 400 && boundNoCert.body.error === 'invalid_grant', 'rs-mtls-bound without a certificate: invalid_grant', boundNoCert);
    const plain = await tlsToken(tokenEndpoint, dir, { cert: 'client', auth: basic('rs-test', 'rs-secret') });
    check(plain.status === 200 && claims(plain.body.access_token).cnf === undefined, 'rs-test with a certificate still gets an unbound token', plain);
    const selfUnknown = await tlsToken(tokenEndpoint, dir, { cert: 'self', clientId: 'rs-mtls-self' });
    check(selfUnknown.status === 401 && selfUnknown.body.error === 'invalid_client', 'no rs-mtls-self without IDP_MTLS_SELF_SIGNED_CERT', selfUnknown);
    const noAlias = await tlsToken(`${idp.url}/mtls/token`, dir, { cert: 'client' });
    check(noAlias.status === 404, 'no mTLS alias without IDP_MTLS_ALIASES', noAlias);
    const metadata = await tlsRequest(`${idp.url}/.well-known/openid-configuration`, dir, {});
    check(metadata.status === 200 && metadata.body.issuer === idp.url && metadata.body.mtls_endpoint_aliases === undefined, 'nor mtls_endpoint_aliases in discovery', metadata);
    idp.child.stdin.end();

    await mtlsSelfSignedAndAliasChecks(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// IDP_MTLS_SELF_SIGNED_CERT and IDP_MTLS_ALIASES.
async function mtlsSelfSignedAndAliasChecks(dir) {
  const idp = await start(
    'idp.mjs',
    [],
    {
      IDP_TLS_CERT: join(dir, 'server.pem'),
      IDP_TLS_KEY: join(dir, 'server.key'),
      IDP_TLS_CLIENT_CA: join(dir, 'ca.pem'),
      IDP_MTLS_SELF_SIGNED_CERT: join(dir, 'self.pem'),
      IDP_MTLS_ALIASES: '1',
    },
    'ISSUER',
  );
  const tokenEndpoint = `${idp.url}/token`;
  const metadata = (await tlsRequest(`${idp.url}/.well-known/openid-configuration`, dir, {})).body;
  const alias = metadata.mtls_endpoint_aliases?.token_endpoint;
  check(alias === `${idp.url}/mtls/token`, 'discovery: mtls_endpoint_aliases.token_endpoint', metadata);
  check(metadata.token_endpoint === tokenEndpoint, 'discovery: token_endpoint unchanged', metadata.token_endpoint);

  const self = thumbprint(dir, 'self');
  for (const [endpoint, where] of [
    [tokenEndpoint, 'token endpoint'],
    [alias, 'mTLS alias'],
  ]) {
    const got = await tlsToken(endpoint, dir, { cert: 'self', clientId: 'rs-mtls-self' });
    const bound = got.status === 200 && claims(got.body.access_token).cnf?.['x5t#S256'] === self;
    check(bound, `rs-mtls-self: self_signed_tls_client_auth, token bound to its certificate (${where})`, got);
  }
  for (const [cert, what] of [
    ['self-other', 'another self-signed certificate'],
    ['client', 'a certificate of the client CA'],
    [undefined, 'no certificate'],
  ]) {
    const got = await tlsToken(tokenEndpoint, dir, { cert, clientId: 'rs-mtls-self' });
    check(got.status === 401 && got.body.error === 'invalid_client', `rs-mtls-self with ${what}: 401 invalid_client`, got);
  }
  const boundSelf = await tlsToken(tokenEndpoint, dir, { cert: 'self', auth: basic('rs-mtls-bound', 'mtls-secret') });
  check(boundSelf.status === 400 && boundSelf.body.error === 'invalid_grant', 'rs-mtls-bound with a self-signed certificate: still invalid_grant', boundSelf);
  const mtls = await tlsToken(tokenEndpoint, dir, { cert: 'self' });
  check(mtls.status === 401 && mtls.body.error === 'invalid_client', 'rs-mtls with a self-signed certificate: still invalid_client', mtls);

  const client = thumbprint(dir, 'client');
  const viaAlias = await tlsToken(alias, dir, { cert: 'client' });
  check(viaAlias.status === 200 && claims(viaAlias.body.access_token).cnf?.['x5t#S256'] === client, 'rs-mtls at the mTLS alias', viaAlias);
  const boundAlias = await tlsToken(alias, dir, { cert: 'client', auth: basic('rs-mtls-bound', 'mtls-secret') });
  check(boundAlias.status === 200 && claims(boundAlias.body.access_token).cnf?.['x5t#S256'] === client, 'rs-mtls-bound at the mTLS alias', boundAlias);
  for (const [auth, what] of [
    [undefined, 'rs-mtls'],
    [basic('rs-test', 'rs-secret'), 'rs-test'],
  ]) {
    const got = await tlsToken(alias, dir, { auth });
    check(got.status === 401 && got.body.error === 'invalid_client', `${what} at the mTLS alias without a certificate: 401 invalid_client`, got);
  }
  const plain = await tlsToken(tokenEndpoint, dir, { auth: basic('rs-test', 'rs-secret') });
  check(plain.status === 200, 'the token endpoint itself still takes requests without a certificate', plain);
  const stats = (await tlsRequest(`${idp.url}/__stats`, dir, {})).body;
  // 7 requests at the token endpoint, 3 at the alias that got through (2 refused there).
  check(stats.mtls_token === 3 && stats.token === 10, '/__stats: token counts both URLs, mtls_token the alias, refusals at the alias in neither', stats);
  idp.child.stdin.end();
}

/** A key pair as JWKs, straight from the key generation (see newJwkPair in idp.mjs). */
function jwkPair(type, options) {
  return generateKeyPairSync(type, { ...options, publicKeyEncoding: { format: 'jwk' }, privateKeyEncoding: { format: 'jwk' } });
}

/** A form POST: the status and the JSON body of the answer. */
async function post(url, form, headers = {}) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form),
  });
  return { status: response.status, body: await response.json() };
}

/** The authorization server's metadata, through oauth4webapi. */
async function discover(issuer) {
  const url = new URL(issuer);
  return oauth.processDiscoveryResponse(url, await oauth.discoveryRequest(url, { algorithm: 'oidc', ...INSECURE }));
}

/** A client_credentials token, the client authenticated with client_secret_basic. */
async function basicToken(tokenEndpoint, [clientId, secret], resource, scope) {
  const got = await post(tokenEndpoint, { grant_type: 'client_credentials', resource, ...(scope ? { scope } : {}) }, { authorization: basic(clientId, secret) });
  check(got.status === 200, `${clientId} gets a token for ${resource}`, got);
  return got.body.access_token;
}

/** An RFC 7523 client assertion, by default for the issuer, good for a minute. */
async function clientAssertion(clientId, key, alg, { aud, kid, exp, jti } = {}) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg, ...(kid ? { kid } : {}) })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(aud)
    .setIssuedAt(now)
    .setExpirationTime(exp ?? now + 60)
    .setJti(jti ?? randomUUID())
    .sign(key);
}

function refused(got, status, error, what) {
  check(got.status === status && got.body.error === error, `${what}: ${status} ${error}`, got);
}

async function jwtAuthChecks() {
  const rsa = jwkPair('rsa', { modulusLength: 2048 });
  const ec = jwkPair('ec', { namedCurve: 'P-256' });
  const ed = jwkPair('ed25519');
  const stranger = jwkPair('rsa', { modulusLength: 2048 });
  const clientJwks = {
    'rs-pkjwt-rs256': { keys: [{ ...rsa.publicKey, kid: 'rsa-1' }] },
    'rs-pkjwt-es256': { keys: [ec.publicKey] },
    'rs-pkjwt-ed25519': { keys: [ed.publicKey] },
  };
  // The opaque mode, for the introspection endpoint too.
  const idp = await start('idp.mjs', [], { IDP_OPAQUE: '1', IDP_CLIENT_JWKS: JSON.stringify(clientJwks) }, 'ISSUER');
  const issuer = idp.url;
  const as = await discover(issuer);
  const tokenEndpoint = as.token_endpoint;
  const introspectionEndpoint = as.introspection_endpoint;
  check(
    ['client_secret_jwt', 'private_key_jwt'].every((method) => as.token_endpoint_auth_methods_supported.includes(method)),
    'discovery offers client_secret_jwt and private_key_jwt',
    as.token_endpoint_auth_methods_supported,
  );
  check(
    ['HS256', 'RS256', 'PS256', 'ES256', 'Ed25519', 'EdDSA'].every((alg) => as.token_endpoint_auth_signing_alg_values_supported.includes(alg)),
    'discovery offers HS256, RS256, PS256, ES256, Ed25519 and EdDSA for client assertions',
    as.token_endpoint_auth_signing_alg_values_supported,
  );

  // oauth4webapi's private_key_jwt (its assertions name the issuer as audience).
  for (const [clientId, jwk, alg, kid] of [
    ['rs-pkjwt-rs256', rsa.privateKey, 'RS256', 'rsa-1'],
    ['rs-pkjwt-rs256', rsa.privateKey, 'PS256', 'rsa-1'],
    ['rs-pkjwt-es256', ec.privateKey, 'ES256'],
    ['rs-pkjwt-ed25519', ed.privateKey, 'Ed25519'],
  ]) {
    const client = { client_id: clientId };
    const auth = oauth.PrivateKeyJwt({ key: await importJWK(jwk, alg), kid });
    const response = await oauth.clientCredentialsGrantRequest(as, client, auth, { resource: API, scope: 'read' }, INSECURE);
    const body = await oauth.processClientCredentialsResponse(as, client, response);
    const at = claims(body.access_token);
    check(at.client_id === clientId && at.sub === clientId && at.aud === API && at.scope === 'read', `${clientId}: private_key_jwt with ${alg} (oauth4webapi)`, at);
  }

  // Assertions made here, one property at a time.
  const rsKey = await importJWK(rsa.privateKey, 'RS256');
  const pkjwt = async (options, { clientId = 'rs-pkjwt-rs256', key = rsKey, alg = 'RS256', assertion } = {}) =>
    post(tokenEndpoint, {
      grant_type: 'client_credentials',
      resource: API,
      client_id: clientId,
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: assertion ?? (await clientAssertion(clientId, key, alg, options)),
    });
  const accepted = (got, what) => check(got.status === 200 && got.body.token_type === 'Bearer', what, got);
  accepted(await pkjwt({ aud: issuer }), 'assertion audience: the issuer');
  accepted(await pkjwt({ aud: tokenEndpoint }), 'assertion audience: the token endpoint URL');
  accepted(await pkjwt({ aud: ['https://elsewhere.example.test', issuer] }), 'assertion audience: a list that holds the issuer');
  accepted(
    await pkjwt({ aud: issuer }, { clientId: 'rs-pkjwt-ed25519', key: await importJWK(ed.privateKey, 'EdDSA'), alg: 'EdDSA' }),
    'rs-pkjwt-ed25519: private_key_jwt with EdDSA',
  );
  refused(await pkjwt({ aud: 'https://elsewhere.example.test' }), 401, 'invalid_client', 'assertion for another audience');
  refused(await pkjwt({ aud: introspectionEndpoint }), 401, 'invalid_client', 'assertion for the introspection endpoint, at the token endpoint');
  refused(await pkjwt({ aud: issuer, exp: Math.floor(Date.now() / 1000) - 60 }), 401, 'invalid_client', 'expired assertion');
  refused(await pkjwt({ aud: issuer }, { key: await importJWK(stranger.privateKey, 'RS256') }), 401, 'invalid_client', 'assertion signed by an unregistered key');
  refused(await pkjwt({ aud: issuer }, { key: await importJWK(ec.privateKey, 'ES256'), alg: 'ES256' }), 401, 'invalid_client', "assertion signed by another client's key");
  const once = await clientAssertion('rs-pkjwt-rs256', rsKey, 'RS256', { aud: issuer });
  accepted(await pkjwt({}, { assertion: once }), 'a fresh assertion');
  refused(await pkjwt({}, { assertion: once }), 401, 'invalid_client', 'the same assertion again (jti replay)');
  refused(
    await post(tokenEndpoint, { grant_type: 'client_credentials', resource: API, client_assertion: await clientAssertion('rs-pkjwt-rs256', rsKey, 'RS256', { aud: issuer }) }),
    400,
    'invalid_request',
    'assertion without client_assertion_type',
  );
  refused(
    await post(tokenEndpoint, { grant_type: 'client_credentials', resource: API }, { authorization: basic('rs-pkjwt-rs256', 'guess') }),
    401,
    'invalid_client',
    'a private_key_jwt client with client_secret_basic',
  );

  // client_secret_jwt.
  {
    const client = { client_id: CSJWT[0] };
    const response = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretJwt(CSJWT[1]), { resource: API, scope: 'read write' }, INSECURE);
    const body = await oauth.processClientCredentialsResponse(as, client, response);
    const at = claims(body.access_token);
    check(at.client_id === CSJWT[0] && at.scope === 'read write', 'rs-csjwt: client_secret_jwt with HS256 (oauth4webapi)', at);
    const secret = new TextEncoder().encode(CSJWT[1]);
    accepted(await pkjwt({ aud: tokenEndpoint }, { clientId: CSJWT[0], key: secret, alg: 'HS256' }), 'rs-csjwt: assertion for the token endpoint URL');
    refused(
      await pkjwt({ aud: issuer }, { clientId: CSJWT[0], key: new TextEncoder().encode('another-secret-with-32-bytes-or-more'), alg: 'HS256' }),
      401,
      'invalid_client',
      'rs-csjwt: assertion with the wrong secret',
    );
    refused(
      await post(tokenEndpoint, { grant_type: 'client_credentials', resource: API }, { authorization: basic(...CSJWT) }),
      401,
      'invalid_client',
      'rs-csjwt with client_secret_basic',
    );
  }

  // What was there before is as it was.
  const plain = await basicToken(tokenEndpoint, ['rs-test', 'rs-secret'], API, 'read');
  check(claims(plain).client_id === 'rs-test', 'rs-test still authenticates with client_secret_basic');

  // The introspection endpoint takes the same methods (and its own URL as audience).
  const opaque = await basicToken(tokenEndpoint, ['rs-test', 'rs-secret'], API_OPAQUE, 'read');
  const introspect = async (clientId, auth) => {
    const client = { client_id: clientId };
    return oauth.processIntrospectionResponse(as, client, await oauth.introspectionRequest(as, client, auth, opaque, INSECURE));
  };
  for (const [clientId, auth, what] of [
    ['rs-pkjwt-es256', oauth.PrivateKeyJwt(await importJWK(ec.privateKey, 'ES256')), 'private_key_jwt'],
    [CSJWT[0], oauth.ClientSecretJwt(CSJWT[1]), 'client_secret_jwt'],
    ['rs-introspect', oauth.ClientSecretBasic('introspect-secret'), 'client_secret_basic (unchanged)'],
  ]) {
    const answer = await introspect(clientId, auth);
    check(answer.active === true && answer.client_id === 'rs-test', `introspection with ${what} (${clientId})`, answer);
  }
  const atIntrospection = await post(introspectionEndpoint, {
    token: opaque,
    client_id: 'rs-pkjwt-rs256',
    client_assertion_type: ASSERTION_TYPE,
    client_assertion: await clientAssertion('rs-pkjwt-rs256', rsKey, 'RS256', { aud: introspectionEndpoint }),
  });
  check(atIntrospection.status === 200 && atIntrospection.body.active === true, 'introspection: assertion audience the introspection endpoint URL', atIntrospection);
  idp.child.stdin.end();
}

async function exchangeChecks() {
  const idp = await start('idp.mjs', [], {}, 'ISSUER');
  const issuer = idp.url;
  const as = await discover(issuer);
  const tokenEndpoint = as.token_endpoint;
  check(as.grant_types_supported.includes(TOKEN_EXCHANGE), 'discovery lists the token-exchange grant', as.grant_types_supported);
  const stats = async () => (await fetch(`${issuer}/__stats`)).json();

  const subjectToken = await basicToken(tokenEndpoint, ['rs-test', 'rs-secret'], API_GATEWAY, 'read write');
  const subject = claims(subjectToken);
  const subjectHeader = decodeProtectedHeader(subjectToken);
  const gatewayToken = subject.aud === API_GATEWAY && subjectHeader.alg === 'RS256' && subjectHeader.typ === 'at+jwt';
  check(gatewayToken, 'the gateway resource gets RS256 JWT access tokens', { subjectHeader, subject });

  const exchange = (params, client = EXCHANGE) =>
    post(tokenEndpoint, { grant_type: TOKEN_EXCHANGE, ...params }, { authorization: basic(...client) });
  const base = { subject_token: subjectToken, subject_token_type: ACCESS_TOKEN_TYPE };
  let issued = 0;

  // oauth4webapi asks, and validates the token as an RFC 9068 resource server would.
  {
    const client = { client_id: EXCHANGE[0] };
    const response = await oauth.genericTokenEndpointRequest(as, client, oauth.ClientSecretBasic(EXCHANGE[1]), TOKEN_EXCHANGE, { ...base, audience: API_DOWNSTREAM }, INSECURE);
    const body = await oauth.processGenericTokenEndpointResponse(as, client, response);
    issued += 1;
    const answered = body.issued_token_type === ACCESS_TOKEN_TYPE && body.expires_in === 300 && body.scope === 'read write';
    check(answered, 'rs-exchange exchanges a gateway token for a downstream one (oauth4webapi)', body);
    const request = new Request(`${API_DOWNSTREAM}/resource`, { headers: { authorization: `Bearer ${body.access_token}` } });
    const at = await oauth.validateJwtAccessToken(as, request, API_DOWNSTREAM, INSECURE);
    check(at.iss === issuer && at.sub === 'rs-test' && at.client_id === 'rs-exchange', 'iss, sub of the subject token, client_id of the exchanging client', at);
    check(at.act?.sub === 'rs-exchange' && at.act.act === undefined, 'act.sub is the exchanging client', at);
    check(at.exp - at.iat === 300 && typeof at.jti === 'string' && at.scope === 'read write', 'five minutes, a jti, the subject token scope', at);
    const header = decodeProtectedHeader(body.access_token);
    check(header.kid === subjectHeader.kid && header.typ === 'at+jwt' && header.alg === 'RS256', "signed with the provider's current RS256 key", header);
  }

  const ok = async (params, what, client) => {
    const got = await exchange(params, client);
    check(got.status === 200 && got.body.token_type === 'Bearer' && got.body.issued_token_type === ACCESS_TOKEN_TYPE, what, got);
    issued += 1;
    return { body: got.body, at: claims(got.body.access_token) };
  };
  check((await ok({ ...base, resource: API_DOWNSTREAM }, 'the target as resource')).at.aud === API_DOWNSTREAM, 'aud is the target');
  await ok(
    { ...base, audience: API_DOWNSTREAM, resource: API_DOWNSTREAM, requested_token_type: ACCESS_TOKEN_TYPE },
    'audience and resource alike, requested_token_type access_token',
  );
  const narrowed = await ok({ ...base, audience: API_DOWNSTREAM, scope: 'read' }, 'scope read');
  check(narrowed.at.scope === 'read' && narrowed.body.scope === 'read', 'the requested scope', narrowed);
  const intersected = await ok({ ...base, audience: API_DOWNSTREAM, scope: 'read admin' }, 'scope read admin');
  check(intersected.at.scope === 'read' && intersected.body.scope === 'read', 'a requested scope narrowed to the subject token', intersected);

  const actorToken = await basicToken(tokenEndpoint, ['svc:special', 'p@ss:w+rd%/ &='], API, 'read');
  const acted = await ok({ ...base, audience: API_DOWNSTREAM, actor_token: actorToken, actor_token_type: ACCESS_TOKEN_TYPE }, 'with an actor token');
  check(acted.at.act?.sub === 'svc:special' && acted.at.sub === 'rs-test', "act.sub is the actor token's sub", acted.at);
  const again = await ok({ subject_token: acted.body.access_token, subject_token_type: ACCESS_TOKEN_TYPE, audience: API_DOWNSTREAM }, 'an exchanged token exchanged again');
  check(
    again.at.sub === 'rs-test' && again.at.act?.sub === 'rs-exchange' && again.at.act.act?.sub === 'svc:special',
    'the earlier act is nested (delegation chain)',
    again.at,
  );

  // Refusals.
  refused(await exchange({ ...base, audience: API }), 400, 'invalid_target', 'a target outside the policy');
  refused(await exchange({ ...base, audience: API_DOWNSTREAM, resource: API_GATEWAY }), 400, 'invalid_target', 'audience and resource that differ');
  refused(await exchange(base), 400, 'invalid_request', 'no audience nor resource');
  refused(await exchange({ ...base, audience: API_DOWNSTREAM, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt' }), 400, 'invalid_request', 'subject_token_type jwt');
  refused(await exchange({ subject_token: subjectToken, audience: API_DOWNSTREAM }), 400, 'invalid_request', 'no subject_token_type');
  refused(await exchange({ subject_token_type: ACCESS_TOKEN_TYPE, audience: API_DOWNSTREAM }), 400, 'invalid_request', 'no subject_token');
  refused(
    await exchange({ ...base, audience: API_DOWNSTREAM, requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }),
    400,
    'invalid_request',
    'requested_token_type refresh_token',
  );
  refused(await exchange({ ...base, audience: API_DOWNSTREAM, actor_token: actorToken }), 400, 'invalid_request', 'actor_token without actor_token_type');
  refused(await exchange({ ...base, audience: API_DOWNSTREAM, scope: 'admin' }), 400, 'invalid_scope', 'a scope the subject token does not hold');

  const [h, p, sig] = subjectToken.split('.');
  const forgedPayload = Buffer.from(JSON.stringify({ ...subject, sub: 'someone-else' })).toString('base64url');
  refused(await exchange({ ...base, subject_token: `${h}.${forgedPayload}.${sig}`, audience: API_DOWNSTREAM }), 400, 'invalid_grant', 'a tampered subject token');
  const foreignKey = await importJWK(jwkPair('rsa', { modulusLength: 2048 }).privateKey, 'RS256');
  const foreign = await new SignJWT({ ...subject }).setProtectedHeader({ alg: 'RS256', kid: subjectHeader.kid, typ: 'at+jwt' }).sign(foreignKey);
  refused(await exchange({ ...base, subject_token: foreign, audience: API_DOWNSTREAM }), 400, 'invalid_grant', 'a subject token signed by another key');
  refused(await exchange({ ...base, subject_token: 'an-opaque-token', audience: API_DOWNSTREAM }), 400, 'invalid_grant', 'an opaque subject token');
  const encrypted = await basicToken(tokenEndpoint, ['rs-test', 'rs-secret'], API_JWE, 'read');
  refused(await exchange({ ...base, subject_token: encrypted, audience: API_DOWNSTREAM }), 400, 'invalid_grant', 'an encrypted (JWE) subject token');
  refused(
    await exchange({ ...base, audience: API_DOWNSTREAM, actor_token: 'not-a-token', actor_token_type: ACCESS_TOKEN_TYPE }),
    400,
    'invalid_grant',
    'a bad actor token',
  );
  refused(await exchange({ ...base, audience: API_DOWNSTREAM }, ['rs-test', 'rs-secret']), 400, 'invalid_request', 'a client without the grant (rs-test)');
  refused(await exchange({ ...base, audience: API_DOWNSTREAM }, [EXCHANGE[0], 'wrong']), 401, 'invalid_client', 'rs-exchange with a wrong secret');

  const expiring = await basicToken(tokenEndpoint, ['rs-test', 'rs-secret'], API_EXPIRING, 'read');
  const { exp, iat } = claims(expiring);
  check(exp - iat === 2, 'the expiring resource gets two-second tokens', { exp, iat });
  await ok({ ...base, subject_token: expiring, audience: API_DOWNSTREAM }, 'an expiring subject token, still valid');
  await sleep((exp + 1) * 1000 - Date.now());
  refused(await exchange({ ...base, subject_token: expiring, audience: API_DOWNSTREAM }), 400, 'invalid_grant', 'an expired subject token');

  let counted = await stats();
  check(counted.token_exchange_issued === issued, `/__stats counts the ${issued} tokens issued by exchange`, counted);
  const bySubject = { [subject.jti]: issued - 2, [acted.at.jti]: 1, [claims(expiring).jti]: 1 };
  check(
    Object.entries(bySubject).every(([jti, count]) => counted.token_exchange_by_subject[jti] === count),
    'and per subject token (by jti)',
    { expected: bySubject, counted: counted.token_exchange_by_subject },
  );
  check(counted.token_exchange > issued, 'and every exchange request that reached the grant', counted);

  // Key rotation: a subject token of the previous generation still counts; two rotations
  // later its key is no longer published, and it no longer does.
  const rotated = await (await fetch(`${issuer}/__rotate`, { method: 'POST' })).json();
  const afterRotation = await ok({ ...base, audience: API_DOWNSTREAM }, 'a subject token of the previous key generation');
  check(decodeProtectedHeader(afterRotation.body.access_token).kid === rotated.kids.RS256, 'the exchanged token is signed with the new RS256 key', rotated);
  await fetch(`${issuer}/__rotate`, { method: 'POST' });
  refused(await exchange({ ...base, audience: API_DOWNSTREAM }), 400, 'invalid_grant', 'a subject token whose key is no longer published');
  counted = await stats();
  check(counted.token_exchange_issued === issued && counted.rotations === 2, '/__stats survive rotations', counted);
  idp.child.stdin.end();
}

/** Runs idp.mjs with `env` to its exit: the status and what it wrote on stderr. */
function idpExit(env) {
  const child = spawn(process.execPath, [join(HERE, 'idp.mjs')], { cwd: HERE, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  let stdout = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  child.stdout.on('data', (chunk) => {
    stdout += chunk;
  });
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill(), 30_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, stdout });
    });
  });
}

async function mcpChecks() {
  const MCP_CLIENT = ['mcp-client', 'mcp-secret'];
  // Ports nothing listens on: the IdP only names them.
  const tools = 'http://127.0.0.1:4000/mcp';
  const other = 'http://[::1]:4001/other/';
  const idp = await start('idp.mjs', [], { IDP_MCP_RESOURCES: ` ${tools} mcp:tools read,${other}  write mcp:tools mcp:tools ` }, 'ISSUER');
  const issuer = idp.url;

  // The discovery the MCP SDK runs on the issuer an MCP server names: RFC 8414 first.
  const sdkMetadata = await discoverAuthorizationServerMetadata(issuer);
  check(sdkMetadata?.issuer === issuer && sdkMetadata.token_endpoint === `${issuer}/token`, "the MCP SDK discovers the IdP's metadata and token endpoint", sdkMetadata);
  check(sdkMetadata.grant_types_supported.includes('client_credentials'), 'with the client_credentials grant', sdkMetadata.grant_types_supported);
  check(sdkMetadata.token_endpoint_auth_methods_supported.includes('client_secret_basic'), 'and client_secret_basic, which the SDK picks', sdkMetadata);
  const as = await discover(issuer);
  const token = async (resource, scope, client = MCP_CLIENT) =>
    post(as.token_endpoint, { grant_type: 'client_credentials', resource, ...(scope ? { scope } : {}) }, { authorization: basic(...client) });

  // oauth4webapi validates each token as an RFC 9068 resource server would, for its audience.
  const validated = async (accessToken, audience) => {
    const request = new Request(audience, { headers: { authorization: `Bearer ${accessToken}` } });
    return oauth.validateJwtAccessToken(as, request, audience, INSECURE);
  };

  const byDefault = await token(tools);
  check(byDefault.status === 200 && byDefault.body.scope === 'mcp:tools read', 'mcp-client, no scope asked: all the scopes the resource grants (RFC 6749 §3.3)', byDefault);
  const at = await validated(byDefault.body.access_token, tools);
  check(at.aud === tools && at.sub === 'mcp-client' && at.client_id === 'mcp-client' && at.scope === 'mcp:tools read', 'aud the resource as written, sub the client id, the scope', at);
  check(at.exp - at.iat === 600 && decodeProtectedHeader(byDefault.body.access_token).alg === 'RS256', 'an RS256 JWT good for 600 s', at);

  const narrowed = await token(tools, 'read');
  check(narrowed.status === 200 && claims(narrowed.body.access_token).scope === 'read', 'a scope asked for: that one only', narrowed);
  const foreign = await token(tools, 'write');
  check(foreign.status === 200 && claims(foreign.body.access_token).scope === undefined, 'a scope the resource does not grant: none', foreign);

  const second = await token(other);
  const secondClaims = second.status === 200 ? claims(second.body.access_token) : {};
  check(secondClaims.aud === other && secondClaims.scope === 'write mcp:tools', 'the second resource (IPv6, trailing slash): its own audience and scopes, once each', second);
  const rsTest = await token(tools, undefined, ['rs-test', 'rs-secret']);
  check(rsTest.status === 200 && claims(rsTest.body.access_token).scope === 'mcp:tools read', 'another client gets tokens for it too', rsTest);

  refused(await token('http://127.0.0.1:4000/mcp/'), 400, 'invalid_target', 'the resource written another way');
  refused(await token('http://127.0.0.1:4002/mcp'), 400, 'invalid_target', 'a loopback resource not listed');
  refused(await token(tools, undefined, [MCP_CLIENT[0], 'wrong']), 401, 'invalid_client', 'mcp-client with a wrong secret');
  const api = await token(API, undefined, ['rs-test', 'rs-secret']);
  check(api.status === 200 && claims(api.body.access_token).scope === undefined, 'the other resources still grant no scope by default', api);
  idp.child.stdin.end();

  const plain = await start('idp.mjs', [], {}, 'ISSUER');
  const absent = await post(`${plain.url}/token`, { grant_type: 'client_credentials', resource: API }, { authorization: basic(...MCP_CLIENT) });
  check(absent.status === 401 && absent.body.error === 'invalid_client', 'without IDP_MCP_RESOURCES: no mcp-client', absent);
  plain.child.stdin.end();

  for (const [value, reason] of [
    ['https://mcp.example.test/mcp read', /not on loopback/],
    ['http://127.0.0.1:4000/mcp', /no scope/],
    ['ftp://127.0.0.1/mcp read', /no http\(s\) URL/],
    ['http://127.0.0.1:4000/mcp#tools read', /fragment/],
    ['http://user@127.0.0.1:4000/mcp read', /user info/],
    ['http://127.0.0.1:4000/mcp re"ad', /not a scope token/],
    [`${tools} read, ${tools} write`, /registered twice/],
    [`${tools} read,, ${other} write`, /empty/],
  ]) {
    const exited = await idpExit({ IDP_MCP_RESOURCES: value });
    check(exited.code === 2 && reason.test(exited.stderr) && !exited.stdout.includes('ISSUER='), `IDP_MCP_RESOURCES=${JSON.stringify(value)} stops the IdP: ${reason.source}`, exited);
  }
}

const SECTIONS = { dpop: dpopChecks, mtls: mtlsChecks, 'jwt-auth': jwtAuthChecks, exchange: exchangeChecks, mcp: mcpChecks };

try {
  const named = process.argv.slice(2);
  const unknown = named.filter((name) => !(name in SECTIONS));
  if (unknown.length) throw new Error(`unknown section(s) ${unknown.join(', ')}; known: ${Object.keys(SECTIONS).join(', ')}`);
  for (const name of named.length ? named : Object.keys(SECTIONS)) {
    console.log(`# ${name}`);
    await SECTIONS[name]();
  }
  console.log('all checks passed');
  for (const child of children) child.kill();
  process.exit(0);
} catch (error) {
  console.log(`FAIL ${error.stack ?? error}`);
  for (const child of children) child.kill();
  process.exit(1);
}
