//! Forms the TCP ring from the one blob the rendezvous carries.
//!
//! Rank 0 listens on `advertise_host:0` and publishes `tcp:host:port`. Every other
//! rank binds its own ring listener, connects to rank 0 and says hello (magic, its
//! rank, the world size, its ring address); once all have, rank 0 sends everyone the
//! table of ring addresses. Then each rank connects to the next rank's listener and
//! accepts the previous rank on its own. Every wait polls the cancel flag and gives up
//! after [`BOOTSTRAP_TIMEOUT`], so a rank that never shows up fails the gang instead
//! of hanging it.

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::tcp_ring::{configure, read_full, RingError, TcpRing};
use super::Rendezvous;

/// How long ranks wait for each other to start (data loading included).
pub const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(300);
const MAGIC: &str = "expcluster-ring-v1";
/// Blob prefix that marks a TCP rendezvous (as opposed to an NCCL unique id).
pub const TCP_TAG: &[u8] = b"tcp:";

fn peer_err(what: impl std::fmt::Display) -> RingError {
    RingError::Peer(what.to_string())
}

/// `host:port`, bracketing an IPv6 literal.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn bind(host: &str) -> Result<(TcpListener, String), RingError> {
    let listener = TcpListener::bind((host.trim_matches(['[', ']']), 0))
        .map_err(|err| peer_err(format!("binding a listener on {host}: {err}")))?;
    let port = listener.local_addr().map_err(peer_err)?.port();
    listener.set_nonblocking(true).map_err(peer_err)?;
    Ok((listener, join_host_port(host, port)))
}

fn write_frame(stream: &TcpStream, payload: &[u8]) -> Result<(), RingError> {
    use std::io::Write;
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(payload);
    (&*stream)
        .write_all(&frame)
        .map_err(|err| peer_err(format!("bootstrap write: {err}")))
}

fn read_frame(stream: &TcpStream, cancel: &AtomicBool, peer: &str) -> Result<String, RingError> {
    let mut len = [0u8; 4];
    read_full(stream, &mut len, cancel, BOOTSTRAP_TIMEOUT, peer)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > 1 << 20 {
        return Err(peer_err(format!(
            "{peer} sent a {len}-byte bootstrap frame"
        )));
    }
    let mut payload = vec![0u8; len];
    read_full(stream, &mut payload, cancel, BOOTSTRAP_TIMEOUT, peer)?;
    String::from_utf8(payload).map_err(|_| peer_err(format!("{peer} sent non-UTF-8")))
}

/// Accepts one connection, polling `cancel` until `deadline`.
fn accept(
    listener: &TcpListener,
    cancel: &AtomicBool,
    deadline: Instant,
    waiting_for: &str,
) -> Result<TcpStream, RingError> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                configure(&stream)?;
                return Ok(stream);
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                if cancel.load(Ordering::SeqCst) {
                    return Err(RingError::Cancelled);
                }
                if Instant::now() > deadline {
                    return Err(peer_err(format!(
                        "{waiting_for} did not connect within {} s",
                        BOOTSTRAP_TIMEOUT.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err) => return Err(peer_err(format!("accepting {waiting_for}: {err}"))),
        }
    }
}

