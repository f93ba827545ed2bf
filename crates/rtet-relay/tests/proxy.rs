//! The relay behind the documented nginx (`docs/install-wordpress.md`) with
//! the shipped `packaging/relay.toml`'s trusted proxies: browsers are told
//! apart by their own addresses, not all counted as nginx's, and nginx
//! passes on nothing but `/ws`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rtet_relay::{Config, Settings};

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// The ```nginx block of the install guide.
fn documented_location() -> String {
    let guide = std::fs::read_to_string(repo_file("docs/install-wordpress.md")).unwrap();
    let start = guide
        .find("```nginx\n")
        .expect("the guide has an nginx block")
        + 9;
    let len = guide[start..].find("```").expect("the block ends");
    guide[start..start + len].to_owned()
}

/// An nginx started from a config in its own directory; killed when dropped.
struct Nginx {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs nginx on a free loopback port with `server_body` as its one server's
/// body, and waits until it accepts connections.
fn start_nginx(server_body: &str) -> Nginx {
    let dir = std::env::temp_dir().join(format!(
        "rtet-proxy-test-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let addr = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/client;\n  proxy_temp_path {d}/tmp/proxy;\n  \
         fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n  \
         server {{\n    listen {addr};\n    server_name localhost;\n{server_body}\n  }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx is installed (scripts/setup.sh installs it)");
    let mut nginx = Nginx { child, dir, addr };
    let deadline = Instant::now() + Duration::from_secs(20);
    while StdStream::connect(addr).is_err() {
        if let Ok(Some(status)) = nginx.child.try_wait() {
            let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
            panic!("nginx exited with {status}: {log}");
        }
        assert!(Instant::now() < deadline, "nginx never listened on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
    nginx
}

/// The HTTP status nginx answers for one request.
fn status_through(addr: SocketAddr, method: &str, path: &str) -> u16 {
    let mut s = StdStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{{}}"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status from nginx: {answer:?}"))
}

#[tokio::test]
async fn behind_the_documented_nginx_each_browser_counts_by_its_own_address_and_only_ws_is_proxied()
{
    let shipped = Settings::from_file(&repo_file("packaging/relay.toml")).unwrap();
    let mut cfg = Config::resolve(
        Settings {
            api_keys: vec![KEY.into()],
            ..Default::default()
        },
        Some(Settings {
            trusted_proxies: shipped.trusted_proxies,
            ..Default::default()
        }),
    )
    .expect("the shipped trusted_proxies parse");
    cfg.limits.connections_per_ip = 1;
    let relay = start(cfg).await;
    let location = documented_location().replace("127.0.0.1:8090", &relay.addr.to_string());
    let nginx = start_nginx(&location);
    let url = format!("ws://{}/rtet/ws", nginx.addr);

    // Two browsers on two addresses (127.0.0.2 and .3 are this machine too),
    // one claiming to be someone else: nginx appends what it saw, and that counts.
    let mut first = ws_from("127.0.0.2", &url, &[("x-forwarded-for", "192.0.2.50")])
        .await
        .expect("a browser connects through nginx");
    assert_eq!(
        subscribe(&mut first, "public", None).await["type"],
        "subscribed"
    );
    let mut second = ws_from("127.0.0.3", &url, &[])
        .await
        .expect("another browser is not refused for the first one's place");
    assert_eq!(
        subscribe(&mut second, "public", None).await["type"],
        "subscribed"
    );
    assert_eq!(
        ws_from("127.0.0.2", &url, &[("x-forwarded-for", "192.0.2.51")])
            .await
            .err(),
        Some(429),
        "the same browser again is over its own limit of 1, whatever it forwards"
    );

    for (method, path) in [
        ("GET", "/rtet/metrics"),
        ("GET", "/rtet/publish"),
        ("POST", "/rtet/api/send-event"),
        ("GET", "/rtet/healthz"),
        ("GET", "/rtet/"),
    ] {
        assert_eq!(
            status_through(nginx.addr, method, path),
            404,
            "{method} {path} must not reach the relay through nginx"
        );
    }
}
