//! Local infrastructure without Docker: a tansu broker (Kafka API) and a PostgreSQL server
//! (`initdb` and `postgres` from PATH), both child processes of roar that die with it, even by
//! SIGKILL ([`tied`]). `roar dev` keeps both under `.roar/` and stops whatever an earlier run
//! left there ([`stop_leftovers`]); the end-to-end tests start throw-away ones on random ports.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub mod broker_pg;
pub mod tied;

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// Runs a Postgres tool, as the `postgres` user when we are root (initdb refuses root).
fn pg_tool(tool: &str) -> Result<Command> {
    let bin = on_path(tool).with_context(|| {
        format!("`{tool}` not found on PATH: install the PostgreSQL server binaries (e.g. apt-get install postgresql) or set ROAR_DATABASE__URL / DATABASE_URL to an existing server")
    })?;
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        Ok(c)
    } else {
        Ok(Command::new(bin))
    }
}

fn user_id(flag: &str) -> Result<u32> {
    let out = Command::new("id").args([flag, "postgres"]).output()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("the `postgres` user must exist to run PostgreSQL as root")
}

/// Where the cluster meant for `dir` can live. Run as root, PostgreSQL runs as `postgres`,
/// which must traverse every directory above the cluster: a checkout in root's home (mode 0700)
/// is out of its reach, and initdb failed there with "Permission denied". Then the cluster lives
/// under `/var/lib/roar-dev/<dir's path>` and `dir` becomes a link to it, so later starts, the
/// leftover check and the user still find it at `dir`. Returns the directory to start on
/// (`dir` itself whenever that works) and whether it was moved.
pub fn reachable_cluster_dir(dir: &Path) -> Result<(PathBuf, bool)> {
    let dir = std::path::absolute(dir)?;
    if !is_root() {
        return Ok((dir, false));
    }
    if dir.is_symlink() {
        // Moved by an earlier start.
        return Ok((std::fs::canonicalize(&dir)?, true));
    }
    let parent = dir
        .parent()
        .context("the cluster directory has no parent")?;
    std::fs::create_dir_all(parent)?;
    let reachable = Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(parent)
        .status()
        .is_ok_and(|s| s.success());
    if reachable {
        return Ok((dir, false));
    }
    if dir.join("data/PG_VERSION").exists() {
        bail!(
            "the postgres user cannot reach the cluster in {}: let it traverse the directories above, or move the checkout",
            dir.display()
        );
    }
    // What a failed initdb left (an empty cluster directory) goes; the cluster moves.
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let name = dir.to_string_lossy().trim_matches('/').replace('/', "-");
    let target = Path::new("/var/lib/roar-dev").join(name);
    std::fs::create_dir_all(&target)?;
    std::os::unix::fs::symlink(&target, &dir)
        .with_context(|| format!("linking {} to {}", dir.display(), target.display()))?;
    Ok((target, true))
}

/// A PostgreSQL server on a cluster directory: a child process, stopped (fast shutdown) when
/// dropped and signalled the same way if roar dies first.
pub struct Postgres {
    dir: PathBuf,
    pub port: u16,
    child: Child,
}

