//! The nft script of a sync: [`base`] (the table, its hooks and shared chains and maps),
//! [`diff`] (what turns one Service's old fragment into its new one) and [`adopt`] (what turns
//! whatever a previous run left in the table into the wanted state without deleting the
//! table). Every script is fed to `nft -f -` whole, so the kernel applies it as one
//! transaction: a packet sees the old rules or the new ones, never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::fragment::{Fragment, MapName};
use crate::rules::{MARK_MASQ_CHAIN, REJECT_CHAIN};

/// The packet mark bit that asks for masquerade (kube-proxy's 0x4000).
const MASQ_MARK: &str = "0x4000";

/// Chains of the table that no Service owns, with their declarations.
const BASE_CHAINS: [(&str, &str); 10] = [
    (
        "nat-prerouting",
        "{ type nat hook prerouting priority dstnat; policy accept; }",
    ),
    (
        "nat-output",
        "{ type nat hook output priority -100; policy accept; }",
    ),
    (
        "nat-postrouting",
        "{ type nat hook postrouting priority srcnat; policy accept; }",
    ),
    (
        "filter-input",
        "{ type filter hook input priority -110; policy accept; }",
    ),
    (
        "filter-forward",
        "{ type filter hook forward priority -110; policy accept; }",
    ),
    (
        "filter-output",
        "{ type filter hook output priority -110; policy accept; }",
    ),
    ("services", ""),
    ("masquerading", ""),
    (MARK_MASQ_CHAIN, ""),
    ("service-endpoints-check", ""),
];

/// Whether `name` is one of the table's own chains (including the reject chain).
pub fn is_base_chain(name: &str) -> bool {
    name == REJECT_CHAIN || BASE_CHAINS.iter().any(|(n, _)| *n == name)
}

fn base_rules() -> Vec<(&'static str, Vec<String>)> {
    let m = MASQ_MARK;
    vec![
        ("nat-prerouting", vec!["jump services".into()]),
        ("nat-output", vec!["jump services".into()]),
        ("nat-postrouting", vec!["jump masquerading".into()]),
        (
            "filter-input",
            vec!["ct state new jump service-endpoints-check".into()],
        ),
        (
            "filter-forward",
            vec!["ct state new jump service-endpoints-check".into()],
        ),
        (
            "filter-output",
            vec!["ct state new jump service-endpoints-check".into()],
        ),
        (
            "services",
            vec![
                format!(
                    "ip daddr . meta l4proto . th dport vmap @{}",
                    MapName::ServiceIps.as_str()
                ),
                // 127.0.0.0/8 is left alone: DNAT from loopback needs route_localnet.
                format!(
                    "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @{}",
                    MapName::ServiceNodePorts.as_str()
                ),
            ],
        ),
        (
            "masquerading",
            vec![
                format!("meta mark & {m} == 0 return"),
                format!("meta mark set meta mark ^ {m}"),
                "masquerade fully-random".into(),
            ],
        ),
        (
            MARK_MASQ_CHAIN,
            vec![format!("meta mark set meta mark | {m}")],
        ),
        (
            "service-endpoints-check",
            vec![
                format!(
                    "ip daddr . meta l4proto . th dport vmap @{}",
                    MapName::NoEndpointServices.as_str()
                ),
                format!(
                    "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @{}",
                    MapName::NoEndpointNodePorts.as_str()
                ),
            ],
        ),
        (
            REJECT_CHAIN,
            vec![
                "meta l4proto tcp reject with tcp reset".into(),
                "reject".into(),
            ],
        ),
    ]
}

fn map_type(m: MapName) -> &'static str {
    match m {
        MapName::ServiceIps | MapName::NoEndpointServices => {
            "ipv4_addr . inet_proto . inet_service : verdict"
        }
        MapName::ServiceNodePorts | MapName::NoEndpointNodePorts => {
            "inet_proto . inet_service : verdict"
        }
    }
}

/// Declares the table and its shared objects (idempotent: `add` keeps what exists) and
/// rewrites the shared chains' rules.
pub fn base(table: &str, out: &mut String) {
    let _ = writeln!(out, "add table ip {table}");
    for (name, decl) in BASE_CHAINS {
        let _ = writeln!(out, "add chain ip {table} {name} {decl}");
    }
    let _ = writeln!(out, "add chain ip {table} {REJECT_CHAIN}");
    for m in MapName::ALL {
        let _ = writeln!(
            out,
            "add map ip {table} {} {{ type {}; }}",
            m.as_str(),
            map_type(m)
        );
    }
    for (chain, rules) in base_rules() {
        let _ = writeln!(out, "flush chain ip {table} {chain}");
        for r in rules {
            let _ = writeln!(out, "add rule ip {table} {chain} {r}");
        }
    }
}

