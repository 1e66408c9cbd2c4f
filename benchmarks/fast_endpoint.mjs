// The "fast local HTTP endpoint" of the auth-plugin overhead benchmark: answers every request on
// http://127.0.0.1:<random port> with 200 and a 2-byte body, keep-alive, checking nothing.
//
// Usage: node fast_endpoint.mjs READYFILE   (writes {"url": ...} once listening; exits with its parent)
import * as fs from 'node:fs';
import * as http from 'node:http';

const [readyFile] = process.argv.slice(2);
const initialPpid = process.ppid;
setInterval(() => { if (process.ppid !== initialPpid || process.ppid === 1) process.exit(0); }, 500).unref();
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => process.exit(0));

const body = Buffer.from('ok');
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  fs.writeFileSync(`${readyFile}.tmp`, JSON.stringify({ url: `http://127.0.0.1:${server.address().port}/api` }));
  fs.renameSync(`${readyFile}.tmp`, readyFile);
});
