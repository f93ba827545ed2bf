#!/usr/bin/env node
// The benchmark's peer: the smallest fair broadcast relay on the npm `ws`
// package, for rtet-bench to measure beside rtet-relay in the same run.
//
//   node server.js [PORT]      (0 or absent: a free port)
//
// Prints `listening 127.0.0.1:PORT` on stdout once it accepts connections.
//
// - `GET /publish`: a publisher. Every text message it sends is broadcast,
//   as the same bytes, to every subscriber, then answered with
//   `{"type":"ack","id":...}` so the publisher can pipeline with a window,
//   as it does against rtet-relay (whose ack means "queued for everyone").
// - `GET /ws`: a subscriber. What it sends is ignored.
//
// No auth, no channels, no history, no slow-consumer policy (ws buffers
// without bound): this is the baseline, not a product. Loopback only.
'use strict';

const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || process.env.PORT || 0);
const subscribers = new Set();

const server = http.createServer((req, res) => {
  res.writeHead(req.url === '/healthz' ? 200 : 404, { 'content-type': 'text/plain' });
  res.end(req.url === '/healthz' ? 'ok' : 'not found');
});
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

server.on('upgrade', (req, socket, head) => {
  const path = req.url.split('?')[0];
  if (path !== '/ws' && path !== '/publish') {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    if (path === '/ws') {
      subscribers.add(ws);
      ws.on('close', () => subscribers.delete(ws));
      ws.on('error', () => subscribers.delete(ws));
      return;
    }
    ws.on('message', (data, isBinary) => {
      for (const sub of subscribers) {
        if (sub.readyState === WebSocket.OPEN) sub.send(data, { binary: isBinary });
      }
      let id = null;
      try {
        id = JSON.parse(data).id;
      } catch (_) {
        // Not JSON: still broadcast, answer without an id.
      }
      ws.send(JSON.stringify({ type: 'ack', id, channel: 'public', seq: 0 }));
    });
    ws.on('error', () => {});
  });
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening 127.0.0.1:${server.address().port}\n`);
});

function stop() {
  for (const client of wss.clients) client.terminate();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