/// A script assembled in the order the kernel needs: references go before what they name
/// is deleted, and what they name exists before they are added.
#[derive(Default)]
pub struct Script {
    delete_elements: BTreeMap<MapName, Vec<String>>,
    flush_chains: Vec<String>,
    add_sets: Vec<String>,
    /// Every chain is declared before any rule is written: rules jump to one another.
    declare_chains: Vec<String>,
    write_chains: Vec<String>,
    add_elements: BTreeMap<MapName, Vec<String>>,
    delete_chains: Vec<String>,
    delete_sets: Vec<String>,
    /// Statements this script holds (for metrics and logs).
    pub changes: usize,
}

/// `add element` / `delete element` statements for `map`, 256 elements per statement.
fn write_elements(out: &mut String, verb: &str, table: &str, map: &str, elems: &[String]) {
    for chunk in elems.chunks(256) {
        let _ = writeln!(
            out,
            "{verb} element ip {table} {map} {{ {} }}",
            chunk.join(", ")
        );
    }
}

impl Script {
    pub fn is_empty(&self) -> bool {
        self.changes == 0
    }

    /// The text for `nft -f -`, table `table`, after `prefix` (e.g. [`base`]).
    pub fn render(&self, table: &str, prefix: &str) -> String {
        let mut out = String::with_capacity(prefix.len() + self.changes * 96);
        out.push_str(prefix);
        for (m, keys) in &self.delete_elements {
            write_elements(&mut out, "delete", table, m.as_str(), keys);
        }
        for c in &self.flush_chains {
            let _ = writeln!(out, "flush chain ip {table} {c}");
        }
        for s in &self.add_sets {
            out.push_str(s);
        }
        for c in &self.declare_chains {
            let _ = writeln!(out, "add chain ip {table} {c}");
        }
        for c in &self.write_chains {
            out.push_str(c);
        }
        for (m, elems) in &self.add_elements {
            write_elements(&mut out, "add", table, m.as_str(), elems);
        }
        for c in &self.delete_chains {
            let _ = writeln!(out, "delete chain ip {table} {c}");
        }
        for s in &self.delete_sets {
            let _ = writeln!(out, "delete set ip {table} {s}");
        }
        out
    }

    fn write_chain(&mut self, table: &str, name: &str, rules: &[String], existed: bool) {
        let mut s = String::new();
        self.declare_chains.push(name.to_string());
        if existed {
            let _ = writeln!(s, "flush chain ip {table} {name}");
        }
        for r in rules {
            let _ = writeln!(s, "add rule ip {table} {name} {r}");
        }
        self.write_chains.push(s);
        self.changes += 1 + rules.len();
    }

    fn add_set(&mut self, table: &str, name: &str, decl: &str) {
        self.add_sets
            .push(format!("add set ip {table} {name} {decl}\n"));
        self.changes += 1;
    }
}

/// Adds to `script` what turns `old` into `new` (one Service): only chains whose rules
/// changed are rewritten, only elements that changed are deleted or added.
pub fn diff(table: &str, old: &Fragment, new: &Fragment, script: &mut Script) {
    for (key, verdict) in &old.elements {
        if new.elements.get(key) != Some(verdict) {
            script
                .delete_elements
                .entry(key.0)
                .or_default()
                .push(key.1.clone());
            script.changes += 1;
        }
    }
    for (name, decl) in &new.sets {
        // A set's name carries its whole declaration (the timeout), so a known name is
        // an unchanged set.
        if !old.sets.contains_key(name) {
            script.add_set(table, name, decl);
        }
    }
    for (name, rules) in &new.chains {
        match old.chains.get(name) {
            Some(r) if r == rules => {}
            Some(_) => script.write_chain(table, name, rules, true),
            None => script.write_chain(table, name, rules, false),
        }
    }
    for (key, verdict) in &new.elements {
        if old.elements.get(key) != Some(verdict) {
            script
                .add_elements
                .entry(key.0)
                .or_default()
                .push(format!("{} : {verdict}", key.1));
            script.changes += 1;
        }
    }
    for name in old.chains.keys() {
        if !new.chains.contains_key(name) {
            script.flush_chains.push(name.clone());
            script.delete_chains.push(name.clone());
            script.changes += 1;
        }
    }
    for name in old.sets.keys() {
        if !new.sets.contains_key(name) {
            script.delete_sets.push(name.clone());
            script.changes += 1;
        }
    }
}

/// What a table holds, by name (from `nft -j list table`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Existing {
    pub chains: BTreeSet<String>,
    pub sets: BTreeSet<String>,
    pub maps: BTreeSet<String>,
}

