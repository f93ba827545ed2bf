#!/usr/bin/env node
/**
 * The nginx load balancer in front of several rtet-relay nodes: the one
 * place its configuration is written. `scripts/run.sh --nodes N` and the
 * end-to-end tests start nginx with `balancerConfig()`; docs/scaling.md shows
 * its `balancerHttpBlock()` (print it with `node scripts/site/balancer.mjs`,
 * a test checks the two agree).
 *
 * Open-source nginx has no active health check (`health_check` is NGINX
 * Plus): a node is taken out only passively, after `max_fails` failed
 * attempts within `fail_timeout`, and tried again once that time is over.
 * That catches a node that is down or refuses connections (503 at its
 * connection limit), not one whose Redis is unreachable: such a node still
 * accepts WebSockets and answers only `/healthz` with 503. An active
 * balancer (HAProxy, NGINX Plus, a cloud load balancer) polling `/healthz`
 * takes that one out too; docs/scaling.md shows how.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The `upstream`, `map` and `server` blocks that go inside nginx's `http {}`.
 * - `listen`: the balancer's address, e.g. 127.0.0.1:8080
 * - `nodes`: the relay nodes' addresses, e.g. ['127.0.0.1:8090', '127.0.0.1:8091']
 */
export function balancerHttpBlock({ listen, nodes }) {
  if (!nodes.length) throw new Error('a balancer needs at least one relay node');
  const servers = nodes.map((n) => `    server ${n} max_fails=1 fail_timeout=5s;`).join('\n');
  return `  # Browsers keep their WebSocket for hours: least_conn sends a new one to the
  # node holding the fewest, so a node started later fills up instead of idling.
  upstream rtet_relays {
    least_conn;
${servers}
    keepalive 16;
  }

  map $http_upgrade $rtet_connection {
    default upgrade;
    ''      '';
  }

  server {
    listen ${listen};

    location / {
      proxy_pass http://rtet_relays;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $rtet_connection;
      proxy_set_header Host $host;
      # The relays count connections and replay bytes per client address:
      # start them with --trusted-proxy set to this balancer's address.
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
      # A node that refuses the connection, times out or answers 502/503/504
      # (503: at its connection limit, or its Redis is unreachable) is marked
      # failed and the next one is tried.
      # non_idempotent: a publish retried on another node is safe, the engine
      # dedupes (channel, id) across nodes.
      proxy_next_upstream error timeout http_502 http_503 http_504 non_idempotent;
      proxy_next_upstream_tries 3;
      proxy_connect_timeout 2s;
      # Longer than the relays' ping interval (25 s by default), so an idle
      # WebSocket is never cut by the balancer.
      proxy_read_timeout 120s;
      proxy_send_timeout 120s;
    }
  }
`;
}

/**
 * A whole nginx.conf running only the balancer, for a throwaway directory
 * `dir` (pid, logs and temporary files there; `user root` when run as root).
 */
export function balancerConfig({ dir, listen, nodes, asRoot = false }) {
  return `${asRoot ? 'user root;\n' : ''}worker_processes 1;
pid ${path.join(dir, 'balancer.pid')};
error_log ${path.join(dir, 'balancer-error.log')} warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log ${path.join(dir, 'balancer-access.log')};
  client_body_temp_path ${path.join(dir, 'nginx-tmp', 'client')};
  proxy_temp_path ${path.join(dir, 'nginx-tmp', 'proxy')};
  fastcgi_temp_path ${path.join(dir, 'nginx-tmp', 'fastcgi')};
  uwsgi_temp_path ${path.join(dir, 'nginx-tmp', 'uwsgi')};
  scgi_temp_path ${path.join(dir, 'nginx-tmp', 'scgi')};

${balancerHttpBlock({ listen, nodes })}}
`;
}

/** The addresses docs/scaling.md shows the configuration with. */
export const EXAMPLE = { listen: '0.0.0.0:80', nodes: ['10.0.0.11:8090', '10.0.0.12:8090'] };

// `node scripts/site/balancer.mjs [LISTEN NODE...]`: prints the http-block part
// (with EXAMPLE's addresses when given none).
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [listen = EXAMPLE.listen, ...nodes] = process.argv.slice(2);
  process.stdout.write(balancerHttpBlock({ listen, nodes: nodes.length ? nodes : EXAMPLE.nodes }));
}
