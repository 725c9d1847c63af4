//! ger-testkit: run a real `ger server` process on a free loopback port and drive it with the
//! real `kubectl` under a fresh `HOME` (the kubectl dispatcher caches per HOME).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether kubectl can be run. In CI (`CI=true`) a missing kubectl is a failure; elsewhere the
/// caller skips its test with a message.
pub fn kubectl_available() -> bool {
    let ok = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("kubectl is required in CI but was not found on PATH");
        }
        eprintln!("skipping: kubectl not found on PATH");
    }
    ok
}

/// A `ger server` child process with its own data directory and kubectl HOME.
pub struct GerServer {
    bin: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub home: PathBuf,
    pub server: String,
}

impl GerServer {
    /// Start `bin server` on a free port with a new data directory.
    pub fn start(bin: &Path) -> Self {
        Self::start_with(bin, &[])
    }

    /// Start `bin server <extra…>` (the same flags again on restart).
    pub fn start_with(bin: &Path, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("home");
        let mut s = GerServer {
            bin: bin.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            kubeconfig: data_dir.join("kubeconfig"),
            data_dir,
            home,
            dir,
            server: String::new(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log");
        let child = Command::new(&self.bin)
            .arg("server")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.listen_addr())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ger server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(text) = std::fs::read_to_string(&self.kubeconfig)
                && let Some(line) = text
                    .lines()
                    .find(|l| l.trim_start().starts_with("server: "))
            {
                self.server = line.trim_start().trim_start_matches("server: ").to_string();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("ger server did not write its kubeconfig: {}", self.log());
    }

    /// The port is kept across restarts so that a kubeconfig stays valid.
    fn listen_addr(&self) -> String {
        match self.server.strip_prefix("https://") {
            Some(addr) => addr.to_string(),
            None => "127.0.0.1:0".to_string(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `kill -9` the server.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start the server again on the same data directory and port.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Run kubectl until its output satisfies `done` (or panic after `secs` seconds);
    /// returns the last output.
    pub fn wait_until(&self, args: &[&str], secs: u64, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let out = self.kubectl(args);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            if out.status.success() && done(&text) {
                return text;
            }
            if Instant::now() > deadline {
                panic!(
                    "kubectl {args:?} never satisfied the condition; last output:\n{text}{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Run kubectl with this server's kubeconfig and a fresh-per-server HOME.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(args, None, &[])
    }

    /// Run kubectl with standard input and extra environment.
    pub fn kubectl_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .env("HOME", &self.home)
            .env("KUBECONFIG", &self.kubeconfig)
            .envs(env.iter().copied())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn kubectl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("kubectl output")
    }

    /// Run kubectl and return stdout, panicking with stderr on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run kubectl expecting failure; return stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A path inside this server's scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for GerServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A `ger agent` child process: one edge node of a [`GerServer`], with its own node token.
pub struct GerAgent {
    bin: PathBuf,
    child: Option<Child>,
    pub node: String,
    pub kubeconfig: PathBuf,
    pub data_dir: PathBuf,
    pub port: u16,
    log: PathBuf,
    extra: Vec<String>,
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl GerAgent {
    /// Make a token for `node` with `ger token create` and start `ger agent` with it
    /// (`extra` flags added).
    pub fn start(server: &GerServer, node: &str, extra: &[&str]) -> GerAgent {
        let kubeconfig = server.path(&format!("{node}.kubeconfig"));
        let out = Command::new(&server.bin)
            .args(["token", "create", "--node", node, "--data-dir"])
            .arg(&server.data_dir)
            .arg("--kubeconfig-out")
            .arg(&kubeconfig)
            .output()
            .expect("ger token create");
        assert!(
            out.status.success(),
            "ger token create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut agent = GerAgent {
            bin: server.bin.clone(),
            child: None,
            node: node.to_string(),
            kubeconfig,
            data_dir: server.path(&format!("agent-{node}")),
            port: free_port(),
            log: server.path(&format!("agent-{node}.log")),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        agent.spawn();
        agent
    }

    /// Start the agent (again, same port and data directory).
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("agent log");
        let child = Command::new(&self.bin)
            .arg("agent")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--node-name", &self.node])
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ger agent");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "ger agent {} did not listen: {}",
                self.node,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9` the agent (the node goes silent).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `curl -s -X METHOD` on the agent's local API: (HTTP status, body).
    pub fn curl(&self, method: &str, path: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "-X", method, "-w", "\n%{http_code}"])
            .arg(format!("127.0.0.1:{}{path}", self.port))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for GerAgent {
    fn drop(&mut self) {
        self.kill9();
    }
}
