//! Translation of talhelper's network settings (`networkInterfaces` — Talos v1alpha1
//! `Device` — plus `nameservers`, `disableSearchDomain` and the hostname) into the network
//! documents of Talos 1.12 and later: ResolverConfig, HostnameConfig, LinkAliasConfig,
//! BondConfig, DHCPv4Config/DHCPv6Config, Layer2VIPConfig, LinkConfig, VLANConfig,
//! WireguardConfig and BridgeConfig, in talhelper's document order.
//!
//! Semantics follow talhelper's translator (`pkg/talos/networkconfig.go`): a device chosen by
//! selector gets a LinkAliasConfig with a CEL `glob(…)` expression and an automatic name
//! (`ethSelN`, `bondN`, `brN`, `wgN`) when it has no interface name; bond member selectors
//! become aliases `<bond>-m<i>`; plain addresses get /32 or /128; a default route has no
//! destination. Two deliberate differences, both fixes of known talhelper bugs: a VLAN's
//! link is named `<parent>.<vlanId>` (talhelper names every VLAN after its parent, producing
//! duplicate documents), and a parent interface that carries VLANs still gets its own
//! LinkConfig when it has an MTU, addresses or routes (talhelper drops them).

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;
use kforge_spec::model::{Device, DeviceSelector, Route, Vip};
use kforge_yaml::{Mapping, Value};

fn doc(kind: &str) -> Mapping {
    let mut m = Mapping::new();
    m.insert("apiVersion".into(), Value::from("v1alpha1"));
    m.insert("kind".into(), Value::from(kind));
    m
}

fn named(kind: &str, name: &str) -> Mapping {
    let mut m = doc(kind);
    m.insert("name".into(), Value::from(name));
    m
}

/// ResolverConfig, when nameservers or the search-domain switch are set.
pub fn resolver(nameservers: &[String], disable_search_domain: bool) -> Option<Value> {
    if nameservers.is_empty() && !disable_search_domain {
        return None;
    }
    let mut m = doc("ResolverConfig");
    if !nameservers.is_empty() {
        let ns = nameservers
            .iter()
            .map(|n| {
                let mut a = Mapping::new();
                a.insert("address".into(), Value::from(n.as_str()));
                Value::Object(a)
            })
            .collect();
        m.insert("nameservers".into(), Value::Array(ns));
    }
    let mut sd = Mapping::new();
    sd.insert("disableDefault".into(), Value::Bool(disable_search_domain));
    m.insert("searchDomains".into(), Value::Object(sd));
    Some(Value::Object(m))
}

/// HostnameConfig: a static hostname (`auto: off`), or `auto: stable` when none is set.
pub fn hostname(name: Option<&str>) -> Value {
    let mut m = doc("HostnameConfig");
    match name {
        Some(h) => {
            m.insert("auto".into(), Value::from("off"));
            m.insert("hostname".into(), Value::from(h));
        }
        None => {
            m.insert("auto".into(), Value::from("stable"));
        }
    }
    Value::Object(m)
}

/// The CEL expression selecting a link like a v1alpha1 device selector.
pub fn selector_expression(s: &DeviceSelector) -> Option<String> {
    let mut c = Vec::new();
    let q = |v: &str| serde_json::to_string(v).unwrap_or_default();
    if let Some(v) = s.hardware_addr.as_deref().filter(|v| !v.is_empty()) {
        c.push(format!("glob({}, mac(link.hardware_addr))", q(v)));
    }
    if let Some(v) = s.permanent_addr.as_deref().filter(|v| !v.is_empty()) {
        c.push(format!("glob({}, mac(link.permanent_addr))", q(v)));
    }
    if let Some(v) = s.bus_path.as_deref().filter(|v| !v.is_empty()) {
        c.push(format!("glob({}, link.bus_path)", q(v)));
    }
    if let Some(v) = s.driver.as_deref().filter(|v| !v.is_empty()) {
        c.push(format!("glob({}, link.driver)", q(v)));
    }
    if let Some(v) = s.pci_id.as_deref().filter(|v| !v.is_empty()) {
        c.push(format!("glob({}, link.pciid)", q(v)));
    }
    match s.physical {
        Some(true) => c.push("link.type == 1".into()),
        Some(false) => c.push("link.type != 1".into()),
        None => {}
    }
    (!c.is_empty()).then(|| c.join(" && "))
}

