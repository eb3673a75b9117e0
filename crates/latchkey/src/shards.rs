//! The public listener as shards, one per serving core: each shard is a thread with a
//! runtime of its own and a socket of its own bound to the same address (`SO_REUSEPORT`), so
//! the kernel spreads connections over them and a connection lives on one thread from its
//! first byte to its last. No task migrates, no worker wakes another, and no request writes
//! state another core writes (per-request bounds are per shard; counters, the access log and
//! the throttle's vouching are per thread), so N cores serve about N times one.
//!
//! When the process may run on exactly as many CPUs as there are shards (a cpuset, `taskset`,
//! Kubernetes' static CPU manager), shard `i` is pinned to the `i`-th of them and its socket
//! asks for the connections whose packets that CPU handles (`SO_INCOMING_CPU`): with the
//! NIC's receive queues spread over the same CPUs, a connection's interrupts, its TCP
//! processing and its requests all stay on one core. Otherwise the threads float and the
//! kernel picks a shard per connection by hash.

use std::{net::SocketAddr, sync::Arc, thread::JoinHandle};

use latchkey_server::{App, Bounds, Limits, serve_shard};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::error::Error;

/// Connections waiting in each shard's accept queue.
const BACKLOG: i32 = 1024;

/// How many shards, and the CPUs to pin them to (one each) if the process owns exactly that
/// many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub shards: usize,
    pub pinned: Option<Vec<usize>>,
}

impl Plan {
    /// The CPU shard `i` is pinned to, if pinned.
    fn cpu(&self, i: usize) -> Option<usize> {
        self.pinned.as_ref().and_then(|cpus| cpus.get(i)).copied()
    }
}

/// `requested` shards (0: one per CPU the process may use, quota included), pinned when
/// `allowed` (the process's CPU affinity) holds exactly that many CPUs.
pub fn plan(requested: usize, allowed: &[usize], parallelism: usize) -> Plan {
    let shards = if requested == 0 {
        parallelism.max(1)
    } else {
        requested
    };
    let pinned = (allowed.len() == shards).then(|| allowed.to_vec());
    Plan { shards, pinned }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| set.is_set(c))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The shards' sockets, bound and listening; returns them with the address they share (the
/// port the first one got when `addr` asks for port 0).
pub fn bind(
    addr: SocketAddr,
    plan: &Plan,
) -> Result<(Vec<std::net::TcpListener>, SocketAddr), Error> {
    if addr.port() != 0 {
        // A socket with SO_REUSEPORT would silently join another process's group on this
        // port (a second Latchkey started by mistake, same user): ask first, as a plain
        // socket, whether the port is free, so that case fails as a busy port always did.
        probe(addr).map_err(|source| Error::Bind { addr, source })?;
    }
    let mut bound = addr;
    let mut listeners = Vec::with_capacity(plan.shards);
    for i in 0..plan.shards {
        let listener = shard_socket(bound, plan.cpu(i)).map_err(|source| Error::Bind {
            addr: bound,
            source,
        })?;
        if i == 0 {
            bound = listener.local_addr().map_err(|source| Error::Bind {
                addr: bound,
                source,
            })?;
        }
        listeners.push(listener);
    }
    Ok((listeners, bound))
}

/// Bind `addr` without SO_REUSEPORT and let go: fails if anything listens there.
fn probe(addr: SocketAddr) -> std::io::Result<()> {
    tcp_socket(addr, |_| Ok(())).map(drop)
}

/// A TCP socket for `addr` with SO_REUSEADDR (as std and tokio set it), `configure`d, bound.
fn tcp_socket(
    addr: SocketAddr,
    configure: impl FnOnce(&rustix::fd::OwnedFd) -> rustix::io::Result<()>,
) -> std::io::Result<rustix::fd::OwnedFd> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, sockopt};
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    configure(&fd)?;
    rustix::net::bind(&fd, &addr)?;
    Ok(fd)
}

