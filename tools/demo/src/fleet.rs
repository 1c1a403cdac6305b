//! Running the five services: as five processes (the service binaries), as
//! one process (the `kopter` all-in-one binary), or inside this process
//! (the same code the all-in-one runs; the integration test uses it).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kopter_runtime::{Config, ServiceContext};
use kopter_schema::Service;
use tokio_util::sync::CancellationToken;

use crate::config_keys::env_vars;

/// How the services run.
#[derive(Debug, Clone)]
pub enum Mode {
    /// One process per service binary found in the directory.
    Separate { bin_dir: PathBuf },
    /// The `kopter` binary found in the directory, every service in it.
    AllInOne { bin_dir: PathBuf },
    /// Every service and the api inside this process.
    InProcess,
}

impl Mode {
    pub fn describe(&self) -> &'static str {
        match self {
            Mode::Separate { .. } => "six processes (five services and the api)",
            Mode::AllInOne { .. } => "one process (kopter)",
            Mode::InProcess => "inside the demo process",
        }
    }
}

/// One running process.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub metrics: SocketAddr,
    pub log: PathBuf,
    /// What started it, to start it again.
    bin: PathBuf,
    vars: Vec<(String, String)>,
}

impl Proc {
    /// SIGKILL (no drain: what a crash or an OOM kill does), reap, and
    /// start the same program again, appending to its log.
    pub fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL);
        }
        self.child.wait()?;
        self.child = spawn(&self.bin, &[], self.vars.clone(), &self.log, true)?;
        Ok(())
    }
}

/// A process still running when its `Proc` is dropped — a test that
/// panicked before stopping its fleet, an early `?` — is SIGKILLed and
/// reaped, so no service outlives its owner (and keeps its ports, or
/// works on a moto the next run reuses).
impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The running services.
pub enum Fleet {
    Procs(Vec<Proc>),
    InProcess {
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
        metrics: SocketAddr,
    },
}