fn alias(name: &str, expr: String) -> Value {
    let mut m = named("LinkAliasConfig", name);
    let mut sel = Mapping::new();
    sel.insert("match".into(), Value::from(expr));
    m.insert("selector".into(), Value::Object(sel));
    Value::Object(m)
}

fn address(a: &str) -> Option<Value> {
    let net = a
        .parse::<IpNet>()
        .ok()
        .or_else(|| a.parse::<IpAddr>().ok().map(IpNet::from))?;
    let mut m = Mapping::new();
    m.insert("address".into(), Value::from(net.to_string()));
    Some(Value::Object(m))
}

fn route(r: &Route, omit_default_destination: bool) -> Option<Value> {
    let net: IpNet = r.network.as_deref()?.parse().ok()?;
    let mut m = Mapping::new();
    let default = net.prefix_len() == 0 && net.addr().is_unspecified();
    if !(default && omit_default_destination) {
        m.insert("destination".into(), Value::from(net.to_string()));
    }
    if let Some(g) = r.gateway.as_deref().filter(|g| g.parse::<IpAddr>().is_ok()) {
        m.insert("gateway".into(), Value::from(g));
    }
    if let Some(s) = r.source.as_deref().filter(|s| s.parse::<IpAddr>().is_ok()) {
        m.insert("source".into(), Value::from(s));
    }
    if let Some(metric) = r.metric.filter(|m| *m > 0) {
        m.insert("metric".into(), Value::from(metric));
    }
    if let Some(mtu) = r.mtu.filter(|m| *m > 0) {
        m.insert("mtu".into(), Value::from(mtu));
    }
    Some(Value::Object(m))
}

/// Adds `mtu`, `addresses` and `routes` (the common link fields) from a device.
fn common_link(
    m: &mut Mapping,
    mtu: Option<u32>,
    addresses: &[String],
    routes: &[Route],
    omit_default: bool,
) {
    if let Some(mtu) = mtu.filter(|m| *m > 0) {
        m.insert("mtu".into(), Value::from(mtu));
    }
    let addrs: Vec<Value> = addresses.iter().filter_map(|a| address(a)).collect();
    if !addrs.is_empty() {
        m.insert("addresses".into(), Value::Array(addrs));
    }
    let rts: Vec<Value> = routes
        .iter()
        .filter_map(|r| route(r, omit_default))
        .collect();
    if !rts.is_empty() {
        m.insert("routes".into(), Value::Array(rts));
    }
}

fn has_common(d: &Device) -> bool {
    d.mtu.is_some_and(|m| m > 0)
        || !d.addresses.as_deref().unwrap_or_default().is_empty()
        || !d.routes.as_deref().unwrap_or_default().is_empty()
}

fn vip(name_link: &str, v: &Vip) -> Option<Value> {
    let ip = v.ip.as_deref().filter(|i| !i.is_empty())?;
    let mut m = named("Layer2VIPConfig", ip);
    m.insert("link".into(), Value::from(name_link));
    Some(Value::Object(m))
}

fn dhcp(kind: &str, link: &str, metric: Option<u32>) -> Value {
    let mut m = named(kind, link);
    if let Some(metric) = metric.filter(|m| *m > 0) {
        m.insert("routeMetric".into(), Value::from(metric));
    }
    Value::Object(m)
}

