//! The simulated kernel: the command line the node booted with, the huge page pools the
//! kernel arguments and the `vm.nr_hugepages` sysctl produce, and `/proc/meminfo` (text
//! and the `machine.MemInfo` message) for a configured amount of memory.
//!
//! Huge pages follow Linux (`Documentation/admin-guide/mm/hugetlbpage.rst`, x86-64):
//! `default_hugepagesz=` picks the default size (2M unless given); `hugepages=N` sizes the
//! pool of the most recent `hugepagesz=`, or of the default size when none came before;
//! `hugepages=0:N,1:M` (per NUMA node) counts the sum; sizes other than 2M and 1G are
//! ignored as x86-64 kernels ignore them. `vm.nr_hugepages` then resizes the default-size
//! pool at runtime. Pools never take more than 90% of memory (the kernel allocates what
//! it can and stops).

use std::fmt::Write as _;

use kforge_talos_api::proto::machine::MemInfo;

/// Arguments every Talos kernel command line carries (a metal install).
const BASE_CMDLINE: &[&str] = &[
    "init_on_alloc=1",
    "slab_nomerge",
    "pti=on",
    "consoleblank=0",
    "nvme_core.io_timeout=4294967295",
    "printk.devkmsg=on",
    "ima_template=ima-ng",
    "ima_appraise=fix",
    "ima_hash=sha512",
];

const KIB_2M: u64 = 2 * 1024;
const KIB_1G: u64 = 1024 * 1024;

/// The command line: Talos' base arguments, `talos.platform=<platform>`, then `extra`
/// (install.extraKernelArgs, the image's schematic arguments) in order.
pub fn cmdline(platform: &str, extra: &[String]) -> String {
    let mut args: Vec<String> = BASE_CMDLINE.iter().map(|s| s.to_string()).collect();
    args.push(format!("talos.platform={platform}"));
    args.push("console=tty0".into());
    args.extend(extra.iter().cloned());
    args.join(" ")
}

/// One huge page pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HugePagePool {
    pub size_kib: u64,
    pub pages: u64,
}

/// The pools the kernel sets up, and which size is the default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HugePages {
    pub default_size_kib: u64,
    pub pools: Vec<HugePagePool>,
}

impl HugePages {
    /// Pages in the default-size pool (`HugePages_Total`).
    pub fn default_pages(&self) -> u64 {
        self.pools
            .iter()
            .find(|p| p.size_kib == self.default_size_kib)
            .map_or(0, |p| p.pages)
    }

    /// Memory held by all pools (`Hugetlb`).
    pub fn hugetlb_kib(&self) -> u64 {
        self.pools
            .iter()
            .map(|p| p.pages.saturating_mul(p.size_kib))
            .sum()
    }
}

/// `2M`, `1G`, `2048K` → KiB, accepting only the sizes an x86-64 kernel supports.
fn page_size_kib(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..digits].parse().ok()?;
    let kib = match &t[digits..] {
        "k" | "K" => n,
        "m" | "M" => n.checked_mul(1024)?,
        "g" | "G" => n.checked_mul(1024 * 1024)?,
        "" => n / 1024,
        _ => return None,
    };
    (kib == KIB_2M || kib == KIB_1G).then_some(kib)
}

/// `N` or `node:N,node:M` → total pages.
fn page_count(text: &str) -> Option<u64> {
    if text.contains(':') {
        text.split(',')
            .map(|part| {
                part.split_once(':')
                    .and_then(|(_, n)| n.trim().parse::<u64>().ok())
            })
            .try_fold(0u64, |acc, n| n.map(|n| acc.saturating_add(n)))
    } else {
        text.trim().parse().ok()
    }
}