/// The script that takes over a table a previous run left (or creates it): shared chains
/// rewritten, maps refilled, Service chains that are still wanted rewritten in place, the
/// rest deleted, all in one transaction. The table itself is never deleted, so established
/// connections (whose NAT lives in conntrack) and affinity sets that are still wanted survive.
pub fn adopt<'a>(
    table: &str,
    existing: &Existing,
    wanted: impl IntoIterator<Item = &'a Fragment>,
) -> (String, usize) {
    let mut out = String::new();
    base(table, &mut out);
    let mut script = Script::default();
    for m in MapName::ALL {
        if existing.maps.contains(m.as_str()) {
            let _ = writeln!(out, "flush map ip {table} {}", m.as_str());
        }
    }
    let mut wanted_chains = BTreeSet::new();
    let mut wanted_sets = BTreeSet::new();
    for f in wanted {
        for (name, rules) in &f.chains {
            wanted_chains.insert(name.clone());
            script.write_chain(table, name, rules, existing.chains.contains(name));
        }
        for (name, decl) in &f.sets {
            wanted_sets.insert(name.clone());
            if !existing.sets.contains(name) {
                script.add_set(table, name, decl);
            }
        }
        for (key, verdict) in &f.elements {
            script
                .add_elements
                .entry(key.0)
                .or_default()
                .push(format!("{} : {verdict}", key.1));
            script.changes += 1;
        }
    }
    for name in &existing.chains {
        if !is_base_chain(name) && !wanted_chains.contains(name) {
            // Flushed first (they may jump to one another), deleted after.
            script.flush_chains.push(name.clone());
            script.delete_chains.push(name.clone());
            script.changes += 1;
        }
    }
    for name in &existing.sets {
        if !wanted_sets.contains(name) {
            script.delete_sets.push(name.clone());
            script.changes += 1;
        }
    }
    let changes = script.changes;
    (script.render(table, &out), changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(chains: &[(&str, &[&str])], elems: &[(MapName, &str, &str)]) -> Fragment {
        let mut f = Fragment::default();
        for (c, rules) in chains {
            f.chains
                .insert(c.to_string(), rules.iter().map(|r| r.to_string()).collect());
        }
        for (m, k, v) in elems {
            f.elements.insert((*m, k.to_string()), v.to_string());
        }
        f
    }

    #[test]
    fn an_unchanged_fragment_produces_no_statement() {
        let f = frag(
            &[("svc-a", &["r1"])],
            &[(MapName::ServiceIps, "k", "goto svc-a")],
        );
        let mut s = Script::default();
        diff("t", &f, &f, &mut s);
        assert!(s.is_empty());
        assert_eq!(s.render("t", ""), "");
    }

    #[test]
    fn a_changed_chain_is_flushed_and_rewritten_and_only_it() {
        let old = frag(&[("svc-a", &["r1"]), ("ep-a", &["d1"])], &[]);
        let new = frag(&[("svc-a", &["r2"]), ("ep-a", &["d1"])], &[]);
        let mut s = Script::default();
        diff("t", &old, &new, &mut s);
        assert_eq!(
            s.render("t", ""),
            "add chain ip t svc-a\nflush chain ip t svc-a\nadd rule ip t svc-a r2\n"
        );
    }

    #[test]
    fn a_removed_service_deletes_elements_before_its_chains_and_sets() {
        let mut old = frag(
            &[("svc-a", &["goto ep-a"]), ("ep-a", &["d1"])],
            &[(MapName::ServiceIps, "1.2.3.4 . tcp . 80", "goto svc-a")],
        );
        old.sets
            .insert("aff-a".into(), "{ type ipv4_addr; }".into());
        let mut s = Script::default();
        diff("t", &old, &Fragment::default(), &mut s);
        assert_eq!(
            s.render("t", ""),
            "delete element ip t service-ips { 1.2.3.4 . tcp . 80 }\n\
             flush chain ip t ep-a\nflush chain ip t svc-a\n\
             delete chain ip t ep-a\ndelete chain ip t svc-a\n\
             delete set ip t aff-a\n"
        );
        assert_eq!(s.changes, 4);
    }

    #[test]
    fn a_changed_verdict_replaces_the_element() {
        let old = frag(&[], &[(MapName::ServiceIps, "k", "goto reject-chain")]);
        let new = frag(&[], &[(MapName::ServiceIps, "k", "goto svc-a")]);
        let mut s = Script::default();
        diff("t", &old, &new, &mut s);
        assert_eq!(
            s.render("t", ""),
            "delete element ip t service-ips { k }\nadd element ip t service-ips { k : goto svc-a }\n"
        );
    }

    #[test]
    fn adopting_keeps_the_table_rewrites_wanted_chains_and_drops_stale_ones() {
        let existing = Existing {
            chains: ["services", "svc-old", "svc-a"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            sets: ["aff-old"].iter().map(|s| s.to_string()).collect(),
            maps: ["service-ips"].iter().map(|s| s.to_string()).collect(),
        };
        let f = frag(
            &[("svc-a", &["r"])],
            &[(MapName::ServiceIps, "k", "goto svc-a")],
        );
        let (text, _) = adopt("t", &existing, [&f]);
        assert!(!text.contains("delete table"));
        assert!(text.contains("flush map ip t service-ips\n"));
        assert!(text.contains("flush chain ip t svc-a\nadd rule ip t svc-a r\n"));
        assert!(text.contains("delete chain ip t svc-old\n"));
        assert!(!text.contains("delete chain ip t services"));
        assert!(text.contains("delete set ip t aff-old\n"));
        let flush = text.find("flush chain ip t svc-old").unwrap_or(usize::MAX);
        let delete = text.find("delete chain ip t svc-old").unwrap_or(0);
        assert!(flush < delete);
    }
}
