//! A real S3-compatible server for tests: the moto server from PyPI, started on a free loopback
//! port and killed (by pid) when the handle is dropped.
//!
//! The binary comes from `MOTO_SERVER`, else `<repo>/.venv/bin/moto_server`, else `moto_server`
//! on `PATH`. Without one the test panics with install instructions: S3 tests never skip.
//!
//! moto keeps everything in memory: [`MotoServer::restart`] brings back an empty server on the
//! same port (with the buckets made through [`MotoServer::create_bucket`] created again, empty).
//! [`MotoServer::pause`] / [`MotoServer::resume`] freeze the process instead, keeping its data:
//! clients then see connections that hang until their timeouts.
//!
//! moto checks `If-None-Match` / `If-Match` and then stores the object without a lock, so two
//! racing conditional writes can both succeed under load (real S3 and MinIO are atomic). When
//! `moto_server` is a Python script, the fixture therefore runs its `main` through the same
//! interpreter with request handling serialized by one lock ([`SERIALIZED_MAIN`]): still the
//! real server and protocol, with S3's atomicity. Any other launcher runs as is.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use state_manager::config::StorageConfig;

const INSTALL: &str = "the S3 tests need the moto server: \
    `python3 -m venv .venv && .venv/bin/pip install 'moto[server]>=5.2.5'` in the repository, \
    or set MOTO_SERVER=/path/to/moto_server";

/// Runs `moto.server.main` with every request handled under one lock (see the module header).
const SERIALIZED_MAIN: &str = r#"
import sys, threading
from moto.moto_server import werkzeug_app
import moto.server
lock = threading.Lock()
handle = werkzeug_app.DomainDispatcherApplication.__call__
def serialized(self, environ, start_response):
    with lock:
        return handle(self, environ, start_response)
werkzeug_app.DomainDispatcherApplication.__call__ = serialized
sys.exit(moto.server.main(sys.argv[1:]))
"#;

/// A running moto server; killed on drop.
pub struct MotoServer {
    bin: PathBuf,
    /// The address it listens on: loopback, or every address for nodes in other network
    /// namespaces ([`MotoServer::start_on_every_address`]).
    host: &'static str,
    port: u16,
    child: Option<Child>,
    buckets: Mutex<Vec<String>>,
    log_dir: tempfile::TempDir,
}

impl MotoServer {
    /// Start a server on a free loopback port and wait until it answers HTTP.
    pub fn start() -> MotoServer {
        MotoServer::start_on("127.0.0.1")
    }

    /// Start a server listening on every address (0.0.0.0), for nodes in network namespaces of
    /// their own that reach it through their links; this process still uses 127.0.0.1.
    pub fn start_on_every_address() -> MotoServer {
        MotoServer::start_on("0.0.0.0")
    }

    fn start_on(host: &'static str) -> MotoServer {
        let mut server = MotoServer {
            bin: find_binary(),
            host,
            port: 0,
            child: None,
            buckets: Mutex::new(Vec::new()),
            log_dir: tempfile::tempdir().expect("temp dir for the moto log"),
        };
        let mut log = String::new();
        // A port found free can be taken before moto binds it: try another.
        for _ in 0..3 {
            server.port = free_port();
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(l) => {
                    log = l;
                    server.stop();
                }
            }
        }
        panic!("moto server {} did not start:\n{log}", server.bin.display());
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A storage section for this server with dummy credentials.
    pub fn storage_config(&self, bucket: &str, key_prefix: &str) -> StorageConfig {
        StorageConfig {
            bucket: Some(bucket.to_string()),
            endpoint: Some(self.endpoint()),
            access_key: Some("testing".into()),
            secret_key: Some("testing".into()),
            region: Some("us-east-1".into()),
            key_prefix: (!key_prefix.is_empty()).then(|| key_prefix.to_string()),
            ..StorageConfig::default()
        }
    }

    /// Create a bucket (a plain HTTP PUT; moto does not check signatures).
    pub fn create_bucket(&self, name: &str) {
        let req = format!(
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        let reply = http(self.addr(), &req).expect("create bucket on moto");
        assert!(
            reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"),
            "moto refused bucket {name:?}: {reply}"
        );
        let mut buckets = self.buckets.lock().unwrap();
        if !buckets.iter().any(|b| b == name) {
            buckets.push(name.to_string());
        }
    }

    /// Kill the server (its data is lost); the port stays reserved for [`MotoServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Start again on the same port, empty but for the buckets created before.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.spawn_and_wait() {
            panic!("moto server did not restart on port {}:\n{log}", self.port);
        }
        let buckets = self.buckets.lock().unwrap().clone();
        for b in buckets {
            self.create_bucket(&b);
        }
    }

    /// Freeze the server (SIGSTOP): it keeps its data but answers nothing.
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// Undo [`MotoServer::pause`].
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    fn signal(&self, sig: Signal) {
        let child = self.child.as_ref().expect("moto server is stopped");
        kill(Pid::from_raw(child.id() as i32), sig).expect("signal the moto server");
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Spawn on `self.port` and poll until it answers; `Err` holds the server's log.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log_path = self.log_dir.path().join("moto.log");
        let log = std::fs::File::create(&log_path).expect("create moto log");
        let mut cmd = match python_of(&self.bin) {
            Some(python) => {
                let mut c = Command::new(python);
                c.args(["-c", SERIALIZED_MAIN]);
                c
            }
            None => Command::new(&self.bin),
        };
        let child = cmd
            .args(["-H", self.host, "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL}", self.bin.display()));
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let probe = format!(
            "GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.port
        );
        while std::time::Instant::now() < deadline {
            if http(self.addr(), &probe).is_ok_and(|r| r.starts_with("HTTP/")) {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(std::fs::read_to_string(&log_path).unwrap_or_default())
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One request on a fresh connection; the whole reply as text.
fn http(addr: SocketAddr, request: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request.as_bytes())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    Ok(reply)
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().unwrap().port()
}

/// The interpreter of a Python launcher script (`#!/venv/bin/python3`,
/// `#!/usr/bin/env python3`), or `None` for anything else.
fn python_of(bin: &Path) -> Option<PathBuf> {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(bin).ok()?.read(&mut head).ok()?;
    let first = std::str::from_utf8(&head[..n]).ok()?.lines().next()?;
    let mut words = first.strip_prefix("#!")?.split_whitespace();
    let mut interp = words.next()?;
    if interp.ends_with("/env") {
        interp = words.next()?;
    }
    let name = Path::new(interp).file_name()?.to_str()?;
    name.starts_with("python").then(|| PathBuf::from(interp))
}

fn find_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "MOTO_SERVER={} does not exist; {INSTALL}",
            p.display()
        );
        return p;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("moto_server"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| panic!("moto_server not found; {INSTALL}"))
}
