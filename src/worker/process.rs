//! Starting and killing child processes so that none outlives the server.
//!
//! Every child (Bun workers and `bun build`) starts in its own process group, so one kill
//! reaches whatever it spawned, and with `PR_SET_PDEATHSIG = SIGKILL`, so it dies even when
//! the server is SIGKILLed. The death signal follows the thread that forked, not the
//! process, so all children are forked by one long-lived spawner thread.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::thread;

use crossbeam_channel::{bounded, Sender};

type SpawnRequest = (Command, Sender<io::Result<Child>>);

static SPAWNER: OnceLock<Sender<SpawnRequest>> = OnceLock::new();

/// Spawns `command` on the spawner thread with a process group and a parent-death signal.
pub fn spawn(mut command: Command) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the hook runs between fork and exec and only calls async-signal-safe
    // functions (setpgid, prctl, getppid, _exit).
    unsafe {
        command.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The server may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }

    let spawner = SPAWNER.get_or_init(start_spawner);
    let (reply_tx, reply_rx) = bounded(1);
    spawner
        .send((command, reply_tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}

fn start_spawner() -> Sender<SpawnRequest> {
    let (tx, rx) = bounded::<SpawnRequest>(64);
    thread::Builder::new()
        .name("spawner".into())
        .spawn(move || {
            // Lives as long as the process: the channel's sender is in a static.
            for (mut command, reply) in rx {
                let _ = reply.send(command.spawn());
            }
        })
        .expect("failed to start the spawner thread");
    tx
}

/// Sends SIGKILL to the process group led by `pid`: the child and what it spawned.
pub fn kill_group(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_leads_its_own_process_group() {
        let mut command = Command::new("sleep");
        command.arg("5");
        let mut child = spawn(command).unwrap();
        let pid = child.id() as libc::pid_t;
        // SAFETY: plain syscall.
        assert_eq!(unsafe { libc::getpgid(pid) }, pid);
        kill_group(child.id());
        let status = child.wait().unwrap();
        assert!(!status.success());
    }
}