/// Connects to `address`, retrying until `deadline` (the peer may still be starting).
fn connect(address: &str, cancel: &AtomicBool, deadline: Instant) -> Result<TcpStream, RingError> {
    loop {
        let addrs: Vec<SocketAddr> = address
            .to_socket_addrs()
            .map(Iterator::collect)
            .unwrap_or_default();
        let mut last = format!("{address} does not resolve");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(stream) => {
                    configure(&stream)?;
                    return Ok(stream);
                }
                Err(err) => last = format!("connecting to {address}: {err}"),
            }
        }
        if cancel.load(Ordering::SeqCst) {
            return Err(RingError::Cancelled);
        }
        if Instant::now() > deadline {
            return Err(peer_err(last));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Builds this rank's ring (world ≥ 2).
pub fn connect_ring(
    rank: usize,
    world: usize,
    advertise_host: &str,
    rendezvous: &dyn Rendezvous,
    cancel: &AtomicBool,
) -> Result<TcpRing, RingError> {
    let deadline = Instant::now() + BOOTSTRAP_TIMEOUT;
    let (ring_listener, ring_address) = bind(advertise_host)?;
    let table = if rank == 0 {
        let (listener, address) = bind(advertise_host)?;
        let mut blob = TCP_TAG.to_vec();
        blob.extend_from_slice(address.as_bytes());
        rendezvous
            .publish(&blob)
            .map_err(|err| peer_err(format!("publishing the ring address: {err}")))?;
        gather_table(&listener, world, ring_address, cancel, deadline)?
    } else {
        let blob = rendezvous.fetch(cancel).map_err(|err| {
            if cancel.load(Ordering::SeqCst) {
                RingError::Cancelled
            } else {
                peer_err(format!("fetching rank 0's address: {err}"))
            }
        })?;
        let address = blob
            .strip_prefix(TCP_TAG)
            .and_then(|rest| std::str::from_utf8(rest).ok())
            .ok_or_else(|| {
                peer_err("the rendezvous blob is not a TCP address (is rank 0 on a GPU while this rank is on the CPU?)")
            })?;
        let stream = connect(address, cancel, deadline)?;
        write_frame(
            &stream,
            format!("{MAGIC} {rank} {world} {ring_address}").as_bytes(),
        )?;
        let table = read_frame(&stream, cancel, "rank 0")?;
        table.split(' ').map(str::to_owned).collect::<Vec<_>>()
    };
    if table.len() != world {
        return Err(peer_err(format!(
            "rank 0 sent {} ring addresses for a world of {world}",
            table.len()
        )));
    }
    let (next, prev) = ((rank + 1) % world, (rank + world - 1) % world);
    let to_next = connect(&table[next], cancel, deadline)?;
    write_frame(&to_next, rank.to_string().as_bytes())?;
    let from_prev = accept(&ring_listener, cancel, deadline, &format!("rank {prev}"))?;
    let hello = read_frame(&from_prev, cancel, &format!("rank {prev}"))?;
    if hello != prev.to_string() {
        return Err(peer_err(format!(
            "expected rank {prev} on the ring, rank {hello} connected"
        )));
    }
    Ok(TcpRing::new(rank, world, to_next, from_prev))
}

/// Rank 0: collects every rank's hello and answers with the table of ring addresses.
fn gather_table(
    listener: &TcpListener,
    world: usize,
    own_ring_address: String,
    cancel: &AtomicBool,
    deadline: Instant,
) -> Result<Vec<String>, RingError> {
    let mut table: Vec<Option<String>> = vec![None; world];
    table[0] = Some(own_ring_address);
    let mut peers = Vec::new();
    while peers.len() < world - 1 {
        let stream = accept(listener, cancel, deadline, "a rank")?;
        let hello = read_frame(&stream, cancel, "a joining rank")?;
        let parts: Vec<&str> = hello.split(' ').collect();
        let parsed = match parts[..] {
            [MAGIC, rank, size, address] => rank
                .parse::<usize>()
                .ok()
                .zip(size.parse::<usize>().ok())
                .map(|(rank, size)| (rank, size, address.to_owned())),
            _ => None,
        };
        let Some((peer_rank, peer_world, address)) = parsed else {
            return Err(peer_err(format!("unexpected bootstrap hello `{hello}`")));
        };
        if peer_world != world || peer_rank == 0 || peer_rank >= world {
            return Err(peer_err(format!(
                "rank {peer_rank} of {peer_world} joined a gang of {world}"
            )));
        }
        if table[peer_rank].replace(address).is_some() {
            return Err(peer_err(format!("rank {peer_rank} joined twice")));
        }
        peers.push(stream);
    }
    let table: Vec<String> = table.into_iter().flatten().collect();
    let joined = table.join(" ");
    for stream in &peers {
        write_frame(stream, joined.as_bytes())?;
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::MemoryRendezvous;

    #[test]
    fn ranks_form_a_ring_through_one_published_address() {
        for world in [2, 3, 5] {
            let rendezvous = MemoryRendezvous::default();
            let cancel = AtomicBool::new(false);
            let sums: Vec<Vec<f64>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..world)
                    .map(|rank| {
                        let (rendezvous, cancel) = (&rendezvous, &cancel);
                        scope.spawn(move || {
                            let mut ring =
                                connect_ring(rank, world, "127.0.0.1", rendezvous, cancel)
                                    .expect("ring forms");
                            let mut data = vec![rank as f64; 3];
                            ring.all_reduce_sum(&mut data, cancel).expect("all-reduce");
                            data
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("rank"))
                    .collect()
            });
            let total = (0..world).sum::<usize>() as f64;
            assert!(sums.iter().all(|sum| sum == &vec![total; 3]), "{sums:?}");
        }
    }

    #[test]
    fn a_missing_rank_is_given_up_on_when_cancelled() {
        let rendezvous = MemoryRendezvous::default();
        let cancel = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let waiting =
                scope.spawn(|| connect_ring(0, 2, "127.0.0.1", &rendezvous, &cancel).err());
            while rendezvous.published().is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
            cancel.store(true, Ordering::SeqCst);
            assert_eq!(waiting.join().expect("rank 0"), Some(RingError::Cancelled));
        });
    }

    #[test]
    fn ipv6_literals_are_bracketed() {
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(join_host_port("node-3", 80), "node-3:80");
    }
}
