// A loopback TLS-terminating reverse proxy, for peers that refuse plain http (MSAL Python).
//
// Usage: node tls_proxy.mjs UPSTREAM PREFIX CERT.pem KEY.pem READYFILE
//
// Listens on https://127.0.0.1:<random port>, serves https://127.0.0.1:PORT/PREFIX/... from
// UPSTREAM/... (e.g. http://127.0.0.1:4444), and in discovery documents (/.well-known/...) rewrites
// every "UPSTREAM" to "https://127.0.0.1:PORT/PREFIX" so the issuer has a path segment (MSAL's
// oidc_authority needs one and checks that the issuer matches it). Writes {"url": ...} to READYFILE
// once listening. Exits when its parent goes away.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

const [upstream, prefix, certPath, keyPath, readyFile] = process.argv.slice(2);
const up = new URL(upstream);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const initialPpid = process.ppid;
setInterval(() => { if (process.ppid !== initialPpid || process.ppid === 1) process.exit(0); }, 500).unref();
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => process.exit(0));

let publicBase = '';
const server = https.createServer(
  { cert: fs.readFileSync(certPath), key: fs.readFileSync(keyPath) },
  (req, res) => {
    const head = `/${prefix}`;
    let path = req.url;
    if (path === head || path.startsWith(`${head}/`)) path = path.slice(head.length) || '/';
    else if (path.startsWith(`/.well-known/`) && path.endsWith(head)) path = path.slice(0, -head.length);
    else { res.writeHead(404); res.end(); return; }
    const headers = { ...req.headers, host: up.host };
    const proxied = http.request(
      { host: up.hostname, port: up.port, method: req.method, path, headers, agent },
      (upRes) => {
        const rewrite = path.startsWith('/.well-known/') && upRes.statusCode === 200;
        if (!rewrite) {
          res.writeHead(upRes.statusCode, upRes.headers);
          upRes.pipe(res);
          return;
        }
        const chunks = [];
        upRes.on('data', (c) => chunks.push(c));
        upRes.on('end', () => {
          const body = Buffer.from(Buffer.concat(chunks).toString('utf8').split(up.origin).join(publicBase));
          const out = { ...upRes.headers, 'content-length': String(body.length) };
          delete out['transfer-encoding'];
          delete out.etag;
          res.writeHead(upRes.statusCode, out);
          res.end(body);
        });
      },
    );
    proxied.on('error', () => { res.writeHead(502); res.end(); });
    req.pipe(proxied);
  },
);
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  publicBase = `https://127.0.0.1:${server.address().port}/${prefix}`;
  fs.writeFileSync(`${readyFile}.tmp`, JSON.stringify({ url: publicBase }));
  fs.renameSync(`${readyFile}.tmp`, readyFile);
});
