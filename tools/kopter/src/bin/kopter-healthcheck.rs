//! `kopter-healthcheck [--path /readyz]`: the container health check.
//!
//! Exits 0 when the process in this container answers `GET {path}` (default
//! `/healthz`) with 200 on its telemetry port: the port of
//! `KOPTER_TELEMETRY__LISTEN` when set, else the first of the default ports
//! (9100 all-in-one, 9101–9105 the services, 9106 the api) that answers. No shell or curl
//! is needed in the image. Exit 1 otherwise, with the reason on stderr.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

fn get(port: u16, path: &str) -> Result<u16, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{addr}: {e}"))?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)
        .map_err(|e| format!("{addr}: {e}"))?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{addr}: not an HTTP response"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.as_slice() {
        [] => "/healthz".to_owned(),
        [flag, p] if flag == "--path" && p.starts_with('/') => p.clone(),
        _ => {
            eprintln!("usage: kopter-healthcheck [--path /healthz|/readyz]");
            return ExitCode::from(2);
        }
    };
    let ports: Vec<u16> = match std::env::var("KOPTER_TELEMETRY__LISTEN") {
        Ok(listen) => match listen.parse::<SocketAddr>() {
            Ok(a) => vec![a.port()],
            Err(e) => {
                eprintln!("KOPTER_TELEMETRY__LISTEN={listen:?}: {e}");
                return ExitCode::from(2);
            }
        },
        Err(_) => (9100..=9106).collect(),
    };
    let mut problems = Vec::new();
    for port in ports {
        match get(port, &path) {
            Ok(200) => return ExitCode::SUCCESS,
            Ok(code) => problems.push(format!("port {port}: {path} answered {code}")),
            Err(e) => problems.push(e),
        }
    }
    eprintln!("unhealthy: {}", problems.join("; "));
    ExitCode::FAILURE
}
