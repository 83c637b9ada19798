// An MCP client made of the official MCP TypeScript SDK (@modelcontextprotocol/sdk) alone, for
// tests/it/mcp.rs: it proves that the SDK reaches an MCP server behind tower-oauth given the
// server's URL and client credentials, and nothing else.
//
//   MCP_CLIENT_ID=... MCP_CLIENT_SECRET=... node tests/oidc/mcp_client.mjs MCP_URL
//                                           (after `npm ci` in tests/oidc; MCP_URL may be
//                                           given in the environment instead)
//
// What the SDK does on its own, the way any MCP client would: it connects with its
// streamable HTTP transport and its client-credentials auth provider (ClientCredentialsProvider,
// no expectedIssuer: the protected resource metadata names the authorization server), so the
// first request goes out without a token and gets a 401. From that 401 the SDK reads
// `resource_metadata` (WWW-Authenticate, RFC 9728 §5.1), fetches and validates that document
// (its zod schema), checks its `resource` against the server URL, discovers the authorization
// server named in `authorization_servers` (RFC 8414, else OpenID Connect discovery), and asks
// its token endpoint for a client_credentials token with `resource` the metadata's resource
// (RFC 8707), client_secret_basic. Then the client lists the tools and calls the only one,
// without arguments.
//
// Then, apart from that connection, it runs the SDK's discovery functions itself: the
// challenge of the first 401 parsed by extractWWWAuthenticateParams; the protected resource
// metadata fetched from the challenge's URL, from the path-aware well-known URL the SDK
// derives from the server URL, and from the root well-known URL, each validated by the SDK
// against OAuthProtectedResourceMetadataSchema; checkResourceAllowed on the resource; and
// discoverAuthorizationServerMetadata on the authorization server.
//
// Success: one JSON line on stdout, exit status 0:
//   {"tools": [the tools listed], "result": the tool's CallToolResult,
//    "unauthorized": 401 answers from the MCP server, over the whole connection,
//    "requests": ["METHOD URL STATUS", ...] every request of the connection, in order,
//    "token_requests": [{"url", "grant_type", "resource", "scope"}] the form of each token
//                      request (the client's credentials left out),
//    "token": {"token_type", "scope", "expires_in"} of the token the SDK holds (not the token),
//    "discovery": {"challenge": {"resource_metadata", "scope", "error"},
//                  "from_challenge", "path_aware", "root": the three metadata documents,
//                  "resource_allowed": checkResourceAllowed's verdict,
//                  "authorization_server": {"url", "issuer", "token_endpoint", "metadata_url"}}}
// Failure: {"error": message, "requests": [...]} on stdout, the stack on stderr, exit status 1.
// The SDK warns on stderr that omitting `expectedIssuer` is deprecated: that is the point.

import process from 'node:process';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  discoverAuthorizationServerMetadata,
  discoverOAuthProtectedResourceMetadata,
  extractWWWAuthenticateParams,
} from '@modelcontextprotocol/sdk/client/auth.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { checkResourceAllowed, resourceUrlFromServerUrl } from '@modelcontextprotocol/sdk/shared/auth-utils.js';

// The whole run, discovery and token request included, is over well within this.
const DEADLINE_MS = 30_000;

const requests = [];
const tokenRequests = [];
let unauthorized = 0;
let challenge;

function fail(error) {
  process.stdout.write(`${JSON.stringify({ error: String(error?.message ?? error), requests })}\n`);
  console.error(error?.stack ?? error);
  process.exit(1);
}

function required(name, value) {
  if (!value) fail(new Error(`${name} is not set (usage: MCP_CLIENT_ID=... MCP_CLIENT_SECRET=... node mcp_client.mjs MCP_URL)`));
  return value;
}

