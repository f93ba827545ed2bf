//! Starting the relays under test as child processes on free loopback ports.
//! A [`Running`] kills its child (and, for nginx, the child's whole process
//! group: its workers) when stopped or dropped, so no run leaves one behind.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::target::{Dialect, Target};

/// How long a relay may take to answer `/healthz` or print its port.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A relay child process and how to reach it.
pub struct Running {
    /// The child; killed on drop.
    pub child: Child,
    /// Where it listens, and how to talk to it.
    pub target: Target,
    /// Its log (stderr), for when something goes wrong.
    pub log: PathBuf,
    /// A directory of its own (nginx's prefix), removed when it stops.
    pub dir: Option<PathBuf>,
    /// The child leads a process group of its own (nginx and its workers),
    /// which is killed as a whole.
    pub group: bool,
}

impl Running {
    /// Stops the child (SIGKILL) and waits for it.
    pub async fn stop(mut self) {
        self.kill_group();
        let _ = self.child.kill().await;
    }

    fn kill_group(&mut self) {
        if let (true, Some(pid)) = (self.group, self.child.id()) {
            // SAFETY: kill has no memory effects; -pid names the group the child leads.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill_group();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A fresh random API key: 48 hex characters from the kernel's generator.
pub fn random_key() -> Result<String> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// The `rtet-relay` next to this executable (the same cargo target
/// directory), if there is one.
pub fn default_relay_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    // Tests run from target/PROFILE/deps; the binary is one level up.
    for d in [dir, dir.parent().unwrap_or(dir)] {
        let candidate = d.join("rtet-relay");
        if candidate.is_file() {
            return candidate;
        }
    }
    PathBuf::from("rtet-relay")
}

fn log_file(name: &str, port: u16) -> Result<(PathBuf, std::fs::File)> {
    let path = std::env::temp_dir().join(format!("rtet-bench-{name}-{port}.log"));
    let file = std::fs::File::create(&path).with_context(|| format!("creating {path:?}"))?;
    Ok((path, file))
}

fn log_tail(path: &Path) -> String {
    log_tail_text(&std::fs::read_to_string(path).unwrap_or_default())
}

/// Starts `rtet-relay` on a free port with a generated key, the anonymous
/// channel `public` and the given extra flags (limits), and waits for
/// `/healthz`.
pub async fn start_relay(bin: &Path, extra: &[String]) -> Result<Running> {
    let key = random_key()?;
    let port = free_port()?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let (log, file) = log_file("relay", port)?;
    let mut child = Command::new(bin)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--api-key")
        .arg(&key)
        .arg("--anonymous-channel")
        .arg("public")
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    wait_healthy(&mut child, addr, &bin.display().to_string(), &log).await?;
    let pid = child.id();
    Ok(Running {
        child,
        target: Target {
            addr,
            dialect: Dialect::Rtet,
            api_key: Some(key),
            channel: "public".into(),
            pid,
        },
        log,
        dir: None,
        group: false,
    })
}

/// Waits until `child` answers `GET /healthz` at `addr` (polling), or fails
/// with its log if it exits or takes longer than [`START_TIMEOUT`].
async fn wait_healthy(child: &mut Child, addr: SocketAddr, name: &str, log: &Path) -> Result<()> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{name} exited with {status} before answering /healthz; its log ({}):\n{}",
                log.display(),
                log_tail(log)
            );
        }
        if healthz(addr).await {
            return Ok(());
        }
        if started.elapsed() > START_TIMEOUT {
            bail!("{name} did not answer /healthz within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts nginx with the nchan module (see [`crate::nchan::config`]) as
/// the child `nginx -p DIR -c nginx.conf -g 'daemon off;'` with `workers`
/// worker processes, in a fresh directory under the system's temp dir, and
/// waits for `/healthz`. Runs as root or as any user: nothing outside DIR
/// is written.
pub async fn start_nchan(
    nginx: &str,
    module: &Path,
    workers: usize,
    nofile: u64,
) -> Result<Running> {
    if !module.is_file() {
        bail!(
            "no nchan module at {} (Debian: apt-get install libnginx-mod-nchan)",
            module.display()
        );
    }
    let port = free_port()?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let dir = std::env::temp_dir().join(format!("rtet-bench-nchan-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let conf = crate::nchan::config(&crate::nchan::Setup {
        dir: &dir,
        addr,
        workers,
        nofile,
        module,
        root,
    });
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let log = dir.join("error.log");
    let stderr = std::fs::File::create(dir.join("stderr.log"))?;
    let child = Command::new(nginx)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg("nginx.conf")
        .arg("-e")
        .arg(&log)
        .arg("-g")
        .arg("daemon off;")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {nginx}"))?;
    let pid = child.id();
    let mut running = Running {
        child,
        target: Target {
            addr,
            dialect: Dialect::Nchan,
            api_key: None,
            channel: "public".into(),
            pid,
        },
        log: log.clone(),
        dir: Some(dir.clone()),
        group: true,
    };
    if let Err(e) = wait_healthy(&mut running.child, addr, nginx, &log).await {
        let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        return Err(e.context(format!("nginx's stderr: {}", stderr.trim())));
    }
    Ok(running)
}

/// True when `GET /healthz` answers 200.
async fn healthz(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<bool, std::io::Error>(
            buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.0 200"),
        )
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Ok(true))
    )
}