/// The huge page pools for `cmdline_args` and the config's `sysctls`, limited to 90% of
/// `memtotal_kib`.
pub fn hugepages(
    cmdline_args: &[&str],
    sysctls: &[(String, String)],
    memtotal_kib: u64,
) -> HugePages {
    let mut default_size = KIB_2M;
    for arg in cmdline_args {
        if let Some(size) = arg
            .strip_prefix("default_hugepagesz=")
            .and_then(page_size_kib)
        {
            default_size = size;
        }
    }
    let mut pools: Vec<HugePagePool> = Vec::new();
    let mut current: Option<u64> = None;
    let set = |pools: &mut Vec<HugePagePool>, size: u64, pages: u64| match pools
        .iter_mut()
        .find(|p| p.size_kib == size)
    {
        Some(p) => p.pages = pages,
        None => pools.push(HugePagePool {
            size_kib: size,
            pages,
        }),
    };
    for arg in cmdline_args {
        if let Some(v) = arg.strip_prefix("hugepagesz=") {
            current = page_size_kib(v);
            // An unsupported size makes the following `hugepages=` apply to nothing.
            if current.is_none() {
                current = Some(0);
            }
        } else if let Some(v) = arg.strip_prefix("hugepages=") {
            let size = current.unwrap_or(default_size);
            if let (Some(pages), true) = (page_count(v), size != 0) {
                set(&mut pools, size, pages);
            }
        }
    }
    if let Some((_, v)) = sysctls.iter().rev().find(|(k, _)| k == "vm.nr_hugepages")
        && let Ok(pages) = v.trim().parse::<u64>()
    {
        set(&mut pools, default_size, pages);
    }
    // The kernel allocates what fits and stops; keep 10% for everything else.
    let mut budget = memtotal_kib / 10 * 9;
    for pool in &mut pools {
        let fit = budget / pool.size_kib;
        pool.pages = pool.pages.min(fit);
        budget -= pool.pages * pool.size_kib;
    }
    HugePages {
        default_size_kib: default_size,
        pools,
    }
}

/// A plausible idle meminfo for `total_kib` of memory with `huge` reserved.
pub fn meminfo(total_kib: u64, huge: &HugePages) -> MemInfo {
    let hugetlb = huge.hugetlb_kib();
    let usable = total_kib.saturating_sub(hugetlb);
    let used = usable / 25;
    let cached = usable / 50;
    let buffers = usable / 500;
    let free = usable.saturating_sub(used + cached + buffers);
    let pages = huge.default_pages();
    MemInfo {
        memtotal: total_kib,
        memfree: free,
        memavailable: free + cached + buffers,
        buffers,
        cached,
        active: used / 2 + cached / 2,
        inactive: cached / 2 + buffers,
        activeanon: used / 2,
        inactiveanon: used / 20,
        activefile: cached / 2,
        inactivefile: cached / 2 + buffers,
        anonpages: used / 2,
        mapped: cached / 10,
        shmem: used / 50,
        slab: used / 5,
        sreclaimable: used / 10,
        sunreclaim: used / 10,
        kernelstack: 16_384,
        pagetables: used / 100,
        commitlimit: usable / 2,
        committedas: used,
        vmalloctotal: 34_359_738_367,
        vmallocused: 65_536,
        hugepagestotal: pages,
        hugepagesfree: pages,
        hugepagesize: huge.default_size_kib,
        directmap4k: 262_144,
        directmap2m: total_kib.saturating_sub(262_144) % KIB_1G,
        directmap1g: total_kib.saturating_sub(262_144) / KIB_1G * KIB_1G,
        ..MemInfo::default()
    }
}

