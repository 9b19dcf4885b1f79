//! The generated 1,000-node cluster file the benches run on (included with `#[path]` by
//! `genconfig_1000.rs` and `validate_1000.rs`): three control-plane nodes sharing a VIP,
//! the rest workers, every node with labels and an interface, group settings and a patch.

use std::fmt::Write as _;

/// A cluster file with `nodes` nodes.
pub fn cluster_file(nodes: usize) -> String {
    let mut s = String::from(
        "clusterName: big\ntalosVersion: v1.12.0\nkubernetesVersion: v1.35.0\nendpoint: https://10.1.0.10:6443\nclusterPodNets: [10.244.0.0/16]\nclusterSvcNets: [10.96.0.0/12]\nnodes:\n",
    );
    for i in 0..nodes {
        let cp = i < 3;
        // Host parts 11..=250: every address a valid IPv4 address.
        let ip = format!("10.{}.{}.{}", 1 + i / 60000, (i / 240) % 250, 11 + i % 240);
        let _ = write!(
            s,
            "  - hostname: node-{i}\n    ipAddress: {ip}\n    controlPlane: {cp}\n    installDisk: /dev/nvme0n1\n    nodeLabels:\n      rack: r{}\n    networkInterfaces:\n      - interface: eth0\n        dhcp: true\n        mtu: 9000\n",
            i % 40
        );
        if cp {
            s.push_str("        vip: {ip: 10.1.0.10}\n");
        }
    }
    s.push_str("worker:\n  nameservers: [1.1.1.1]\n  kernelModules:\n    - name: br_netfilter\n  patches:\n    - |-\n      machine:\n        sysctls:\n          vm.max_map_count: \"262144\"\n");
    s
}