/// Starts the Node peer (`node SCRIPT 0`) and reads the port it prints.
pub async fn start_node(node: &str, script: &Path) -> Result<Running> {
    if !script.is_file() {
        bail!("no Node peer at {}", script.display());
    }
    let modules = script
        .parent()
        .unwrap_or(Path::new("."))
        .join("node_modules");
    if !modules.is_dir() {
        bail!(
            "{} is missing: run `npm ci --prefix {}` first",
            modules.display(),
            script.parent().unwrap_or(Path::new(".")).display()
        );
    }
    let (log, file) = log_file("node", 0)?;
    let mut child = Command::new(node)
        .arg(script)
        .arg("0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {node} {}", script.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
        .await
        .context("the Node peer printed no port in time")??
        .with_context(|| format!("the Node peer exited; its log:\n{}", log_tail(&log)))?;
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("unexpected first line from the Node peer: {line:?}"))?;
    // Keep reading stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let pid = child.id();
    Ok(Running {
        child,
        target: Target {
            addr,
            dialect: Dialect::NodeWs,
            api_key: None,
            channel: "public".into(),
            pid,
        },
        log,
        dir: None,
        group: false,
    })
}

/// A `redis-server` child on a free loopback port, with its data (the
/// append-only file, fsynced every second, as docs/scaling.md advises) in a
/// directory of its own; killed, and the directory removed, on drop.
pub struct RedisServer {
    /// The child; killed on drop.
    pub child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its working directory (data and log).
    pub dir: PathBuf,
}

impl RedisServer {
    /// The URL relays take with `--engine`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `redis-server` (the binary `bin`) on a free loopback port and waits
/// until it answers `PING`. Redis cannot listen on port 0 and say which port
/// it got, so a port that another process takes first means another pick.
pub async fn start_redis(bin: &str) -> Result<RedisServer> {
    for _ in 0..5 {
        let port = free_port()?;
        let dir =
            std::env::temp_dir().join(format!("rtet-bench-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = dir.join("redis.log");
        let mut child = Command::new(bin)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ])
            .arg("--dir")
            .arg(&dir)
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {bin} (Debian: apt-get install redis-server)"))?;
        let started = Instant::now();
        loop {
            if child.try_wait()?.is_some() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let _ = std::fs::remove_dir_all(&dir);
                if text.contains("already in use") {
                    break;
                }
                bail!(
                    "{bin} exited before answering PING: {}",
                    log_tail_text(&text)
                );
            }
            if redis_ping(port).await {
                return Ok(RedisServer { child, port, dir });
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("{bin} did not answer PING within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    bail!("no free port for redis-server after 5 attempts")
}

async fn redis_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await else {
        return false;
    };
    let mut reply = [0u8; 7];
    s.write_all(b"PING\r\n").await.is_ok()
        && tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut reply))
            .await
            .is_ok_and(|r| r.is_ok())
        && &reply == b"+PONG\r\n"
}

/// The last 15 lines of a log.
fn log_tail_text(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
