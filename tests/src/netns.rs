//! A small cluster of hosts made of Linux namespaces, for the multi-host tests.
//!
//! Each host is a network namespace (`ip netns`) with one veth link to a bridge that
//! joins the cluster, its own hostname (a UTS namespace), its own `/etc/hosts` (so
//! `head-node`, `h1`… resolve as on a real cluster) and its own directory, which is
//! its home and where its processes run. Nothing is shared but the network: inside a
//! host, the other hosts' directories are hidden under empty tmpfs mounts (a private
//! mount namespace), so a worker cannot read the workspace, nor the client a worker's
//! disk. Installed software (the `expcluster` binary, the Python venv, libtorch) is
//! visible everywhere, as on a cluster's shared image.
//!
//! A host lives as long as its holder process (`sh` waiting on a pipe from this
//! process), whose namespaces every command of the host enters with `nsenter`. The
//! holder exits when this process dies, even by `kill -9`; the next cluster made by
//! any test process deletes the namespaces and links of dead processes.
//!
//! Needs root and iproute2, util-linux (nsenter, unshare) and nftables, which
//! `scripts/setup.sh` installs. Without them a test fails and says so.

use crate::Proc;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

/// The cluster's subnet: the bridge has no address in the root namespace, so every
/// cluster can use the same one without seeing the others.
const SUBNET: &str = "10.77.0";
/// The name of host 0 in every host's /etc/hosts, as in the README's cluster section.
pub const HEAD_NODE: &str = "head-node";

static NEXT_CLUSTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// One host of a [`NetCluster`].
pub struct Host {
    /// `h0`, `h1`…: its hostname.
    pub name: String,
    pub ip: String,
    /// Its private directory (its `$HOME` and working directory).
    pub dir: PathBuf,
    netns: String,
    /// The root-namespace end of its veth link (down: the host is cut off).
    link: String,
    holder: Child,
    _holder_stdin: ChildStdin,
}

/// Hosts `h0`…`h<n-1>` on one bridge.
pub struct NetCluster {
    pub hosts: Vec<Host>,
    bridge: String,
    root: tempfile::TempDir,
}

impl NetCluster {
    /// Builds `count` hosts; panics saying what is missing when it cannot.
    pub fn new(count: usize) -> Self {
        require_root_and_tools();
        SWEEP.call_once(sweep_dead_clusters);
        let pid = std::process::id();
        let index = NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed);
        let bridge = format!("ecb{pid}-{index}");
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["link", "set", &bridge, "up"]);
        let root = tempfile::Builder::new()
            .prefix("expcluster-netns-")
            .tempdir()
            .expect("tempdir");
        let names: Vec<String> = (0..count).map(|i| format!("h{i}")).collect();
        let hosts_file = root.path().join("hosts");
        let mut hosts_text = String::from("127.0.0.1 localhost\n");
        for (i, name) in names.iter().enumerate() {
            let alias = if i == 0 { HEAD_NODE } else { "" };
            hosts_text.push_str(&format!("{SUBNET}.{} {name} {alias}\n", 10 + i));
        }
        std::fs::write(&hosts_file, hosts_text).expect("hosts file");
        for name in &names {
            std::fs::create_dir_all(root.path().join(name).join("tmp")).expect("host dir");
        }
        let mut cluster = Self {
            hosts: Vec::new(),
            bridge,
            root,
        };
        for (i, name) in names.iter().enumerate() {
            let host = cluster.make_host(pid, index, i, name, &names, &hosts_file);
            cluster.hosts.push(host);
        }
        cluster
    }

    fn make_host(
        &self,
        pid: u32,
        index: u32,
        i: usize,
        name: &str,
        names: &[String],
        hosts_file: &Path,
    ) -> Host {
        let root = self.root.path();
        let netns = format!("ecx{pid}-{index}-{name}");
        let link = format!("ecv{pid}-{index}{i}");
        let ip_address = format!("{SUBNET}.{}", 10 + i);
        ip(&["netns", "add", &netns]);
        ip(&[
            "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ]);
        ip(&["link", "set", &link, "master", &self.bridge, "up"]);
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{ip_address}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &netns, "link", "set", "eth0", "up"]);
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        // The holder: sets the hostname and the private mounts, then waits for its
        // stdin to close (this process's end, closed when it exits).
        let mut hide = String::new();
        for other in names.iter().filter(|other| *other != name) {
            hide.push_str(&format!(
                "mount -t tmpfs tmpfs '{}' && ",
                root.join(other).display()
            ));
        }
        let script = format!(
            "hostname {name} && mount --bind '{}' /etc/hosts && {hide} echo ready && read _",
            hosts_file.display()
        );
        let mut holder = Command::new("ip")
            .args(["netns", "exec", &netns])
            .args(["unshare", "--uts", "--mount", "--propagation", "private"])
            .args(["--", "sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a host's namespace holder");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().expect("holder stdout"))
            .read_line(&mut line)
            .expect("holder ready line");
        assert_eq!(line.trim(), "ready", "host {name} did not start");
        let stdin = holder.stdin.take().expect("holder stdin");
        Host {
            name: name.to_owned(),
            ip: ip_address,
            dir: root.join(name),
            netns,
            link,
            holder,
            _holder_stdin: stdin,
        }
    }

    /// The first `N` hosts, h0 first.
    pub fn first<const N: usize>(&self) -> [&Host; N] {
        std::array::from_fn(|i| &self.hosts[i])
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|host| host.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }
}