/// The link documents for a node's `networkInterfaces`.
pub fn links(devices: &[Device]) -> Vec<Value> {
    // Give selector-only devices their names first, as talhelper does.
    let mut used: HashSet<String> = devices.iter().filter_map(|d| d.interface.clone()).collect();
    let mut counters = [0usize; 4];
    let mut named_devices: Vec<(String, &Device)> = Vec::new();
    let mut aliases = Vec::new();
    for d in devices {
        let name = match (&d.interface, &d.device_selector) {
            (Some(i), _) => i.clone(),
            (None, Some(_)) => {
                let (prefix, idx) = if d.bond.is_some() {
                    ("bond", 0)
                } else if d.bridge.is_some() {
                    ("br", 1)
                } else if d.wireguard.is_some() {
                    ("wg", 2)
                } else {
                    ("ethSel", 3)
                };
                loop {
                    let candidate = format!("{prefix}{}", counters[idx]);
                    counters[idx] += 1;
                    if used.insert(candidate.clone()) {
                        break candidate;
                    }
                }
            }
            (None, None) => continue,
        };
        if let Some(expr) = d.device_selector.as_ref().and_then(selector_expression) {
            aliases.push(alias(&name, expr));
        }
        named_devices.push((name, d));
    }

    let mut member_aliases = Vec::new();
    let mut bonds = Vec::new();
    let mut dhcps = Vec::new();
    let mut vips = Vec::new();
    let mut link_docs = Vec::new();
    let mut vlans = Vec::new();
    let mut wireguards = Vec::new();
    let mut bridges = Vec::new();

    for (name, d) in &named_devices {
        let addresses = d.addresses.as_deref().unwrap_or_default();
        let routes = d.routes.as_deref().unwrap_or_default();
        if let Some(b) = &d.bond {
            let mut m = named("BondConfig", name);
            let mut links: Vec<Value> = b
                .interfaces
                .iter()
                .flatten()
                .cloned()
                .map(Value::from)
                .collect();
            for (i, sel) in b.device_selectors.iter().flatten().enumerate() {
                let member = format!("{name}-m{i}");
                if let Some(expr) = selector_expression(sel) {
                    member_aliases.push(alias(&member, expr));
                }
                links.push(Value::from(member));
            }
            m.insert("links".into(), Value::Array(links));
            let s = |m: &mut Mapping, k: &str, v: &Option<String>| {
                if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                    m.insert(k.into(), Value::from(v));
                }
            };
            let n = |m: &mut Mapping, k: &str, v: Option<u64>| {
                if let Some(v) = v.filter(|v| *v > 0) {
                    m.insert(k.into(), Value::from(v));
                }
            };
            s(&mut m, "bondMode", &b.mode);
            n(&mut m, "miimon", b.miimon.map(u64::from));
            n(&mut m, "updelay", b.updelay.map(u64::from));
            n(&mut m, "downdelay", b.downdelay.map(u64::from));
            if let Some(uc) = b.use_carrier {
                m.insert("useCarrier".into(), Value::Bool(uc));
            }
            s(&mut m, "xmitHashPolicy", &b.xmit_hash_policy);
            n(&mut m, "arpInterval", b.arp_interval.map(u64::from));
            if let Some(t) = b.arp_ip_target.as_ref().filter(|t| !t.is_empty()) {
                m.insert(
                    "arpIpTargets".into(),
                    Value::Array(t.iter().cloned().map(Value::from).collect()),
                );
            }
            s(&mut m, "arpValidate", &b.arp_validate);
            s(&mut m, "arpAllTargets", &b.arp_all_targets);
            s(&mut m, "lacpRate", &b.lacp_rate);
            s(&mut m, "failOverMac", &b.fail_over_mac);
            s(&mut m, "adSelect", &b.ad_select);
            n(&mut m, "adActorSysPrio", b.ad_actor_sys_prio.map(u64::from));
            n(&mut m, "adUserPortKey", b.ad_user_port_key.map(u64::from));
            s(&mut m, "primaryReselect", &b.primary_reselect);
            n(&mut m, "resendIGMP", b.resend_igmp.map(u64::from));
            n(&mut m, "minLinks", b.min_links.map(u64::from));
            n(&mut m, "lpInterval", b.lp_interval.map(u64::from));
            n(
                &mut m,
                "packetsPerSlave",
                b.packets_per_slave.map(u64::from),
            );
            n(&mut m, "numPeerNotif", b.num_peer_notif.map(u64::from));
            n(&mut m, "tlbLogicalLb", b.tlb_dynamic_lb.map(u64::from));
            n(
                &mut m,
                "allSlavesActive",
                b.all_slaves_active.map(u64::from),
            );
            n(&mut m, "peerNotifDelay", b.peer_notify_delay.map(u64::from));
            common_link(&mut m, d.mtu, addresses, routes, true);
            bonds.push(Value::Object(m));
        }
        if d.dhcp == Some(true) {
            let metric = d.dhcp_options.as_ref().and_then(|o| o.route_metric);
            if d.dhcp_options.as_ref().and_then(|o| o.ipv4) != Some(false) {
                dhcps.push(dhcp("DHCPv4Config", name, metric));
            }
            if d.dhcp_options.as_ref().and_then(|o| o.ipv6) == Some(true) {
                dhcps.push(dhcp("DHCPv6Config", name, metric));
            }
        }
        if let Some(v) = d.vip.as_ref().and_then(|v| vip(name, v)) {
            vips.push(v);
        }
        if let Some(wg) = &d.wireguard {
            let mut m = named("WireguardConfig", name);
            if let Some(k) = wg.private_key.as_deref().filter(|k| !k.is_empty()) {
                m.insert("privateKey".into(), Value::from(k));
            }
            if let Some(p) = wg.listen_port.filter(|p| *p > 0) {
                m.insert("listenPort".into(), Value::from(p));
            }
            if let Some(f) = wg.firewall_mark.filter(|f| *f > 0) {
                m.insert("firewallMark".into(), Value::from(f));
            }
            let peers: Vec<Value> = wg
                .peers
                .iter()
                .flatten()
                .map(|p| {
                    let mut pm = Mapping::new();
                    if let Some(k) = p.public_key.as_deref().filter(|k| !k.is_empty()) {
                        pm.insert("publicKey".into(), Value::from(k));
                    }
                    if let Some(e) = p.endpoint.as_deref().filter(|e| !e.is_empty()) {
                        pm.insert("endpoint".into(), Value::from(e));
                    }
                    if let Some(ka) = &p.persistent_keepalive_interval {
                        let s = ka.to_string();
                        // A bare number is seconds in the legacy field; documents take a duration.
                        let s = if s.chars().all(|c| c.is_ascii_digit()) {
                            format!("{s}s")
                        } else {
                            s
                        };
                        if s != "0s" {
                            pm.insert("persistentKeepaliveInterval".into(), Value::from(s));
                        }
                    }
                    let ips: Vec<Value> = p
                        .allowed_ips
                        .iter()
                        .flatten()
                        .filter(|a| a.parse::<IpNet>().is_ok())
                        .cloned()
                        .map(Value::from)
                        .collect();
                    if !ips.is_empty() {
                        pm.insert("allowedIPs".into(), Value::Array(ips));
                    }
                    Value::Object(pm)
                })
                .collect();
            if !peers.is_empty() {
                m.insert("peers".into(), Value::Array(peers));
            }
            common_link(&mut m, d.mtu, addresses, routes, true);
            wireguards.push(Value::Object(m));
        }
        if let Some(br) = &d.bridge {
            let mut m = named("BridgeConfig", name);
            m.insert(
                "links".into(),
                Value::Array(
                    br.interfaces
                        .iter()
                        .flatten()
                        .cloned()
                        .map(Value::from)
                        .collect(),
                ),
            );
            if let Some(en) = br.stp.as_ref().and_then(|s| s.enabled) {
                let mut stp = Mapping::new();
                stp.insert("enabled".into(), Value::Bool(en));
                m.insert("stp".into(), Value::Object(stp));
            }
            if let Some(vf) = br.vlan.as_ref().and_then(|v| v.vlan_filtering) {
                let mut v = Mapping::new();
                v.insert("filtering".into(), Value::Bool(vf));
                m.insert("vlan".into(), Value::Object(v));
            }
            common_link(&mut m, d.mtu, addresses, routes, true);
            bridges.push(Value::Object(m));
        }
        let special = d.bond.is_some() || d.wireguard.is_some() || d.bridge.is_some();
        if !special && has_common(d) {
            let mut m = named("LinkConfig", name);
            common_link(&mut m, d.mtu, addresses, routes, true);
            link_docs.push(Value::Object(m));
        }
        for v in d.vlans.iter().flatten() {
            let Some(id) = v.vlan_id.filter(|id| *id > 0) else {
                continue;
            };
            let vname = format!("{name}.{id}");
            let mut m = named("VLANConfig", &vname);
            m.insert("vlanID".into(), Value::from(id));
            m.insert("parent".into(), Value::from(name.as_str()));
            common_link(
                &mut m,
                v.mtu,
                v.addresses.as_deref().unwrap_or_default(),
                v.routes.as_deref().unwrap_or_default(),
                false,
            );
            vlans.push(Value::Object(m));
            if v.dhcp == Some(true) {
                dhcps.push(dhcp(
                    "DHCPv4Config",
                    &vname,
                    v.dhcp_options.as_ref().and_then(|o| o.route_metric),
                ));
            }
            if let Some(x) = v.vip.as_ref().and_then(|x| vip(&vname, x)) {
                vips.push(x);
            }
        }
    }

    let mut out = aliases;
    out.extend(member_aliases);
    out.extend(bonds);
    out.extend(dhcps);
    out.extend(vips);
    out.extend(link_docs);
    out.extend(vlans);
    out.extend(wireguards);
    out.extend(bridges);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(yaml: &str) -> Vec<Device> {
        let node = kforge_yaml::parse(yaml).unwrap();
        let (d, issues) =
            kforge_spec::decode::decode::<Vec<Device>>(&node, kforge_spec::Path::root());
        assert!(issues.is_empty(), "{issues:?}");
        d
    }

    fn kinds(docs: &[Value]) -> Vec<String> {
        docs.iter()
            .map(|d| {
                format!(
                    "{}:{}",
                    d["kind"].as_str().unwrap(),
                    d["name"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    #[test]
    fn talhelper_repo_example() {
        let d = devices(
            "- interface: bond0\n  bond:\n    mode: 802.3ad\n    deviceSelectors:\n      - hardwareAddr: \"00:50:56:*\"\n  addresses: [192.168.200.11/24]\n  mtu: 1500\n  routes:\n    - network: 0.0.0.0/0\n      gateway: 192.168.200.1\n- interface: wg0\n  wireguard:\n    privateKey: k\n    listenPort: 51111\n    peers:\n      - publicKey: p\n        endpoint: 192.168.1.3:1111\n        allowedIPs: [192.168.1.0/24]\n        persistentKeepaliveInterval: 10s\n- deviceSelector:\n    hardwareAddr: 00:30:93:12:31:78\n    driver: atlantic\n  addresses: [10.0.0.10/24]\n  mtu: 9000\n  routes:\n    - network: 0.0.0.0/0\n      gateway: 10.0.0.1\n",
        );
        let docs = links(&d);
        assert_eq!(
            kinds(&docs),
            [
                "LinkAliasConfig:ethSel0",
                "LinkAliasConfig:bond0-m0",
                "BondConfig:bond0",
                "LinkConfig:ethSel0",
                "WireguardConfig:wg0"
            ]
        );
        assert_eq!(
            docs[0]["selector"]["match"],
            "glob(\"00:30:93:12:31:78\", mac(link.hardware_addr)) && glob(\"atlantic\", link.driver)"
        );
        let bond = &docs[2];
        assert_eq!(bond["links"], serde_json::json!(["bond0-m0"]));
        assert_eq!(bond["bondMode"], "802.3ad");
        assert_eq!(
            bond["routes"],
            serde_json::json!([{"gateway": "192.168.200.1"}])
        );
        assert_eq!(
            bond["addresses"],
            serde_json::json!([{"address": "192.168.200.11/24"}])
        );
    }

    #[test]
    fn vlans_dhcp_vip_and_plain_addresses() {
        let d = devices(
            "- interface: eth0\n  mtu: 9000\n  dhcp: true\n  addresses: [10.0.1.11]\n  vip: {ip: 10.0.1.10}\n  vlans:\n    - vlanId: 10\n      mtu: 1500\n      addresses: [10.1.0.2/24]\n    - vlanId: 20\n      dhcp: true\n      vip: {ip: 10.2.0.1}\n",
        );
        let docs = links(&d);
        assert_eq!(
            kinds(&docs),
            [
                "DHCPv4Config:eth0",
                "DHCPv4Config:eth0.20",
                "Layer2VIPConfig:10.0.1.10",
                "Layer2VIPConfig:10.2.0.1",
                "LinkConfig:eth0",
                "VLANConfig:eth0.10",
                "VLANConfig:eth0.20"
            ]
        );
        assert_eq!(
            docs[4]["addresses"],
            serde_json::json!([{"address": "10.0.1.11/32"}])
        );
        assert_eq!(docs[5]["vlanID"], 10);
        assert_eq!(docs[5]["parent"], "eth0");
    }
}
