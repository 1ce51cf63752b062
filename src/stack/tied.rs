//! Children that do not outlive their parent, and cleaning up after a parent that died anyway.
//!
//! A child is spawned with `PR_SET_PDEATHSIG`, so the kernel signals it when roar dies, even by
//! SIGKILL. Linux sends that signal when the *thread* that forked the child exits, not the
//! process, so every child is forked by one thread that lives as long as the process (tokio's
//! blocking pool retires idle threads, which would take their children with them).
//!
//! A pid file records each child with its start time (from `/proc`), so a later run can stop
//! exactly what an earlier one left behind and never a stranger that reused the pid.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

type Request = (Command, i32, mpsc::Sender<io::Result<Child>>);

fn spawner() -> Option<&'static mpsc::Sender<Request>> {
    static SPAWNER: OnceLock<Option<mpsc::Sender<Request>>> = OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Request>();
            std::thread::Builder::new()
                .name("roar-spawner".into())
                .spawn(move || {
                    for (mut cmd, signal, reply) in rx {
                        let _ = reply.send(spawn_here(&mut cmd, signal));
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// Spawns `cmd` so that it receives `signal` when this process dies.
pub fn spawn_tied(cmd: Command, signal: i32) -> io::Result<Child> {
    let Some(spawner) = spawner() else {
        // No thread to spare: tie the child to this thread instead (still dies with us when
        // this is the main thread, as it is in `roar dev`).
        let mut cmd = cmd;
        return spawn_here(&mut cmd, signal);
    };
    let (tx, rx) = mpsc::channel();
    spawner
        .send((cmd, signal, tx))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

fn spawn_here(cmd: &mut Command, signal: i32) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the hook runs in the forked child before exec and calls only prctl and getppid,
    // both async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the prctl: nobody would signal us then.
            if libc::getppid() != parent {
                return Err(io::Error::other("the parent exited during spawn"));
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// The start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`), or
/// `None` when no such process is alive (a zombie counts as gone).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Records `pid` (and its start time) in `path`.
pub fn write_pid_file(path: &Path, pid: u32) -> io::Result<()> {
    let start = start_time(pid).unwrap_or(0);
    std::fs::write(path, format!("{pid} {start}\n"))
}

/// Whether the process a pid file names is alive and is the one it recorded.
pub fn pid_file_process(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace();
    let pid: u32 = it.next()?.parse().ok()?;
    let start: u64 = it.next()?.parse().ok()?;
    (start_time(pid) == Some(start)).then_some(pid)
}

/// Whether `pid` is still alive (zombies are not).
pub fn alive(pid: u32) -> bool {
    start_time(pid).is_some()
}

/// Sends `first`, waits up to `grace` for the process to go, then SIGKILL. Returns whether it
/// is gone.
pub fn stop(pid: u32, first: i32, grace: Duration) -> bool {
    let signal = |s| {
        // SAFETY: kill has no memory effects; pid was checked to be ours just before.
        unsafe { libc::kill(pid as libc::pid_t, s) }
    };
    signal(first);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
