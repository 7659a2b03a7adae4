//! Child processes that never outlive whoever started them: stopped on drop,
//! and killed by the kernel if the parent dies first.

use anyhow::Context;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ManagedChild {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ManagedChild {
    /// Starts `cmd` with its output in `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Self> {
        let out =
            File::create(log).with_context(|| format!("cannot create log {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // An error a process exits with stays at the end of its log, where
        // `check_alive` shows it, rather than above a backtrace of its own;
        // panics keep theirs (RUST_BACKTRACE).
        if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
            cmd.env("RUST_LIB_BACKTRACE", "0");
        }
        set_parent_death_signal(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// An error with the end of the log if the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!(
                "{} exited ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 30)
            );
        }
        Ok(())
    }

    pub fn signal(&self, signal: i32) {
        send_signal(self.child.id(), signal);
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        self.signal(libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < grace {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    // Lossy: a log cut inside a character must still show its end.
    let text = std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Sends `signal` (`libc::SIGINT`, ...) to process `pid`; a process
/// already gone is not an error.
#[allow(unsafe_code)]
pub fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) has no memory effects; a stale pid only yields ESRCH.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

#[allow(unsafe_code)]
fn set_parent_death_signal(cmd: &mut Command) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no
    // memory of the parent, as pre_exec requires.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A thread of its own that starts long-lived child processes for async
/// code, and lives as long as the `Launcher`. A child's parent-death signal
/// (set above) follows the *thread* that started it, not the process: a
/// child started from tokio's blocking pool is SIGKILLed once that pool
/// thread sits idle and exits, seconds later. Children started here live
/// until they are stopped or the launcher is dropped.
pub struct Launcher {
    jobs: Option<std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Launcher {
    /// Starts the thread, named `name`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let (jobs, queue) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                while let Ok(job) = queue.recv() {
                    job();
                }
            })
            .with_context(|| format!("cannot start thread {name}"))?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `job` (which may block, such as starting a server and waiting
    /// for its port) on the launcher's thread; returns its result.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .as_ref()
            .context("the launcher has stopped")?
            .send(Box::new(move || {
                let _ = reply.send(job());
            }))
            .map_err(|_| anyhow::anyhow!("the launcher's thread has exited"))?;
        answer
            .await
            .context("the launcher's thread dropped a job unanswered")
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        // The thread ends once the queue is closed and empty.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(log: &Path) -> anyhow::Result<ManagedChild> {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        ManagedChild::spawn("sleep", cmd, log)
    }

    /// `true` once `child` has exited, waiting at most 3 s.
    fn exits(child: &mut ManagedChild) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if child.check_alive().is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    #[tokio::test]
    async fn a_child_lives_as_long_as_its_launcher_not_the_thread_of_the_call() {
        let dir = std::env::temp_dir().join(format!("sluice-launcher-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Started on a thread that then exits (as a blocking-pool thread
        // does when idle), a child is killed with it.
        let log = dir.join("on-thread.log");
        let mut orphan = std::thread::spawn(move || sleeper(&log))
            .join()
            .unwrap()
            .unwrap();
        assert!(exits(&mut orphan));
        let launcher = Launcher::new("test-launcher").unwrap();
        let log = dir.join("launched.log");
        let mut child = launcher.run(move || sleeper(&log)).await.unwrap().unwrap();
        assert!(!exits(&mut child));
        child.kill();
        drop(launcher);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
