//! Who gets in: connections counted per address (IPv6 by its /64), connections in their
//! set-up on a budget of their own (IPv6 by its /48, the oldest dropped past it), and the
//! accepting of the next connection under both.

use super::*;

/// Connections per peer address (one /64 network for IPv6), so that no one address can take
/// every slot of a server.
#[derive(Debug, Default)]
pub struct PeerCounts {
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its address's count; gives it back when dropped.
#[derive(Debug)]
pub struct PeerSlot {
    counts: Arc<PeerCounts>,
    ip: IpAddr,
}

/// The address `ip` is counted under: itself for IPv4 (and a mapped IPv4 address), its
/// network of `v6_prefix` bits for IPv6.
pub fn grouped(ip: IpAddr, v6_prefix: u32) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & (u128::MAX << (128 - v6_prefix))).into()),
        },
    }
}

/// The address a peer is counted under: itself for IPv4, its /64 network for IPv6 (one host
/// is usually given a whole /64).
pub(super) fn counted_as(ip: IpAddr) -> IpAddr {
    grouped(ip, 64)
}

impl PeerCounts {
    /// A place for one more connection from `ip`, unless it holds `max` already.
    pub fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<PeerSlot> {
        let ip = counted_as(ip);
        let mut by_ip = self.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = by_ip.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut by_ip = self.counts.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// The address a peer's set-ups are counted under: itself for IPv4, its /48 network for IPv6
/// (a /48 is what one site is commonly given: many /64s cost an attacker nothing there).
pub(super) fn pending_as(ip: IpAddr) -> IpAddr {
    grouped(ip, 48)
}

/// The connections in their set-up: a budget of their own, the oldest dropped past it.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    inner: Mutex<PendingInner>,
}

#[derive(Debug, Default)]
struct PendingInner {
    next: u64,
    /// Oldest first: each set-up's id and the token that drops it.
    order: VecDeque<(u64, CancellationToken)>,
    by_ip: HashMap<IpAddr, usize>,
}

/// One connection's place among the set-ups; gives it back when dropped.
#[derive(Debug)]
pub(crate) struct PendingSlot {
    pending: Arc<Pending>,
    id: u64,
    ip: IpAddr,
    /// Cancelled when a newer set-up needs the place.
    pub(crate) dropped: CancellationToken,
}

impl Pending {
    /// A place for one more set-up from `ip`, unless it holds `per_ip` already; past `max` in
    /// all, the oldest set-up is dropped to make room.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        max: usize,
        per_ip: usize,
    ) -> Option<PendingSlot> {
        let ip = pending_as(ip);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let n = inner.by_ip.entry(ip).or_default();
        if *n >= per_ip {
            return None;
        }
        *n += 1;
        inner.next += 1;
        let id = inner.next;
        let dropped = CancellationToken::new();
        inner.order.push_back((id, dropped.clone()));
        while inner.order.len() > max.max(1) {
            if let Some((_, oldest)) = inner.order.pop_front() {
                oldest.cancel();
            }
        }
        Some(PendingSlot {
            pending: self.clone(),
            id,
            ip,
            dropped,
        })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut inner = self.pending.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = inner.order.iter().position(|(id, _)| *id == self.id) {
            inner.order.remove(at);
        }
        if let Some(n) = inner.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                inner.by_ip.remove(&self.ip);
            }
        }
    }
}

/// Where new connections are let in, the same for RPC and HTTP servers: one address holds at
/// most `max_connections_per_ip` connections, and each new one takes a place among the
/// set-ups (see [`Pending`]) until it has sent its first request.
#[derive(Debug)]
pub(crate) struct Admission {
    counts: Arc<PeerCounts>,
    pending: Arc<Pending>,
    limits: ServerLimits,
}

impl Admission {
    pub(crate) fn new(limits: ServerLimits) -> Admission {
        Admission {
            counts: Arc::new(PeerCounts::default()),
            pending: Arc::new(Pending::default()),
            limits,
        }
    }

    /// A new connection from `ip`: its place among the address's connections and among the
    /// set-ups, or `None` when the address holds its limit of either.
    pub(crate) fn admit(&self, ip: IpAddr) -> Option<(PeerSlot, PendingSlot)> {
        let limits = &self.limits;
        let per_ip = limits
            .max_pending_per_ip
            .min(limits.max_connections_per_ip)
            .max(1);
        let slot = self.counts.take(ip, limits.max_connections_per_ip)?;
        let setting_up = self.pending.admit(ip, limits.max_pending, per_ip)?;
        Some((slot, setting_up))
    }
}

/// The next connection `listener` accepts, or `None` once `shutdown` fires. A failed accept
/// (usually out of file descriptors) is waited out a little rather than spun on.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(conn) => return Some(conn),
                Err(e) => {
                    warn!(cause = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}