impl Postgres {
    /// Initialises `dir` if needed and starts the server on 127.0.0.1:`port` (user `roar`,
    /// trust auth on loopback only), waiting until it accepts connections.
    pub fn start(dir: &Path, port: u16) -> Result<Self> {
        let dir = std::path::absolute(dir)?;
        let data = dir.join("data");
        std::fs::create_dir_all(&dir)?;
        let root = is_root();
        if root {
            // The postgres user must reach and own the cluster directory.
            let _ = Command::new("chmod").arg("755").arg(&dir).status();
            let _ = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status();
        }
        if !data.join("PG_VERSION").exists() {
            let out = pg_tool("initdb")?
                .args(["-A", "trust", "-U", "roar", "-E", "UTF8", "--no-sync", "-D"])
                .arg(&data)
                .output()
                .context("running initdb")?;
            if !out.status.success() {
                bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let log_path = dir.join("postgres.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let bin = on_path("postgres").context(
            "`postgres` not found on PATH: install the PostgreSQL server binaries (e.g. apt-get install postgresql) or set ROAR_DATABASE__URL / DATABASE_URL to an existing server",
        )?;
        let mut cmd = Command::new(bin);
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "fsync=on", "-c", "max_connections=200"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if root {
            // initdb refuses root and so does the server: run it as `postgres`.
            cmd.uid(user_id("-u")?).gid(user_id("-g")?);
        }
        // SIGINT is PostgreSQL's fast shutdown: sessions end, a checkpoint is written.
        let child = tied::spawn_tied(cmd, libc::SIGINT).context("starting postgres")?;
        let mut pg = Self { dir, port, child };
        pg.wait_ready(&data, &log_path)?;
        Ok(pg)
    }

    /// Waits for `postmaster.pid` to say `ready` (what `pg_ctl -w` waits for).
    fn wait_ready(&mut self, data: &Path, log: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let lock = std::fs::read_to_string(data.join("postmaster.pid")).unwrap_or_default();
            let ours = lock.lines().next() == Some(self.child.id().to_string().as_str());
            if ours && lock.lines().nth(7).map(str::trim) == Some("ready") {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                bail!(
                    "postgres did not start on port {} ({status}): {}",
                    self.port,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "postgres did not become ready on port {} within 60 s",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `postgres://roar@127.0.0.1:port/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://roar@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates `db` unless it exists.
    pub async fn ensure_database(&self, db: &str) -> Result<()> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres")).await?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(db)
                .fetch_optional(&mut conn)
                .await?;
        if exists.is_none() {
            sqlx::query(&format!("CREATE DATABASE \"{}\"", db.replace('"', "")))
                .execute(&mut conn)
                .await?;
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        tied::stop(self.child.id(), libc::SIGINT, Duration::from_secs(60));
        let _ = self.child.wait();
    }
}

/// Stops what an earlier `roar dev` left in `dir` (a PostgreSQL server on `dir/pg/data`, a
/// broker recorded in `dir/broker/tansu.pid`), in case it outlived its parent: a roar from
/// before children were tied to it, or a server started by hand on the same cluster. Returns
/// what it stopped, for the user.
pub fn stop_leftovers(dir: &Path) -> Vec<String> {
    let mut stopped = Vec::new();
    let data = dir.join("pg/data");
    if let Some(pid) = postmaster(&data) {
        // Fast shutdown; the server removes its lock file on the way out.
        if tied::stop(pid, libc::SIGINT, Duration::from_secs(60)) {
            stopped.push(format!("PostgreSQL (pid {pid}) on {}", data.display()));
        }
    }
    let pid_file = dir.join("broker/tansu.pid");
    if let Some(pid) = tied::pid_file_process(&pid_file) {
        if tied::stop(pid, libc::SIGTERM, Duration::from_secs(5)) {
            stopped.push(format!("the tansu broker (pid {pid})"));
        }
    }
    stopped
}

/// The live postmaster of the cluster in `data`, if any: the lock file's pid, when that process
/// is a postgres whose lock file it is.
fn postmaster(data: &Path) -> Option<u32> {
    let lock = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let mut lines = lock.lines();
    let pid: u32 = lines.next()?.trim().parse().ok()?;
    let lock_dir = lines.next()?.trim();
    let same_dir = std::fs::canonicalize(lock_dir).ok()? == std::fs::canonicalize(data).ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let is_postgres = String::from_utf8_lossy(&cmdline).contains("postgres");
    (same_dir && is_postgres && tied::alive(pid)).then_some(pid)
}

/// The tansu release this project is tested with.
pub const TANSU_VERSION: &str = "0.6.0";

/// Which storage engines a tansu build has. One build serves everything: the in-memory engine
/// (`dynostore`) for the tests and the PostgreSQL engine for `roar dev`, whose broker keeps its
/// state in the PostgreSQL it already runs ([`broker_pg`]). The PostgreSQL engine adds a few
/// small crates to the build; the SQLite one (libsql) added a second, 12-minute build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TansuFlavor {
    /// `memory://`: the tests. Found in the shared build, or in a memory-only build installed
    /// before there was one.
    Memory,
    /// `memory://` and `postgres://`: the shared build, what `roar dev` needs.
    Durable,
}

impl TansuFlavor {
    pub fn features(self) -> &'static str {
        match self {
            Self::Memory => "dynostore",
            Self::Durable => "dynostore,postgres",
        }
    }

    /// `$CARGO_HOME/roar/tansu-<version>-<features>`: one install root per flavor, so the
    /// binary's capabilities are known from where it lives.
    pub fn root(self) -> Option<PathBuf> {
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        Some(cargo_home.join("roar").join(format!(
            "tansu-{TANSU_VERSION}-{}",
            self.features().replace(',', "-")
        )))
    }

    /// The command that installs a build able to run this flavor (what
    /// `scripts/install-tansu.sh` runs): always the shared build.
    pub fn install_command(self) -> String {
        let shared = Self::Durable;
        let root = shared
            .root()
            .map(|r| r.display().to_string())
            .unwrap_or_else(|| "<CARGO_HOME>/roar".into());
        format!(
            "cargo install tansu --locked --version {TANSU_VERSION} --features {} --root {root}",
            shared.features()
        )
    }
}

/// Where a tansu binary able to run `flavor` is: the configured path, else the project's
/// install roots (the shared build first).
pub fn find_tansu(configured: &str, flavor: TansuFlavor) -> Option<PathBuf> {
    if !configured.is_empty() {
        return Some(PathBuf::from(configured)).filter(|p| p.is_file());
    }
    let candidates: &[TansuFlavor] = match flavor {
        TansuFlavor::Memory => &[TansuFlavor::Durable, TansuFlavor::Memory],
        TansuFlavor::Durable => &[TansuFlavor::Durable],
    };
    candidates
        .iter()
        .filter_map(|f| f.root())
        .map(|r| r.join("bin/tansu"))
        .find(|p| p.is_file())
}

/// A tansu broker child process, killed when dropped.
pub struct Broker {
    child: std::process::Child,
    pub port: u16,
}

impl Broker {
    /// Starts tansu on 127.0.0.1:`port` with `storage` (`memory://tansu/`, or
    /// [`broker_pg::prepare`]'s `postgres://` URL), waiting until it accepts connections.
    pub fn start(bin: &Path, port: u16, storage: &str, log: &Path) -> Result<Self> {
        Self::start_advertising(bin, port, port, storage, log)
    }

    /// [`Broker::start`], telling clients (in metadata) to reach it on `advertised_port`:
    /// where a TLS terminator in front of the broker listens.
    pub fn start_advertising(
        bin: &Path,
        port: u16,
        advertised_port: u16,
        storage: &str,
        log: &Path,
    ) -> Result<Self> {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised_port}");
        let logf =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised,
        ])
        // From the environment rather than the command line: a `postgres://` URL may carry a
        // password, which the process list would show to every user of the machine.
        .env("STORAGE_ENGINE", storage)
        .env("RUST_LOG", "warn")
        // Nothing of the broker's lives in the caller's directory.
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf);
        let child = tied::spawn_tied(cmd, libc::SIGTERM)
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut broker = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(broker);
            }
            if let Some(status) = broker.child.try_wait()? {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                bail!(
                    "tansu exited ({status}) before listening: {}",
                    tail.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
                );
            }
            if Instant::now() > deadline {
                bail!("tansu did not listen on port {port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // SIGTERM first so tansu can close its storage cleanly, then make sure.
        tied::stop(self.child.id(), libc::SIGTERM, Duration::from_secs(5));
        let _ = self.child.wait();
    }
}
