// A Node-only check of the DPoP and mutual-TLS modes of idp.mjs and of dpop.mjs, without the
// Rust side: `node tests/oidc/selfcheck.mjs` (after `npm ci` here; needs the `openssl` CLI for
// the mutual-TLS part). Prints one line per check and exits non-zero on the first failure.

import { spawn, execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const API = 'https://api.example.test';
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
}

function tlsToken(tokenEndpoint, dir, { cert, auth, resource = API }) {
  return new Promise((resolve, reject) => {
    const body = new URLSearchParams({ grant_type: 'client_credentials', resource, ...(auth ? {} : { client_id: 'rs-mtls' }) }).toString();
    const req = httpsRequest(
      tokenEndpoint,
      {
        method: 'POST',
        ca: readFileSync(join(dir, 'ca.pem')),
        ...(cert ? { cert: readFileSync(join(dir, `${cert}.pem`)), key: readFileSync(join(dir, `${cert}.key`)) } : {}),
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...(auth ? { authorization: auth } : {}) },
        agent: false,
      },
      (res) => {
        let text = '';
        res.on('data', (chunk) => {
          text += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
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
    idp.child.stdin.end();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

try {
  await dpopChecks();
  await mtlsChecks();
  console.log('all checks passed');
  for (const child of children) child.kill();
  process.exit(0);
} catch (error) {
  console.log(`FAIL ${error.stack ?? error}`);
  for (const child of children) child.kill();
  process.exit(1);
}
