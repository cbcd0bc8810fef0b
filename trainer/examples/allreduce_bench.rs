//! CPU all-reduce throughput of the TCP ring: `world` ranks as threads of this
//! process over loopback, f32 buffers of several sizes. Prints algorithm bandwidth
//! (bytes / time) and bus bandwidth (× 2 (world − 1) / world, NCCL's convention: what
//! each rank's link carries).
//!
//! `allreduce_bench [world sizes, default 2 4]`

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use expcluster_trainer::distributed::{connect_ring, MemoryRendezvous};

fn bench(world: usize, floats: usize, repeats: usize) -> f64 {
    let rendezvous = MemoryRendezvous::default();
    let cancel = AtomicBool::new(false);
    let times: Vec<f64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..world)
            .map(|rank| {
                let (rendezvous, cancel) = (&rendezvous, &cancel);
                scope.spawn(move || {
                    let mut ring = connect_ring(rank, world, "127.0.0.1", rendezvous, cancel)
                        .unwrap_or_else(|err| panic!("rank {rank}: {err}"));
                    let mut data = vec![1.0f32; floats];
                    ring.all_reduce_sum(&mut data, cancel).expect("warm-up");
                    let started = Instant::now();
                    for _ in 0..repeats {
                        ring.all_reduce_sum(&mut data, cancel).expect("all-reduce");
                    }
                    started.elapsed().as_secs_f64() / repeats as f64
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("rank"))
            .collect()
    });
    times.into_iter().fold(0.0, f64::max)
}

fn main() {
    let worlds: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let worlds = if worlds.is_empty() {
        vec![2, 4]
    } else {
        worlds
    };
    println!("| ranks | size | time ms | algbw GB/s | busbw GB/s |");
    println!("|---|---|---|---|---|");
    for world in worlds {
        for (label, floats, repeats) in [
            ("4 KiB", 1 << 10, 200),
            ("1 MiB", 1 << 18, 20),
            ("16 MiB", 1 << 22, 5),
            ("64 MiB", 1 << 24, 3),
        ] {
            let seconds = bench(world, floats, repeats);
            let bytes = (floats * 4) as f64;
            let algbw = bytes / seconds / 1e9;
            let busbw = algbw * 2.0 * (world as f64 - 1.0) / world as f64;
            println!(
                "| {world} | {label} | {:.3} | {algbw:.3} | {busbw:.3} |",
                seconds * 1e3
            );
        }
    }
}
