// Device flow to the end with the npm openid-client v6 (panva), against the server named in argv.
// Usage: node openid_client_device.mjs ISSUER CLIENT_ID [CLIENT_SECRET]
// Prints JSON lines on stdout: {"user_code", "verification_uri"} once the code is issued, then
// {"sub", "scope", "refreshed", "rotated"} after polling, validating the id_token and refreshing.
import * as client from 'openid-client'

const [issuer, clientId, secret] = process.argv.slice(2)
const auth = secret ? client.ClientSecretBasic(secret) : client.None()
const config = await client.discovery(new URL(issuer), clientId, undefined, auth, {
  execute: [client.allowInsecureRequests],
})
const response = await client.initiateDeviceAuthorization(config, { scope: 'openid profile offline_access' })
console.log(JSON.stringify({ user_code: response.user_code, verification_uri: response.verification_uri }))
const tokens = await client.pollDeviceAuthorizationGrant(config, response)
const claims = tokens.claims()
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token)
console.log(JSON.stringify({
  sub: claims.sub,
  name: claims.name,
  scope: tokens.scope,
  refreshed: refreshed.access_token !== tokens.access_token,
  rotated: refreshed.refresh_token !== tokens.refresh_token,
  refreshed_sub: refreshed.claims()?.sub,
}))
