//! A moto server on 127.0.0.1 for one test: installed by `scripts/ensure-moto`
//! when missing (never skipped), on a random loopback port, killed on drop.
//! Each is a process of its own, forked by a shared factory that has moto
//! loaded already (`scripts/moto_zygote.py`, its socket in a directory only
//! this user can enter, started by the first test that
//! needs it, gone after ten idle minutes); `PAYMIG_TEST_FRESH_MOTO=1` starts
//! a fresh `moto_server` per test instead.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The moto_server executable, installing it on first use.
fn moto_server() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/ensure-moto");
        let out = Command::new("bash").arg(&script).stderr(Stdio::inherit()).output().expect("run scripts/ensure-moto");
        assert!(out.status.success(), "scripts/ensure-moto failed");
        PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
    })
}

/// One emulator process: started by the harness, or forked by the factory
/// (then not the harness's child: killed by pid).
enum Server {
    Spawned(Child),
    Forked(u32),
}

impl Server {
    fn id(&self) -> u32 {
        match self {
            Server::Spawned(c) => c.id(),
            Server::Forked(pid) => *pid,
        }
    }

    fn kill(&mut self) {
        match self {
            Server::Spawned(c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            // SAFETY: kill(2) on a pid the factory handed to this test.
            Server::Forked(pid) => unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            },
        }
    }
}

/// The python of the emulator's virtualenv.
fn venv_python() -> PathBuf {
    let _ = moto_server(); // installed
    std::env::var_os("PAYMIG_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/paymig/venv"))
        .join("bin/python")
}

