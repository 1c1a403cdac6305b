//! Before the demo starts anything: every TCP port it will listen on must
//! be free, and when one is not, the refusal names the program holding it.
//!
//! Why: a demo whose terminal was closed once left its services running
//! (they ignored SIGHUP then). The next `make demo` started a new moto;
//! the old services consumed its messages, and the new ones died on
//! "Address already in use 9101" with logs full of NUL bytes (the old
//! process kept writing at its offset into a truncated log). Binding each
//! port first turns that into one line naming the port and the process.
//!
//! The holder comes from procfs (the `procfs` crate): the listening
//! socket's inode in `/proc/net/tcp{,6}`, then the process whose
//! `/proc/<pid>/fd` links to `socket:[inode]`. Another user's processes
//! cannot be read without privileges; then the port alone is named.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// The first of `n` consecutive free TCP ports on 127.0.0.1 (below
/// 65,000, so the run fits), as found now: a port may be taken between
/// this check and its use, which a caller's bind then reports.
pub fn free_run(n: u16) -> u16 {
    loop {
        let first = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind an ephemeral port on 127.0.0.1");
        if first > 65_000 {
            continue;
        }
        if (first..first + n).all(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok()) {
            return first;
        }
    }
}

/// A port the demo needs that something else holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    pub port: u16,
    /// What the port is for in the demo (`describer metrics`, `api`).
    pub purpose: String,
    /// `pid 1234 (describer)`, when it could be found.
    pub holder: Option<String>,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "port {} ({}) is in use", self.port, self.purpose)?;
        match &self.holder {
            Some(h) => write!(f, " by {h}"),
            None => write!(f, " (holder not visible to this user)"),
        }
    }
}

/// Every `(port, purpose)` that cannot be bound on 127.0.0.1 right now,
/// with its holder. Ports are released again before this returns.
pub fn busy(ports: &[(u16, String)]) -> Vec<Busy> {
    ports
        .iter()
        .filter(|(port, _)| {
            // 0.0.0.0 too: the services' defaults listen there, and a
            // listener on either blocks the demo's bind.
            TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, *port))).is_err()
                || TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, *port))).is_err()
        })
        .map(|(port, purpose)| Busy {
            port: *port,
            purpose: purpose.clone(),
            holder: holder(*port),
        })
        .collect()
}

/// `pid N (command line)` of a process listening on `port`, if readable.
pub fn holder(port: u16) -> Option<String> {
    use procfs::process::FDTarget;
    let inodes: Vec<u64> = [procfs::net::tcp(), procfs::net::tcp6()]
        .into_iter()
        .filter_map(Result::ok)
        .flatten()
        .filter(|e| e.local_address.port() == port && e.state == procfs::net::TcpState::Listen)
        .map(|e| e.inode)
        .collect();
    if inodes.is_empty() {
        return None;
    }
    for p in procfs::process::all_processes().ok()?.flatten() {
        let Ok(fds) = p.fd() else { continue };
        let holds = fds
            .flatten()
            .any(|fd| matches!(fd.target, FDTarget::Socket(i) if inodes.contains(&i)));
        if holds {
            let cmd = p
                .cmdline()
                .ok()
                .filter(|c| !c.is_empty())
                .map(|c| c.join(" "))
                .or_else(|| p.stat().ok().map(|s| s.comm))
                .unwrap_or_else(|| "?".into());
            return Some(format!("pid {} ({cmd})", p.pid));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_port_is_named_with_its_holder() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let free = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let found = busy(&[(port, "api".into()), (free, "describer metrics".into())]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].port, port);
        let me = format!("pid {} (", std::process::id());
        assert!(
            found[0]
                .holder
                .as_deref()
                .is_some_and(|h| h.starts_with(&me)),
            "{found:?}"
        );
        assert!(
            found[0]
                .to_string()
                .starts_with(&format!("port {port} (api) is in use by pid "))
        );
    }
}
