//! A `redis-server` of a test's own, on a free port (Debian's package),
//! for the tests of nodes joined through Redis (tests/cluster.rs,
//! tests/cluster_resume.rs).

#![allow(dead_code)] // Each test file uses a part.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{eventually, require_program, Rookery, Tool};

/// A `redis-server` of our own on a port of our own.
pub struct Redis {
    pub port: u16,
    pub password: Option<&'static str>,
    /// More `redis-server` arguments.
    pub extra: Vec<&'static str>,
    child: Option<Child>,
}

impl Redis {
    /// Starts one, or `None` (with a message) when redis-server is absent
    /// and not required.
    pub fn start(password: Option<&'static str>) -> Option<Redis> {
        if !require_program(Tool::Redis, "redis-server", &["--version"]) {
            return None;
        }
        let mut redis = Redis {
            port: free_port(),
            password,
            extra: Vec::new(),
            child: None,
        };
        redis.spawn();
        Some(redis)
    }

    pub fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(pw) = self.password {
            cmd.args(["--requirepass", pw]);
        }
        cmd.args(&self.extra);
        self.child = Some(cmd.spawn().expect("spawn redis-server"));
        let port = self.port;
        assert!(
            eventually(Duration::from_secs(10), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "redis-server did not start"
        );
    }

    /// Sends `signal` (SIGSTOP, SIGCONT) to it.
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on our own child with a valid signal number.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    /// SIGKILL, and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        match self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        self.kill();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Runs one command on Redis at `port` and returns its raw reply.
pub fn command(port: u16, args: &[&str]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(cmd.as_bytes()).expect("write");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).expect("reply");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The value of one metric line (`name value`).
pub fn metric(node: &Rookery, name: &str) -> u64 {
    let mut s = TcpStream::connect(node.addr).expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

pub fn wait_connected(node: &Rookery, within: Duration) {
    assert!(
        eventually(within, || metric(node, "rookery_redis_connected") == 1),
        "not connected to Redis in {within:?}"
    );
}