/// One shard's socket: reusable port, the connections `cpu` handles if given, listening and
/// non-blocking (each shard registers it with its own runtime).
fn shard_socket(addr: SocketAddr, cpu: Option<usize>) -> std::io::Result<std::net::TcpListener> {
    use rustix::net::sockopt;
    let fd = tcp_socket(addr, |fd| {
        sockopt::set_socket_reuseport(fd, true)?;
        match cpu {
            Some(cpu) => {
                sockopt::set_socket_incoming_cpu(fd, u32::try_from(cpu).unwrap_or(u32::MAX))
            }
            None => Ok(()),
        }
    })?;
    rustix::net::listen(&fd, BACKLOG)?;
    let listener = std::net::TcpListener::from(fd);
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Start one thread per listener, each serving its shard until `shutdown`; join them to know
/// every connection has drained.
pub fn start(
    listeners: Vec<std::net::TcpListener>,
    plan: &Plan,
    tls: Option<TlsAcceptor>,
    app: Arc<App>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, Error> {
    let bounds = Bounds::new(&limits);
    let shards = listeners.len();
    let mut threads = Vec::with_capacity(shards);
    for (i, listener) in listeners.into_iter().enumerate() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let cpu = plan.cpu(i);
        let (tls, app, limits, bounds, shutdown) = (
            tls.clone(),
            app.clone(),
            limits.clone(),
            bounds.clone(),
            shutdown.clone(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("latchkey-srv-{i}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    pin(cpu);
                }
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => serve_shard(l, tls, app, limits, bounds, shards, shutdown).await,
                        Err(e) => tracing::error!(error = %e, shard = i, "token listener failed"),
                    }
                });
            })
            .map_err(Error::Runtime)?;
        threads.push(thread);
    }
    Ok(threads)
}

/// Pin the calling thread to `cpu`; a refusal (a cpuset changed under us) leaves it floating.
fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        tracing::warn!(cpu, error = %e, "could not pin a serving thread; it floats");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn one_shard_per_cpu_pinned_only_when_the_process_owns_exactly_those_cpus() {
        // taskset -c 2,5: two shards, pinned to 2 and 5.
        assert_eq!(
            plan(0, &[2, 5], 2),
            Plan {
                shards: 2,
                pinned: Some(vec![2, 5])
            }
        );
        // A CPU quota of 2 on a 16-CPU node: two shards, floating.
        let node: Vec<usize> = (0..16).collect();
        assert_eq!(
            plan(0, &node, 2),
            Plan {
                shards: 2,
                pinned: None
            }
        );
        // Asked for 3 on 2 owned CPUs: 3, floating; never 0 shards.
        assert_eq!(plan(3, &[0, 1], 2).pinned, None);
        assert_eq!(plan(0, &[], 0).shards, 1);
    }

    #[test]
    fn a_port_in_use_is_refused_even_by_another_group_of_shards() {
        let plan = plan(2, &[], 2);
        // Anything listening there.
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = other.local_addr().unwrap();
        assert!(matches!(bind(taken, &plan), Err(Error::Bind { .. })));
        // Another Latchkey's shards (SO_REUSEPORT, same user) would take it silently.
        let (_first, addr) = bind("127.0.0.1:0".parse().unwrap(), &plan).unwrap();
        assert!(matches!(bind(addr, &plan), Err(Error::Bind { .. })));
    }

    #[test]
    fn shards_share_one_port_and_each_accepts() {
        let plan = plan(3, &[], 3);
        let (listeners, addr) = bind("127.0.0.1:0".parse().unwrap(), &plan).unwrap();
        assert_eq!(listeners.len(), 3);
        assert_ne!(addr.port(), 0);
        for l in &listeners {
            assert_eq!(l.local_addr().ok(), Some(addr));
        }
        // Connections spread by hash: enough of them reach every shard.
        let conns: Vec<_> = (0..64)
            .filter_map(|_| std::net::TcpStream::connect(addr).ok())
            .collect();
        assert_eq!(conns.len(), 64);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut total = 0;
        for l in &listeners {
            let mut n = 0;
            while l.accept().is_ok() {
                n += 1;
            }
            assert!(n > 0, "a shard got no connection out of 64");
            total += n;
        }
        assert_eq!(total, 64);
    }
}