const serverUrl = new URL(required('MCP_URL', process.argv[2] ?? process.env.MCP_URL));
const clientId = required('MCP_CLIENT_ID', process.env.MCP_CLIENT_ID);
const clientSecret = required('MCP_CLIENT_SECRET', process.env.MCP_CLIENT_SECRET);
setTimeout(() => fail(new Error(`not done after ${DEADLINE_MS} ms`)), DEADLINE_MS).unref();

/**
 * The fetch the transport makes every request with (its own and the auth flow's): the global
 * one, with a record of each request. Records only: every decision stays the SDK's.
 */
async function recordingFetch(input, init) {
  const url = new URL(input instanceof Request ? input.url : input);
  const method = init?.method ?? (input instanceof Request ? input.method : 'GET');
  if (init?.body instanceof URLSearchParams && init.body.get('grant_type')) {
    const form = init.body;
    tokenRequests.push({ url: url.href, grant_type: form.get('grant_type'), resource: form.get('resource'), scope: form.get('scope') });
  }
  const response = await fetch(input, init);
  requests.push(`${method} ${url.href} ${response.status}`);
  if (response.status === 401 && url.origin === serverUrl.origin) {
    unauthorized += 1;
    // The SDK's own reading of the challenge; headers only, the body stays for the SDK.
    challenge ??= extractWWWAuthenticateParams(response);
  }
  return response;
}

try {
  const provider = new ClientCredentialsProvider({ clientId, clientSecret });
  const transport = new StreamableHTTPClientTransport(serverUrl, { authProvider: provider, fetch: recordingFetch });
  const client = new Client({ name: 'tower-oauth-mcp-interop', version: '0.0.0' });
  await client.connect(transport);
  const { tools } = await client.listTools();
  if (tools.length !== 1) throw new Error(`expected exactly one tool, listed ${JSON.stringify(tools.map((tool) => tool.name))}`);
  const result = await client.callTool({ name: tools[0].name, arguments: {} });
  const { token_type: tokenType, scope, expires_in: expiresIn } = (await provider.tokens()) ?? {};
  await client.close();

  if (!challenge) throw new Error('the MCP server never answered 401: nothing was discovered');
  const fromChallenge = await discoverOAuthProtectedResourceMetadata(serverUrl, { resourceMetadataUrl: challenge.resourceMetadataUrl });
  const pathAware = await discoverOAuthProtectedResourceMetadata(serverUrl);
  const root = await discoverOAuthProtectedResourceMetadata(serverUrl, {
    resourceMetadataUrl: new URL('/.well-known/oauth-protected-resource', serverUrl),
  });
  const resourceAllowed = checkResourceAllowed({
    requestedResource: resourceUrlFromServerUrl(serverUrl),
    configuredResource: fromChallenge.resource,
  });
  const [authorizationServerUrl] = fromChallenge.authorization_servers ?? [];
  if (!authorizationServerUrl) throw new Error('the protected resource metadata names no authorization server');
  // The first metadata URL that answered 200 is the one the SDK took (it tries them in order).
  const metadataUrls = [];
  const asMetadata = await discoverAuthorizationServerMetadata(authorizationServerUrl, {
    fetchFn: async (input, init) => {
      const response = await fetch(input, init);
      if (response.ok) metadataUrls.push(String(input));
      return response;
    },
  });
  if (!asMetadata) throw new Error(`no authorization server metadata found for ${authorizationServerUrl}`);

  const report = {
    tools,
    result,
    unauthorized,
    requests,
    token_requests: tokenRequests,
    token: { token_type: tokenType, scope, expires_in: expiresIn },
    discovery: {
      challenge: { resource_metadata: challenge.resourceMetadataUrl?.href, scope: challenge.scope, error: challenge.error },
      from_challenge: fromChallenge,
      path_aware: pathAware,
      root,
      resource_allowed: resourceAllowed,
      authorization_server: {
        url: authorizationServerUrl,
        issuer: asMetadata.issuer,
        token_endpoint: asMetadata.token_endpoint,
        metadata_url: metadataUrls[0],
      },
    },
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(0);
} catch (error) {
  fail(error);
}