/// `/proc/meminfo` as Linux prints it (the fields `machine.MemInfo` carries, plus
/// `Hugetlb`).
pub fn meminfo_text(m: &MemInfo, huge: &HugePages) -> String {
    let rows: [(&str, u64, bool); 49] = [
        ("MemTotal", m.memtotal, true),
        ("MemFree", m.memfree, true),
        ("MemAvailable", m.memavailable, true),
        ("Buffers", m.buffers, true),
        ("Cached", m.cached, true),
        ("SwapCached", m.swapcached, true),
        ("Active", m.active, true),
        ("Inactive", m.inactive, true),
        ("Active(anon)", m.activeanon, true),
        ("Inactive(anon)", m.inactiveanon, true),
        ("Active(file)", m.activefile, true),
        ("Inactive(file)", m.inactivefile, true),
        ("Unevictable", m.unevictable, true),
        ("Mlocked", m.mlocked, true),
        ("SwapTotal", m.swaptotal, true),
        ("SwapFree", m.swapfree, true),
        ("Dirty", m.dirty, true),
        ("Writeback", m.writeback, true),
        ("AnonPages", m.anonpages, true),
        ("Mapped", m.mapped, true),
        ("Shmem", m.shmem, true),
        ("Slab", m.slab, true),
        ("SReclaimable", m.sreclaimable, true),
        ("SUnreclaim", m.sunreclaim, true),
        ("KernelStack", m.kernelstack, true),
        ("PageTables", m.pagetables, true),
        ("NFS_Unstable", m.nfsunstable, true),
        ("Bounce", m.bounce, true),
        ("WritebackTmp", m.writebacktmp, true),
        ("CommitLimit", m.commitlimit, true),
        ("Committed_AS", m.committedas, true),
        ("VmallocTotal", m.vmalloctotal, true),
        ("VmallocUsed", m.vmallocused, true),
        ("VmallocChunk", m.vmallocchunk, true),
        ("HardwareCorrupted", m.hardwarecorrupted, true),
        ("AnonHugePages", m.anonhugepages, true),
        ("ShmemHugePages", m.shmemhugepages, true),
        ("ShmemPmdMapped", m.shmempmdmapped, true),
        ("CmaTotal", m.cmatotal, true),
        ("CmaFree", m.cmafree, true),
        ("HugePages_Total", m.hugepagestotal, false),
        ("HugePages_Free", m.hugepagesfree, false),
        ("HugePages_Rsvd", m.hugepagesrsvd, false),
        ("HugePages_Surp", m.hugepagessurp, false),
        ("Hugepagesize", m.hugepagesize, true),
        ("Hugetlb", huge.hugetlb_kib(), true),
        ("DirectMap4k", m.directmap4k, true),
        ("DirectMap2M", m.directmap2m, true),
        ("DirectMap1G", m.directmap1g, true),
    ];
    let mut out = String::new();
    for (name, value, kb) in rows {
        let label = format!("{name}:");
        if kb {
            let _ = writeln!(out, "{label:<16}{value:>8} kB");
        } else {
            let _ = writeln!(out, "{label:<16}{value:>8}");
        }
    }
    out
}