impl Drop for NetCluster {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            let _ = host.holder.kill();
            let _ = host.holder.wait();
            let _ = Command::new("ip")
                .args(["netns", "del", &host.netns])
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

impl Host {
    /// A shell command line run on this host by `bash -c`, in its directory, with the
    /// `expcluster` binaries and the venv first on PATH and HOME set to its directory.
    pub fn command(&self, script: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg("-t")
            .arg(self.holder.id().to_string())
            .args(["-n", "-u", "-m"])
            .arg(format!("--wd={}", self.dir.display()))
            .args(["--", "bash", "-c", script])
            .env_clear()
            .env("PATH", host_path())
            .env("HOME", &self.dir)
            .env("TMPDIR", self.dir.join("tmp"))
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null());
        command
    }

    /// Runs `script` here to its end.
    pub fn run(&self, script: &str) -> Output {
        self.command(script).output().expect("run on a host")
    }

    /// Starts `script` here in the background (killed when the `Proc` is dropped),
    /// its stdout and stderr appended to `<dir>/<log>`.
    pub fn spawn(&self, script: &str, log: &str) -> Proc {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(log))
            .expect("log file");
        let child = self
            .command(&format!("exec {script}"))
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("spawn on a host");
        Proc { child }
    }

    /// Cuts this host off the network (its link to the bridge goes down), or back on.
    pub fn set_link(&self, up: bool) {
        ip(&["link", "set", &self.link, if up { "up" } else { "down" }]);
    }

    /// Drops `percent`% of the packets this host sends (nftables in its namespace).
    pub fn drop_outgoing(&self, percent: u32) {
        assert!((1..100).contains(&percent));
        let rules = format!(
            "table inet expcluster_loss {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n    numgen random mod 100 < {percent} drop\n  }}\n}}\n"
        );
        let mut nft = Command::new("ip")
            .args(["netns", "exec", &self.netns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft: install nftables (scripts/setup.sh does)");
        nft.stdin
            .as_mut()
            .expect("nft stdin")
            .write_all(rules.as_bytes())
            .expect("nft rules");
        let status = nft.wait().expect("nft");
        assert!(
            status.success(),
            "nft could not add the loss rule on {}",
            self.name
        );
    }

    /// A file in this host's directory.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }
}

/// Copies a file from one host's disk to another's, as `scp` would.
pub fn copy_between(from: &Host, from_path: &str, to: &Host, to_path: &str) {
    let target = to.path(to_path);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).expect("target dir");
    }
    std::fs::copy(from.path(from_path), &target).unwrap_or_else(|err| {
        panic!(
            "copy {}:{from_path} to {}:{to_path}: {err}",
            from.name, to.name
        )
    });
}

/// PATH on the hosts: the directory of the `expcluster` binaries, the venv, the system.
fn host_path() -> String {
    let bin_dir = crate::expcluster_bin()
        .parent()
        .expect("binary dir")
        .to_path_buf();
    format!("{}:{}", bin_dir.display(), crate::path_with_venv())
}

fn require_root_and_tools() {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default();
    assert!(
        uid == "0",
        "the namespace cluster tests need root (ip netns, veth, unshare, nsenter): run the suite as root, as CI does"
    );
    for tool in ["ip", "nsenter", "unshare", "nft"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|output| output.status.success());
        assert!(
            found,
            "`{tool}` is missing: run scripts/setup.sh (it installs iproute2, util-linux and nftables)"
        );
    }
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Deletes the namespaces and links of clusters whose test process is gone.
fn sweep_dead_clusters() {
    let dead = |name: &str, prefix: &str| -> bool {
        let Some(rest) = name.strip_prefix(prefix) else {
            return false;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        !pid.is_empty() && !Path::new("/proc").join(&pid).exists()
    };
    let list = |args: &[&str]| -> String {
        Command::new("ip")
            .args(args)
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_default()
    };
    for line in list(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if dead(name, "ecx") {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
    for line in list(&["-o", "link", "show"]).lines() {
        // "12: ecb123-0: <...>" or "13: ecv123-01@if2: <...>"
        let name = line
            .split(": ")
            .nth(1)
            .and_then(|name| name.split('@').next())
            .unwrap_or_default();
        if dead(name, "ecb") || dead(name, "ecv") {
            let _ = Command::new("ip").args(["link", "del", name]).status();
        }
    }
}