fn spawn(
    bin: &Path,
    args: &[&str],
    vars: Vec<(String, String)>,
    log: &Path,
    append: bool,
) -> anyhow::Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(log)
        .map_err(|e| anyhow::anyhow!("open log {}: {e}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env_clear()
        .envs(
            std::env::vars()
                .filter(|(k, _)| !k.starts_with("KOPTER_") && !k.starts_with("AWS_"))
                .collect::<Vec<_>>(),
        )
        // moto takes any credentials; real ones must never reach it.
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("KOPTER_CONFIG", "/nonexistent/kopter.toml")
        .envs(vars)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Own process group: a Ctrl-C in the terminal reaches the demo,
        // which drains the services itself (SIGTERM) in order.
        .process_group(0);
    cmd.spawn()
        .map_err(|e| anyhow::anyhow!("start {}: {e} (has `make build` run?)", bin.display()))
}

/// Starts the services; `first_port` is the describer's metrics port (the
/// others follow in `Service::ALL` order); the all-in-one listens on
/// `first_port - 1`.
pub async fn start(
    mode: &Mode,
    config: &Config,
    first_port: u16,
    run_dir: &Path,
) -> anyhow::Result<Fleet> {
    std::fs::create_dir_all(run_dir)?;
    match mode {
        Mode::Separate { bin_dir } => {
            let mut procs = Vec::new();
            for (i, s) in Service::ALL.iter().enumerate() {
                let addr = SocketAddr::from(([127, 0, 0, 1], first_port + i as u16));
                let mut c = config.clone();
                c.telemetry.listen = addr;
                let log = run_dir.join(format!("{}.log", s.name()));
                let (bin, vars) = (bin_dir.join(s.name()), env_vars(&c, Some(*s)));
                let child = spawn(&bin, &[], vars.clone(), &log, false);
                let child = match child {
                    Ok(c) => c,
                    Err(e) => {
                        stop_procs(&mut procs, Duration::from_secs(10));
                        return Err(e);
                    }
                };
                procs.push(Proc {
                    name: s.name().to_owned(),
                    child,
                    metrics: addr,
                    log,
                    bin,
                    vars,
                });
            }
            // The api: not a worker; telemetry on the port after the five.
            let addr = SocketAddr::from(([127, 0, 0, 1], first_port + Service::ALL.len() as u16));
            let mut c = config.clone();
            c.telemetry.listen = addr;
            let log = run_dir.join("api.log");
            let (bin, vars) = (bin_dir.join("api"), env_vars(&c, None));
            match spawn(&bin, &[], vars.clone(), &log, false) {
                Ok(child) => procs.push(Proc {
                    name: "api".into(),
                    child,
                    metrics: addr,
                    log,
                    bin,
                    vars,
                }),
                Err(e) => {
                    stop_procs(&mut procs, Duration::from_secs(10));
                    return Err(e);
                }
            }
            Ok(Fleet::Procs(procs))
        }
        Mode::AllInOne { bin_dir } => {
            let addr = SocketAddr::from(([127, 0, 0, 1], first_port - 1));
            let mut c = config.clone();
            c.telemetry.listen = addr;
            let log = run_dir.join("kopter.log");
            let (bin, vars) = (bin_dir.join("kopter"), env_vars(&c, None));
            let child = spawn(&bin, &[], vars.clone(), &log, false)?;
            Ok(Fleet::Procs(vec![Proc {
                name: "kopter".into(),
                child,
                metrics: addr,
                log,
                bin,
                vars,
            }]))
        }
        Mode::InProcess => {
            let addr = SocketAddr::from(([127, 0, 0, 1], first_port - 1));
            let mut c = config.clone();
            c.telemetry.listen = addr;
            let ctx = ServiceContext::new(c, None).await;
            // The api (and its console) too, as the all-in-one runs it by
            // default: the console's browser test signs in through it.
            let api = api::process::Api::from_config(&ctx.config, &ctx.aws)?;
            let shutdown = CancellationToken::new();
            let token = shutdown.clone();
            let task = tokio::spawn(async move {
                kopter::run_with_api(&ctx, &Service::ALL, Some(api), token).await
            });
            Ok(Fleet::InProcess {
                shutdown,
                task,
                metrics: addr,
            })
        }
    }
}

/// `GET /readyz` answered 200.
async fn ready(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(Ok(mut s)) =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    let req = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    buf.starts_with(b"HTTP/1.1 200")
}

impl Fleet {
    /// `(name, metrics address)` of each process (or of this one).
    pub fn endpoints(&self) -> Vec<(String, SocketAddr)> {
        match self {
            Fleet::Procs(p) => p.iter().map(|p| (p.name.clone(), p.metrics)).collect(),
            Fleet::InProcess { metrics, .. } => vec![("kopter (in process)".into(), *metrics)],
        }
    }

    /// Waits until every `/readyz` answers 200; fails early, naming the log,
    /// if a process exits.
    pub async fn wait_ready(
        &mut self,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut pending = self.endpoints();
        while !pending.is_empty() {
            self.check_alive()?;
            if cancel.is_cancelled() {
                anyhow::bail!("interrupted");
            }
            let mut still = Vec::new();
            for (name, addr) in pending {
                if !ready(addr).await {
                    still.push((name, addr));
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let names: Vec<_> = pending.iter().map(|(n, a)| format!("{n} ({a})")).collect();
                anyhow::bail!("not ready after {timeout:?}: {}", names.join(", "));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(())
    }

    /// An error naming the process (and its log) that has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self {
            Fleet::Procs(procs) => {
                for p in procs.iter_mut() {
                    if let Some(status) = p.child.try_wait()? {
                        anyhow::bail!("{} exited ({status}); see {}", p.name, p.log.display());
                    }
                }
                Ok(())
            }
            Fleet::InProcess { task, .. } => {
                if task.is_finished() {
                    anyhow::bail!("the in-process services stopped");
                }
                Ok(())
            }
        }
    }

    /// SIGTERM (or cancel) and wait for the drain; returns each process's
    /// name and exit status (`None`: killed after `grace`).
    pub async fn stop(self, grace: Duration) -> anyhow::Result<Vec<(String, Option<ExitStatus>)>> {
        match self {
            Fleet::Procs(mut procs) => {
                Ok(tokio::task::spawn_blocking(move || stop_procs(&mut procs, grace)).await?)
            }
            Fleet::InProcess { shutdown, task, .. } => {
                shutdown.cancel();
                tokio::time::timeout(grace, task).await.map_err(|_| {
                    anyhow::anyhow!("in-process services did not stop in {grace:?}")
                })???;
                Ok(vec![])
            }
        }
    }
}

/// SIGTERM each process and wait up to `grace` for it to exit; returns
/// each one's name and exit status (`None`: killed after `grace`).
pub fn stop_procs(procs: &mut [Proc], grace: Duration) -> Vec<(String, Option<ExitStatus>)> {
    for p in procs.iter() {
        // SAFETY: kill(2) with a pid we spawned and still own (not reaped).
        unsafe {
            libc::kill(p.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    let mut out = Vec::new();
    for p in procs.iter_mut() {
        let status = loop {
            match p.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                _ => {
                    let _ = p.child.kill();
                    let _ = p.child.wait();
                    break None;
                }
            }
        };
        out.push((p.name.clone(), status));
    }
    out
}