/// `/proc/net/fib_trie` of a node with one interface address (`address`, in a /24) and,
/// while it holds it, the VIP: both listed as `/32 host LOCAL` in the Local table, as
/// Linux lists local addresses.
pub fn fib_trie(address: std::net::IpAddr, vip: Option<std::net::IpAddr>) -> String {
    let net = match address {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}")
        }
        std::net::IpAddr::V6(_) => {
            return format!("Local:\n  +-- ::/0\n     |-- {address}\n        /128 host LOCAL\n");
        }
    };
    let mut local = vec![address.to_string()];
    local.extend(vip.map(|v| v.to_string()));
    let mut out = String::new();
    out.push_str("Main:\n  +-- 0.0.0.0/0 3 0 5\n");
    out.push_str("     |-- 0.0.0.0\n        /0 universe UNICAST\n");
    let _ = writeln!(out, "     |-- {net}.0\n        /24 link UNICAST");
    out.push_str("Local:\n  +-- 0.0.0.0/0 3 0 5\n");
    out.push_str("     |-- 127.0.0.0\n        /8 host LOCAL\n");
    for a in &local {
        let _ = writeln!(out, "     |-- {a}\n        /32 host LOCAL");
    }
    let _ = writeln!(out, "     |-- {net}.255\n        /32 link BROADCAST");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024;

    fn args(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    #[test]
    fn default_size_pool_from_kernel_args() {
        let h = hugepages(
            &args("default_hugepagesz=2M hugepagesz=2M hugepages=50000"),
            &[],
            512 * GIB,
        );
        assert_eq!(h.default_size_kib, 2048);
        assert_eq!(h.default_pages(), 50000);
        assert_eq!(h.hugetlb_kib(), 50000 * 2048);
    }

    #[test]
    fn gigantic_pages_and_sysctl() {
        // 1G default with 16 pages; a later sysctl resizes the default pool.
        let h = hugepages(
            &args("default_hugepagesz=1G hugepagesz=1G hugepages=16 hugepagesz=2M hugepages=512"),
            &[("vm.nr_hugepages".into(), "8".into())],
            64 * GIB,
        );
        assert_eq!(h.default_size_kib, GIB);
        assert_eq!(h.default_pages(), 8);
        assert_eq!(h.hugetlb_kib(), 8 * GIB + 512 * 2048);
    }

    #[test]
    fn hugepages_without_size_use_the_default_and_numa_counts_add_up() {
        let h = hugepages(&args("hugepages=0:100,1:28"), &[], 16 * GIB);
        assert_eq!((h.default_size_kib, h.default_pages()), (2048, 128));
        // Unsupported sizes are ignored, with the count that follows them.
        let h = hugepages(&args("hugepagesz=4M hugepages=10"), &[], 16 * GIB);
        assert_eq!(h.default_pages(), 0);
    }

    #[test]
    fn sysctl_alone_and_memory_cap() {
        let h = hugepages(&[], &[("vm.nr_hugepages".into(), "1024".into())], 16 * GIB);
        assert_eq!(h.default_pages(), 1024);
        // 4 GiB of memory cannot hold 50000 2M pages: the kernel stops at what fits.
        let h = hugepages(&args("hugepages=50000"), &[], 4 * GIB);
        assert_eq!(h.default_pages(), 4 * GIB / 10 * 9 / 2048);
    }

    #[test]
    fn meminfo_reflects_huge_pages() {
        let h = hugepages(&args("hugepages=1000"), &[], 16 * GIB);
        let m = meminfo(16 * GIB, &h);
        assert_eq!(m.memtotal, 16 * GIB);
        assert_eq!(
            (m.hugepagestotal, m.hugepagesfree, m.hugepagesize),
            (1000, 1000, 2048)
        );
        assert!(m.memfree < 16 * GIB - 1000 * 2048);
        let text = meminfo_text(&m, &h);
        assert!(text.starts_with("MemTotal:       16777216 kB\n"), "{text}");
        assert!(text.contains("\nHugePages_Total:    1000\n"), "{text}");
        assert!(text.contains("\nHugepagesize:       2048 kB\n"), "{text}");
        assert!(text.contains("\nHugetlb:         2048000 kB\n"), "{text}");
    }

    #[test]
    fn fib_trie_lists_the_vip_only_when_held() {
        let a: std::net::IpAddr = "127.0.9.11".parse().unwrap();
        let vip: std::net::IpAddr = "127.0.9.10".parse().unwrap();
        let held = fib_trie(a, Some(vip));
        assert!(
            held.contains("     |-- 127.0.9.10\n        /32 host LOCAL\n"),
            "{held}"
        );
        assert!(held.contains("     |-- 127.0.9.11\n        /32 host LOCAL\n"));
        assert!(!fib_trie(a, None).contains("127.0.9.10"));
    }

    #[test]
    fn cmdline_keeps_extra_args_in_order() {
        let c = cmdline("metal", &["hugepages=10".into(), "iommu=pt".into()]);
        assert!(c.contains("talos.platform=metal"));
        assert!(c.ends_with("hugepages=10 iommu=pt"));
    }
}
