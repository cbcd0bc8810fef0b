//! The namespaces mode: the simulated workers reach the coordinator across a network
//! link and a delaying relay instead of loopback.
//!
//! `EXPCLUSTER_BENCH_RTT_MS=0.2` (root only) makes a network namespace host joined to
//! this one by a veth pair (10.79.0.1 here, 10.79.0.2 there). The coordinator listens
//! on 10.79.0.1; each benchmark cluster gets a relay process (`expcluster-bench relay`)
//! in the namespace host, which holds every packet half the round-trip time in each
//! direction before passing it on. Worker connections go to the relay, so each of their
//! calls crosses the link twice each way and waits the round-trip time, as it would
//! from another node; the submitting client connects directly. `0` keeps the relay
//! without delay, which shows what the relay itself costs.
//!
//! Network namespaces instead of `tc netem`: this kernel has no netem qdisc.

use anyhow::Context;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

const HERE: &str = "10.79.0.1";
const THERE: &str = "10.79.0.2";

pub struct NetPath {
    pub rtt: Duration,
    netns: String,
}

static PATH: OnceLock<Option<NetPath>> = OnceLock::new();

/// The namespaces mode, when `EXPCLUSTER_BENCH_RTT_MS` asks for it (set up once).
pub fn current() -> anyhow::Result<Option<&'static NetPath>> {
    if let Some(path) = PATH.get() {
        return Ok(path.as_ref());
    }
    let path = match std::env::var("EXPCLUSTER_BENCH_RTT_MS") {
        Err(_) => None,
        Ok(value) => {
            let ms: f64 = value.trim().parse().ok().filter(|ms: &f64| *ms >= 0.0 && *ms < 1000.0).with_context(|| {
                format!("EXPCLUSTER_BENCH_RTT_MS={value:?}: give the round-trip time in milliseconds, e.g. 0.2 or 1")
            })?;
            Some(NetPath::set_up(Duration::from_secs_f64(ms / 1000.0))?)
        }
    };
    Ok(PATH.get_or_init(|| path).as_ref())
}

/// Removes the namespace host (the relays end with their clusters).
pub fn tear_down() {
    if let Some(Some(path)) = PATH.get() {
        let _ = Command::new("ip")
            .args(["netns", "del", &path.netns])
            .status();
    }
}

/// A label for the tables: how the workers reach the coordinator.
pub fn label() -> String {
    match PATH.get() {
        Some(Some(path)) => format!("namespaces, relay RTT {} ms", path.rtt.as_secs_f64() * 1e3),
        _ => "loopback".to_owned(),
    }
}

impl NetPath {
    fn set_up(rtt: Duration) -> anyhow::Result<Self> {
        let pid = std::process::id();
        remove_stale_hosts();
        let netns = format!("ecbench{pid}");
        let link = format!("ecbl{pid}");
        ip(&["netns", "add", &netns])?;
        ip(&[
            "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ])?;
        ip(&["addr", "add", &format!("{HERE}/30"), "dev", &link])?;
        ip(&["link", "set", &link, "up"])?;
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{THERE}/30"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        Ok(Self { rtt, netns })
    }

    /// Where the coordinator listens: the address the namespace host reaches.
    pub fn coordinator_bind(&self) -> String {
        format!("{HERE}:0")
    }

    /// Starts a relay in the namespace host to `coordinator`; returns it and the
    /// address workers connect to.
    pub fn relay_to(&self, coordinator: &str) -> anyhow::Result<(Child, String)> {
        let exe = std::env::current_exe().context("cannot find this benchmark's binary")?;
        let one_way = (self.rtt / 2).as_micros().to_string();
        let mut relay = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .arg(exe)
            .args([
                "relay",
                "--listen",
                &format!("{THERE}:0"),
                "--to",
                coordinator,
            ])
            .args(["--delay-us", &one_way])
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the relay")?;
        let mut line = String::new();
        BufReader::new(relay.stdout.take().context("relay stdout")?).read_line(&mut line)?;
        let address = line
            .trim()
            .strip_prefix("relay listening on ")
            .with_context(|| format!("the relay did not start: {line:?}"))?
            .to_owned();
        Ok((relay, address))
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip").args(args).output().context(
        "cannot run `ip`: the namespaces mode needs root and iproute2 (scripts/setup.sh installs it)",
    )?;
    anyhow::ensure!(
        output.status.success(),
        "ip {}: {} (the namespaces mode needs root)",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// Namespace hosts of benchmark runs that died before tearing down.
fn remove_stale_hosts() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name.strip_prefix("ecbench") else {
            continue;
        };
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}
