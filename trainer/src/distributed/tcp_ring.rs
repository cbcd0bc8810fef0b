//! Ring all-reduce over TCP between CPU ranks: a reduce-scatter then an all-gather,
//! each `world - 1` steps in which every rank sends one chunk to the next rank while
//! receiving one from the previous rank. Each rank moves `2 (world - 1) / world` of the
//! buffer, whatever the world size.
//!
//! Invariants: after an all-reduce every rank holds bit-identical values (each chunk
//! is summed once, in one order, then copied around the ring), which is what keeps
//! the ranks' optimizer steps identical. A peer that exits closes its sockets, so a
//! read sees EOF (or a reset) at once; a peer that hangs is given up after
//! [`PEER_TIMEOUT`] without progress; the cancel flag is polled while waiting.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a rank waits for a peer that sends nothing before giving up on the gang.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a blocked read wakes up to look at the cancel flag.
const POLL: Duration = Duration::from_millis(200);

/// Why a collective did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingError {
    /// The cancel flag was set while waiting for a peer.
    Cancelled,
    /// A peer failed, hung or sent something unexpected.
    Peer(String),
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingError::Cancelled => write!(f, "cancelled while waiting for a peer"),
            RingError::Peer(message) => write!(f, "{message}"),
        }
    }
}

/// A number the ring can sum: f32 or f64, sent little-endian.
pub trait Element: Copy + Send + Sync + 'static {
    const BYTES: usize;
    fn put(values: &[Self], out: &mut Vec<u8>);
    /// Adds (or, with `add` false, copies) the encoded `bytes` into `values`.
    fn take(bytes: &[u8], values: &mut [Self], add: bool);
}

macro_rules! element {
    ($t:ty) => {
        impl Element for $t {
            const BYTES: usize = std::mem::size_of::<$t>();
            fn put(values: &[Self], out: &mut Vec<u8>) {
                out.clear();
                out.reserve(values.len() * Self::BYTES);
                for value in values {
                    out.extend_from_slice(&value.to_le_bytes());
                }
            }
            fn take(bytes: &[u8], values: &mut [Self], add: bool) {
                for (value, chunk) in values.iter_mut().zip(bytes.chunks_exact(Self::BYTES)) {
                    let other = <$t>::from_le_bytes(chunk.try_into().expect("chunk size"));
                    *value = if add { *value + other } else { other };
                }
            }
        }
    };
}
element!(f32);
element!(f64);

/// Reads exactly `buf.len()` bytes, polling `cancel`, failing on EOF or after
/// `timeout` without progress. The stream must have a read timeout of about [`POLL`].
pub fn read_full(
    stream: &TcpStream,
    buf: &mut [u8],
    cancel: &AtomicBool,
    timeout: Duration,
    peer: &str,
) -> Result<(), RingError> {
    let mut filled = 0;
    let mut last_progress = Instant::now();
    while filled < buf.len() {
        match (&*stream).read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(RingError::Peer(format!(
                    "{peer} closed the connection (it exited or crashed)"
                )))
            }
            Ok(read) => {
                filled += read;
                last_progress = Instant::now();
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if cancel.load(Ordering::SeqCst) {
                    return Err(RingError::Cancelled);
                }
                if last_progress.elapsed() > timeout {
                    return Err(RingError::Peer(format!(
                        "{peer} sent nothing for {} s (hung or unreachable)",
                        timeout.as_secs()
                    )));
                }
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(RingError::Peer(format!("reading from {peer}: {err}"))),
        }
    }
    Ok(())
}

/// Sets the socket options every ring connection uses.
pub fn configure(stream: &TcpStream) -> Result<(), RingError> {
    let setup = || -> std::io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(POLL))?;
        stream.set_write_timeout(Some(PEER_TIMEOUT))
    };
    setup().map_err(|err| RingError::Peer(format!("configuring a ring socket: {err}")))
}

/// One rank's two ring connections.
pub struct TcpRing {
    rank: usize,
    world: usize,
    /// `None` for a world of one.
    links: Option<(TcpStream, TcpStream)>,
    timeout: Duration,
    send_buf: Vec<u8>,
    recv_buf: Vec<u8>,
}

impl TcpRing {
    /// A ring of one: all-reduce is the identity.
    pub fn solo() -> TcpRing {
        TcpRing {
            rank: 0,
            world: 1,
            links: None,
            timeout: PEER_TIMEOUT,
            send_buf: Vec::new(),
            recv_buf: Vec::new(),
        }
    }

    /// A ring from established, configured connections to the next and from the
    /// previous rank.
    pub fn new(rank: usize, world: usize, to_next: TcpStream, from_prev: TcpStream) -> TcpRing {
        TcpRing {
            links: Some((to_next, from_prev)),
            rank,
            world,
            ..TcpRing::solo()
        }
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world
    }

    /// Replaces every rank's `data` by the element-wise sum over ranks. All ranks
    /// must call it with the same length.
    pub fn all_reduce_sum<T: Element>(
        &mut self,
        data: &mut [T],
        cancel: &AtomicBool,
    ) -> Result<(), RingError> {
        let (rank, world) = (self.rank, self.world);
        if world == 1 {
            return Ok(());
        }
        let n = data.len();
        let bounds = |chunk: usize| (chunk * n / world)..((chunk + 1) * n / world);
        // Reduce-scatter: after step k, chunk (rank - k - 1) holds k + 2 ranks' sum;
        // at the end this rank owns the full sum of chunk (rank + 1).
        for k in 0..world - 1 {
            let send = bounds((rank + world - k) % world);
            let recv = bounds((rank + 2 * world - k - 1) % world);
            T::put(&data[send], &mut self.send_buf);
            self.exchange(recv.len() * T::BYTES, cancel)?;
            T::take(&self.recv_buf, &mut data[recv], true);
        }
        // All-gather: pass the finished chunks around the ring.
        for k in 0..world - 1 {
            let send = bounds((rank + 1 + world - k) % world);
            let recv = bounds((rank + world - k) % world);
            T::put(&data[send], &mut self.send_buf);
            self.exchange(recv.len() * T::BYTES, cancel)?;
            T::take(&self.recv_buf, &mut data[recv], false);
        }
        Ok(())
    }

