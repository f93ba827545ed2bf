//! A real `redis-server` (Debian's) for tests: its own temporary directory,
//! a free loopback port, no persistence, stopped when dropped.
//!
//! Redis cannot listen on TCP port 0 and report the port, so a free port is
//! found by binding 127.0.0.1:0 and releasing it; when another process takes
//! it in between, the server exits with "Address already in use" and the
//! next free port is tried. Readiness is the server's own "Ready to accept
//! connections" log line, never a sleep.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Debian's server binary (package `redis-server`, in `scripts/setup.sh`).
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// Ports tried before giving up (each one was free a moment before).
const PORT_ATTEMPTS: usize = 20;

/// A running (or stopped, between [`Redis::stop`] and [`Redis::start`]) redis-server.
pub struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Redis {
    /// Starts a server on a free loopback port.
    pub fn start_new() -> Redis {
        let dir = tempfile::tempdir().expect("temp dir for redis");
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match spawn(port, dir.path()) {
                Ok(child) => {
                    return Redis {
                        port,
                        dir,
                        child: Some(child),
                    }
                }
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("redis-server did not start: {log}"),
            }
        }
        panic!("no free port for redis-server after {PORT_ATTEMPTS} attempts");
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether it is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL: no shutdown save either way) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty (it never persists anything).
    /// Panics if the port was taken meanwhile.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        match spawn(self.port, self.dir.path()) {
            Ok(child) => self.child = Some(child),
            Err(log) => panic!("redis-server did not restart on port {}: {log}", self.port),
        }
    }

    /// Freezes the server (SIGSTOP) or thaws it (SIGCONT): a Redis that hangs
    /// with its connections open, then goes on where it was.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().expect("redis-server runs").id();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Runs one command (inline protocol, arguments without spaces) and returns the raw reply.
    pub fn command(&self, args: &[&str]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut line = args.join(" ");
        line.push_str("\r\n");
        s.write_all(line.as_bytes()).unwrap();
        let mut reply = String::new();
        let mut r = BufReader::new(s);
        r.read_line(&mut reply).expect("redis reply");
        reply.trim_end().to_owned()
    }

    /// Closes every pub/sub connection (`CLIENT KILL TYPE pubsub`); the reply is how many.
    pub fn client_kill_pubsub(&self) -> u64 {
        let reply = self.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        reply
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("CLIENT KILL answered {reply}"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts redis-server on `port` with `dir` as its working directory and
/// waits for its ready line; on failure returns what it logged.
fn spawn(port: u16, dir: &std::path::Path) -> Result<Child, String> {
    let mut child = Command::new(REDIS_SERVER)
        .args(["--bind", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--protected-mode", "no", "--loglevel", "notice"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{REDIS_SERVER} could not be run: {e}"));
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut log = String::new();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                let ready = line.contains("Ready to accept connections");
                log.push_str(&line);
                log.push('\n');
                if ready {
                    break;
                }
            }
            _ => {
                let _ = child.wait();
                if let Some(mut err) = child.stderr.take() {
                    let _ = err.read_to_string(&mut log);
                }
                return Err(log);
            }
        }
    }
    // Keep reading its log so it never blocks on a full pipe.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    Ok(child)
}
