//! `expcluster-bench relay`: a TCP relay that adds a fixed one-way delay.
//!
//! This kernel has no `netem` qdisc, so the namespace cluster (tests and the
//! namespaces mode of the benchmarks) puts its network delay here: every chunk read
//! from one side is written to the other once `delay` has passed since it was read.
//! Chunks keep their order and are not held back by each other (a chunk read 1 ms
//! after another leaves 1 ms after it), so the relay adds latency without cutting the
//! bandwidth the way a sleep per read would.
//!
//! Usage: `expcluster-bench relay --listen ADDR --to ADDR --delay-us N`
//! (one thread pair per connection: the relay is for a handful of long-lived gRPC
//! connections, not for load tests of its own).

use anyhow::Context;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHUNK: usize = 64 * 1024;

pub struct RelayArgs {
    pub listen: String,
    pub to: String,
    pub delay: Duration,
}

impl RelayArgs {
    /// Parses `--listen ADDR --to ADDR --delay-us N`.
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let value = |flag: &str| -> anyhow::Result<String> {
            let at = args
                .iter()
                .position(|arg| arg == flag)
                .with_context(|| format!("relay needs {flag}: expcluster-bench relay --listen ADDR --to ADDR --delay-us N"))?;
            args.get(at + 1)
                .cloned()
                .with_context(|| format!("{flag} needs a value"))
        };
        let delay_us: u64 = value("--delay-us")?
            .parse()
            .context("--delay-us takes whole microseconds, e.g. 500")?;
        Ok(Self {
            listen: value("--listen")?,
            to: value("--to")?,
            delay: Duration::from_micros(delay_us),
        })
    }
}

/// Serves until killed; prints `relay listening on ADDR` once bound.
pub fn run(args: &RelayArgs) -> anyhow::Result<()> {
    let listener =
        TcpListener::bind(&args.listen).with_context(|| format!("relay: bind {}", args.listen))?;
    println!("relay listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    for incoming in listener.incoming() {
        let Ok(client) = incoming else { continue };
        let upstream = match TcpStream::connect(&args.to) {
            Ok(upstream) => upstream,
            Err(err) => {
                eprintln!("relay: cannot reach {}: {err}", args.to);
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        pump(client.try_clone()?, upstream.try_clone()?, args.delay);
        pump(upstream, client, args.delay);
    }
    Ok(())
}

/// Copies `from` to `to`, each chunk `delay` after it was read; closes `to`'s write
/// side after `from` ends.
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (sender, receiver) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; CHUNK];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sender
                        .send((Instant::now() + delay, buffer[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        while let Ok((due, bytes)) = receiver.recv() {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