/// A server forked by the factory (started here when none answers), or
/// `None` when the factory cannot be had.
fn forked() -> Option<(Server, String)> {
    use std::hash::{Hash, Hasher};
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    if std::env::var_os("PAYMIG_TEST_FRESH_MOTO").is_some_and(|v| v == "1") {
        return None;
    }
    let scripts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let zygote = scripts.join("moto_zygote.py");
    // One factory per version of the scripts it runs (and per user).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in ["moto_zygote.py", "moto_catalogue.py", "ensure-moto"] {
        std::fs::read(scripts.join(f)).ok()?.hash(&mut h);
    }
    // In a directory only this user can enter: no other user of the machine
    // can put a socket (or a server of theirs) where the tests look.
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("paymig-moto-{uid}"));
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        let meta = std::fs::symlink_metadata(&dir).ok()?;
        if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
            return None;
        }
    }
    let socket = dir.join(format!("{:016x}.sock", h.finish()));
    // A unix socket's path holds at most 107 bytes (and `.new` is added
    // while the factory binds): a longer TMPDIR means fresh servers.
    if socket.as_os_str().len() > 100 {
        return None;
    }
    let ask = || -> Option<(Server, String)> {
        let mut s = UnixStream::connect(&socket).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        // The server ends by itself once this process is gone.
        std::io::Write::write_all(&mut s, format!("{}\n", std::process::id()).as_bytes()).ok()?;
        let mut line = String::new();
        s.read_to_string(&mut line).ok()?;
        let (port, pid) = line.trim().split_once(' ')?;
        Some((Server::Forked(pid.parse().ok()?), format!("http://127.0.0.1:{port}")))
    };
    if let Some(found) = ask() {
        return Some(found);
    }
    // One test starts the factory; the others wait for it.
    let lock = std::fs::File::create(socket.with_extension("lock")).ok()?;
    // SAFETY: flock(2) on a descriptor this function owns; released on drop.
    unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    if let Some(found) = ask() {
        return Some(found);
    }
    let _ = std::fs::remove_file(&socket);
    // Detached (setsid -f): it outlives this test and serves the next ones.
    let log = std::fs::File::create(socket.with_extension("log")).ok()?;
    let started = Command::new("setsid")
        .arg("-f")
        .arg(venv_python())
        .arg(&zygote)
        .arg(&socket)
        .arg("600")
        .env("MOTO_ALLOW_NONEXISTENT_REGION", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .ok()?;
    if !started.success() {
        return None;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(found) = ask() {
            return Some(found);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// A running moto server, or (for the benchmark) several: one per group of
/// services, behind a routing proxy at `endpoint`.
pub struct Moto {
    child: Server,
    pub endpoint: String,
    /// Services served by their own process: (SigV4 service name, endpoint).
    pub routes: Vec<(String, String)>,
    /// The process serving every service not in `routes`.
    pub direct: String,
    shards: Vec<Server>,
    router: Option<super::proxy::Proxy>,
}

/// moto exactly as released, without the engine catalogue
/// (`scripts/moto_catalogue.py`): what another team's emulator would be.
fn plain_moto_server() -> PathBuf {
    venv_python().with_file_name("moto_server")
}

/// One moto server with the catalogue: forked by the factory, or started.
fn spawn_server() -> (Server, String) {
    forked().unwrap_or_else(|| {
        let (child, endpoint) = spawn(moto_server());
        (Server::Spawned(child), endpoint)
    })
}

fn spawn(server: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(server)
        .args(["-H", "127.0.0.1", "-p", "0"])
        .env("MOTO_ALLOW_NONEXISTENT_REGION", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start moto_server");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut reader = BufReader::new(stderr);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut endpoint = None;
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(i) = line.find("http://127.0.0.1:") {
            endpoint = Some(line[i..].split_whitespace().next().unwrap_or("").trim_end_matches('/').to_owned());
            break;
        }
    }
    let endpoint = endpoint.expect("moto_server did not report its address");
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while reader.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });
    (child, endpoint)
}

impl Moto {
    pub fn start() -> Moto {
        let (child, endpoint) = spawn_server();
        Moto { child, direct: endpoint.clone(), endpoint, routes: Vec::new(), shards: Vec::new(), router: None }
    }

    /// moto as released, without the engine catalogue paymig's tests add.
    pub fn start_plain() -> Moto {
        let (child, endpoint) = spawn(&plain_moto_server());
        let child = Server::Spawned(child);
        Moto { child, direct: endpoint.clone(), endpoint, routes: Vec::new(), shards: Vec::new(), router: None }
    }

    /// One moto process per listed service, one more for every other
    /// service, and a routing proxy in front (no delay) at `endpoint`. Each
    /// listed service must not reach into another service's state inside
    /// moto (SSM and DynamoDB do not, for what paymig calls).
    pub fn start_sharded(services: &[&str]) -> Moto {
        let (child, direct) = spawn_server();
        let (shards, routes): (Vec<Server>, Vec<(String, String)>) = services
            .iter()
            .map(|s| {
                let (c, e) = spawn_server();
                (c, ((*s).to_owned(), e))
            })
            .unzip();
        let router = super::proxy::Proxy::start(super::proxy::ProxyConfig {
            routes: routes.clone(),
            ..super::proxy::ProxyConfig::new(&direct)
        });
        Moto { child, endpoint: router.endpoint.clone(), direct, routes, shards, router: Some(router) }
    }

    /// CPU time (user + system) each emulator process has used so far:
    /// ("other", …) for the main process, then one per routed service.
    pub fn cpu(&self) -> Vec<(String, Duration)> {
        let mut out = vec![("other".to_owned(), process_cpu(self.child.id()))];
        for ((service, _), c) in self.routes.iter().zip(&self.shards) {
            out.push((service.clone(), process_cpu(c.id())));
        }
        out
    }
}

/// utime + stime of a process, from /proc (zero where /proc is missing).
fn process_cpu(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return Duration::ZERO };
    // Fields after the command name (which may hold spaces) close with ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_secs_f64(ticks as f64 / hz as f64)
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.router.take();
        for c in self.shards.iter_mut().chain(std::iter::once(&mut self.child)) {
            c.kill();
        }
    }
}
