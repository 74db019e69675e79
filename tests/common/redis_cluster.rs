//! A private Redis Cluster for tests and benches: three masters and three replicas
//! (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create`), on free
//! loopback ports in a temporary directory, stopped when dropped.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mcp_policy::RedisStore;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running cluster; node `i` listens on `ports[i]`.
pub struct RedisCluster {
    nodes: Vec<Option<Child>>,
    pub ports: Vec<u16>,
    dir: PathBuf,
}

fn free_port() -> u16 {
    // Cluster nodes also listen on port + 10000: keep both free and in range.
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("this test needs redis-cli (apt-get install -y redis-server)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// One node, its cluster state (`nodes.conf`) kept in `dir/PORT`, so a restarted node
/// rejoins the cluster it was in.
fn spawn(dir: &std::path::Path, port: u16) -> Child {
    let node_dir = dir.join(port.to_string());
    std::fs::create_dir_all(&node_dir).unwrap();
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&node_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("this test needs redis-server (apt-get install -y redis-server)")
}

impl RedisCluster {
    /// Starts six nodes and joins them: three masters, each with one replica. Panics,
    /// saying what to install, without `redis-server` and `redis-cli`.
    pub fn start() -> RedisCluster {
        let dir = std::env::temp_dir().join(format!(
            "mcp-policy-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ports = Vec::new();
        while ports.len() < 6 {
            let port = free_port();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        let nodes = ports.iter().map(|&port| Some(spawn(&dir, port))).collect();
        let cluster = RedisCluster { nodes, ports, dir };
        for &port in &cluster.ports {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !cli(port, &["ping"]).contains("PONG") {
                assert!(Instant::now() < deadline, "node {port} did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let addresses: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(created.success(), "redis-cli --cluster create failed");
        cluster.wait_until_ok();
        cluster
    }

    /// Waits until every live node says `cluster_state:ok`, every slot is served and every
    /// replica is in sync with its master.
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self.live_ports().iter().all(|&p| {
                let info = cli(p, &["cluster", "info"]);
                let replication = cli(p, &["info", "replication"]);
                // A replica counts once its copy is in sync.
                let synced = !replication.contains("role:slave")
                    || replication.contains("master_link_status:up");
                info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && synced
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn live_ports(&self) -> Vec<u16> {
        self.ports
            .iter()
            .zip(&self.nodes)
            .filter(|(_, node)| node.is_some())
            .map(|(p, _)| *p)
            .collect()
    }

    /// The seed URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect()
    }

    /// A store on the cluster with `prefix` and a timeout of `timeout`.
    pub fn store(&self, prefix: &str, timeout: Duration) -> RedisStore {
        let urls = self.urls();
        let seeds: Vec<&str> = urls.iter().map(String::as_str).collect();
        RedisStore::cluster(&seeds)
            .unwrap()
            .prefix(prefix)
            .timeout(timeout)
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &str) -> u16 {
        let live = self.live_ports()[0];
        cli(live, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap()
    }

    /// The port of the master serving `key`'s slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let slot = self.slot_of(key);
        let nodes = cli(self.live_ports()[0], &["cluster", "nodes"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if !fields.get(2).is_some_and(|f| f.contains("master")) || fields.len() < 9 {
                continue;
            }
            let serves = fields[8..].iter().any(|range| match range.split_once('-') {
                Some((a, b)) => {
                    (a.parse().unwrap_or(u16::MAX)..=b.parse().unwrap_or(0)).contains(&slot)
                }
                None => range.parse() == Ok(slot),
            });
            if serves {
                let addr = fields[1].split('@').next().unwrap();
                return addr.rsplit(':').next().unwrap().parse().unwrap();
            }
        }
        panic!("no master serves slot {slot}:\n{nodes}");
    }

    /// Kills the node on `port` (SIGKILL): its replica takes over after the node timeout.
    pub fn kill(&mut self, port: u16) {
        let i = self.ports.iter().position(|&p| p == port).unwrap();
        if let Some(mut child) = self.nodes[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl RedisCluster {
    /// Starts the killed node on `port` again: it rejoins as a replica of whoever took
    /// over its slots.
    pub fn restart(&mut self, port: u16) {
        let i = self.ports.iter().position(|&p| p == port).unwrap();
        self.nodes[i] = Some(spawn(&self.dir, port));
        self.wait_until_ok();
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in self.nodes.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