    /// Sends `send_buf` to the next rank while receiving `len` bytes from the previous
    /// one into `recv_buf`. The send runs on its own thread: with every rank sending
    /// at once, sequential blocking writes would deadlock once the socket buffers fill.
    fn exchange(&mut self, len: usize, cancel: &AtomicBool) -> Result<(), RingError> {
        let Some((to_next, from_prev)) = &self.links else {
            return Ok(());
        };
        let (next, prev) = (
            (self.rank + 1) % self.world,
            (self.rank + self.world - 1) % self.world,
        );
        self.recv_buf.resize(len, 0);
        let send = &self.send_buf;
        let recv = &mut self.recv_buf;
        let timeout = self.timeout;
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || (&*to_next).write_all(send));
            let read = read_full(from_prev, recv, cancel, timeout, &format!("rank {prev}"));
            if read.is_err() {
                // Unblocks a writer stuck on a peer that no longer reads.
                let _ = to_next.shutdown(Shutdown::Both);
            }
            let wrote = writer
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("sender thread panicked")));
            read?;
            wrote.map_err(|err| RingError::Peer(format!("sending to rank {next}: {err}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A ring of `world` ranks over loopback, built directly (the bootstrap has its
    /// own tests).
    fn rings(world: usize) -> Vec<TcpRing> {
        if world == 1 {
            return vec![TcpRing::solo()];
        }
        let listeners: Vec<TcpListener> = (0..world)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let mut to_next = Vec::new();
        let mut from_prev = Vec::new();
        for rank in 0..world {
            let next = listeners[(rank + 1) % world].local_addr().expect("addr");
            to_next.push(TcpStream::connect(next).expect("connect"));
            from_prev.push(listeners[(rank + 1) % world].accept().expect("accept").0);
        }
        // from_prev[r] was accepted by rank r + 1.
        from_prev.rotate_right(1);
        to_next
            .into_iter()
            .zip(from_prev)
            .enumerate()
            .map(|(rank, (next, prev))| {
                configure(&next).expect("configure");
                configure(&prev).expect("configure");
                TcpRing::new(rank, world, next, prev)
            })
            .collect()
    }

    fn check<T: Element + std::fmt::Debug + PartialEq + From<u16>>(world: usize, len: usize) {
        let inputs: Vec<Vec<T>> = (0..world)
            .map(|rank| {
                (0..len)
                    .map(|i| T::from(((i * 7 + rank * 13) % 101) as u16))
                    .collect()
            })
            .collect();
        let expected: Vec<T> = (0..len)
            .map(|i| {
                let mut bytes = Vec::new();
                let mut sum = vec![inputs[0][i]];
                for input in &inputs[1..] {
                    T::put(&[input[i]], &mut bytes);
                    T::take(&bytes, &mut sum, true);
                }
                sum[0]
            })
            .collect();
        let cancel = AtomicBool::new(false);
        let results: Vec<Vec<T>> = std::thread::scope(|scope| {
            let handles: Vec<_> = rings(world)
                .into_iter()
                .zip(inputs.clone())
                .map(|(mut ring, mut data)| {
                    let cancel = &cancel;
                    scope.spawn(move || {
                        ring.all_reduce_sum(&mut data, cancel).expect("all-reduce");
                        data
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("rank thread"))
                .collect()
        });
        for (rank, result) in results.iter().enumerate() {
            assert_eq!(result, &expected, "world {world}, len {len}, rank {rank}");
        }
    }

    #[test]
    fn ring_sums_match_a_plain_sum_for_odd_sizes_and_worlds_one_to_five() {
        for world in 1..=5 {
            for len in [0, 1, 2, 3, 4, 5, 7, 31, 1000, 65_537] {
                check::<f32>(world, len);
                check::<f64>(world, len);
            }
        }
    }

    #[test]
    fn a_peer_that_closes_its_sockets_fails_the_others_at_once() {
        let mut ranks = rings(3);
        let dead = ranks.remove(1);
        drop(dead);
        let cancel = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let cancel = &cancel;
            let handles: Vec<_> = ranks
                .into_iter()
                .map(|mut ring| {
                    scope.spawn(move || {
                        let mut data = vec![1.0f32; 100_000];
                        ring.all_reduce_sum(&mut data, cancel)
                    })
                })
                .collect();
            for handle in handles {
                let err = handle.join().expect("rank thread").expect_err("peer gone");
                assert!(matches!(err, RingError::Peer(_)), "{err}");
            }
        });
    }

    #[test]
    fn cancel_stops_a_rank_waiting_for_a_silent_peer() {
        let mut ranks = rings(2);
        let _silent = ranks.pop();
        let cancel = AtomicBool::new(true);
        let mut data = vec![1.0f64; 10];
        let err = ranks[0]
            .all_reduce_sum(&mut data, &cancel)
            .expect_err("cancelled");
        assert_eq!(err, RingError::Cancelled);
    }
}
