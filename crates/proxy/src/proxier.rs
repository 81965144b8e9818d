//! [`Proxier`]: the sync engine. It keeps the fragment last programmed for every Service and,
//! given the Services that changed, applies only their difference in one nft transaction.
//! The first sync (and the one after a failure) adopts the table instead: whatever is there
//! is compared with what is wanted and replaced in one transaction, never deleted first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::fragment::{Fragment, Frontend};
use crate::metrics::Metrics;
use crate::nft::{self, Netfilter};
use crate::ruleset::{self, Script};

/// What one sync did.
#[derive(Debug, Default)]
pub struct Synced {
    /// Statements applied (0: nothing changed, nft was not called).
    pub changes: usize,
    /// True for an adoption (full) sync.
    pub full: bool,
    /// `conntrack -D` argument lists for UDP flows whose endpoint went away.
    pub stale_udp: Vec<Vec<String>>,
}

pub struct Proxier {
    table: String,
    nf: Arc<dyn Netfilter>,
    programmed: HashMap<String, Fragment>,
    adopted: bool,
    metrics: Metrics,
}

impl Proxier {
    pub fn new(table: &str, nf: Arc<dyn Netfilter>, metrics: Metrics) -> Self {
        Self {
            table: table.to_string(),
            nf,
            programmed: HashMap::new(),
            adopted: false,
            metrics,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// True until a full sync succeeded (at start, and after a failed transaction): the caller
    /// must then pass every Service to [`Proxier::sync_all`].
    pub fn needs_full_sync(&self) -> bool {
        !self.adopted
    }

    /// Takes over the table with exactly `all` (Service key → fragment).
    pub fn sync_all(&mut self, all: HashMap<String, Fragment>) -> nft::Result<Synced> {
        let started = Instant::now();
        let existing = self.nf.existing(&self.table)?.unwrap_or_default();
        let (script, changes) = ruleset::adopt(&self.table, &existing, all.values());
        let res = self.nf.apply(&script);
        self.finish(started, &res, changes);
        res?;
        self.programmed = all;
        self.programmed.retain(|_, f| !f.is_empty());
        self.adopted = true;
        self.update_gauges();
        Ok(Synced {
            changes,
            full: true,
            stale_udp: Vec::new(),
        })
    }

    /// Applies the difference for the Services in `changed` (an empty fragment: the Service
    /// is gone or has nothing to program).
    pub fn sync_changed(&mut self, changed: Vec<(String, Fragment)>) -> nft::Result<Synced> {
        let started = Instant::now();
        let empty = Fragment::default();
        let mut script = Script::default();
        let mut stale_udp = Vec::new();
        for (key, new) in &changed {
            let old = self.programmed.get(key).unwrap_or(&empty);
            ruleset::diff(&self.table, old, new, &mut script);
            stale_udp.extend(stale_udp_entries(old, new));
        }
        if script.is_empty() {
            return Ok(Synced::default());
        }
        let changes = script.changes;
        let res = self.nf.apply(&script.render(&self.table, ""));
        self.finish(started, &res, changes);
        if let Err(e) = res {
            // What the kernel holds is no longer known for sure: adopt it again next time.
            self.adopted = false;
            return Err(e);
        }
        for (key, new) in changed {
            if new.is_empty() {
                self.programmed.remove(&key);
            } else {
                self.programmed.insert(key, new);
            }
        }
        self.update_gauges();
        Ok(Synced {
            changes,
            full: false,
            stale_udp,
        })
    }

    /// Forgets what the table holds (it was changed behind our back): the next sync adopts it.
    pub fn invalidate(&mut self) {
        self.adopted = false;
    }

    /// Deletes the table (clean stop).
    pub fn remove_table(&mut self) -> nft::Result<bool> {
        self.programmed.clear();
        self.adopted = false;
        self.nf.delete_table(&self.table)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn finish(&self, started: Instant, res: &nft::Result<()>, changes: usize) {
        self.metrics
            .sync_seconds
            .observe(started.elapsed().as_secs_f64());
        match res {
            Ok(()) => {
                self.metrics.syncs.inc();
                self.metrics.changes_applied.inc_by(changes as u64);
            }
            Err(_) => {
                self.metrics.sync_failures.inc();
            }
        }
    }

    fn update_gauges(&self) {
        self.metrics
            .services_programmed
            .set(self.programmed.len() as i64);
        self.metrics.rules_programmed.set(
            self.programmed
                .values()
                .map(Fragment::rule_count)
                .sum::<usize>() as i64,
        );
    }
}

/// `conntrack -D` arguments for flows `old` had and `new` lacks, and for frontends that just
/// got endpoints (entries created while they had none hold packets that went nowhere).
fn stale_udp_entries(old: &Fragment, new: &Fragment) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for flow in old.udp_flows.difference(&new.udp_flows) {
        let mut args = frontend_args(&flow.frontend);
        // The reply side of a DNATed flow comes from the endpoint.
        args.extend([
            "--reply-src".to_string(),
            flow.endpoint.to_string(),
            "--reply-port-src".to_string(),
            flow.endpoint_port.to_string(),
        ]);
        out.push(args);
    }
    for f in new.udp_served.difference(&old.udp_served) {
        out.push(frontend_args(f));
    }
    out
}

fn frontend_args(f: &Frontend) -> Vec<String> {
    let mut args = vec!["-p".to_string(), "udp".to_string()];
    match f {
        Frontend::Ip(ip, port) => args.extend([
            "--orig-dst".to_string(),
            ip.to_string(),
            "--orig-port-dst".to_string(),
            port.to_string(),
        ]),
        Frontend::NodePort(p) => args.extend(["--orig-port-dst".to_string(), p.to_string()]),
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragment::{MapName, UdpFlow};
    use crate::ruleset::Existing;
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Recorded {
        scripts: Mutex<Vec<String>>,
        fail: Mutex<bool>,
    }

    impl Netfilter for Recorded {
        fn apply(&self, script: &str) -> nft::Result<()> {
            if *self.fail.lock() {
                return Err(nft::Error::Rejected("no".into()));
            }
            self.scripts.lock().push(script.to_string());
            Ok(())
        }
        fn existing(&self, _: &str) -> nft::Result<Option<Existing>> {
            Ok(None)
        }
        fn delete_table(&self, _: &str) -> nft::Result<bool> {
            Ok(true)
        }
        fn table_exists(&self, _: &str) -> nft::Result<bool> {
            Ok(true)
        }
        fn conntrack_delete(&self, _: &[String]) -> nft::Result<usize> {
            Ok(1)
        }
    }

    fn frag(ip: &str) -> Fragment {
        let mut f = Fragment::default();
        f.chains
            .insert("svc-a".into(), vec![format!("goto ep-{ip}")]);
        f.elements.insert(
            (MapName::ServiceIps, "10.43.0.1 . udp . 53".into()),
            "goto svc-a".into(),
        );
        f.udp_flows.insert(UdpFlow {
            frontend: Frontend::Ip("10.43.0.1".parse().expect("ip"), 53),
            endpoint: ip.parse().expect("ip"),
            endpoint_port: 5353,
        });
        f
    }

    #[test]
    fn a_sync_writes_only_the_services_that_changed() {
        let nf = Arc::new(Recorded::default());
        let mut p = Proxier::new("t", nf.clone(), Metrics::default());
        assert!(p.needs_full_sync());
        let all: HashMap<String, Fragment> = [
            ("ns/a".to_string(), frag("10.1.0.1")),
            ("ns/b".to_string(), frag("10.1.0.2")),
        ]
        .into_iter()
        .collect();
        let s = p.sync_all(all).expect("full sync");
        assert!(s.full);
        assert!(!p.needs_full_sync());
        let s = p
            .sync_changed(vec![("ns/a".into(), frag("10.1.0.1"))])
            .expect("no-op");
        assert_eq!(s.changes, 0);
        assert_eq!(
            nf.scripts.lock().len(),
            1,
            "nothing changed: nft not called"
        );
        let s = p
            .sync_changed(vec![("ns/a".into(), frag("10.1.0.9"))])
            .expect("sync");
        assert_eq!(s.changes, 2, "one chain with one rule");
        assert_eq!(
            nf.scripts.lock()[1],
            "add chain ip t svc-a\nflush chain ip t svc-a\nadd rule ip t svc-a goto ep-10.1.0.9\n"
        );
        assert_eq!(
            s.stale_udp,
            vec![vec![
                "-p",
                "udp",
                "--orig-dst",
                "10.43.0.1",
                "--orig-port-dst",
                "53",
                "--reply-src",
                "10.1.0.1",
                "--reply-port-src",
                "5353"
            ]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()]
        );
    }

    #[test]
    fn a_failed_transaction_asks_for_a_full_sync() {
        let nf = Arc::new(Recorded::default());
        let mut p = Proxier::new("t", nf.clone(), Metrics::default());
        p.sync_all(HashMap::new()).expect("full sync");
        *nf.fail.lock() = true;
        assert!(p
            .sync_changed(vec![("ns/a".into(), frag("10.1.0.1"))])
            .is_err());
        assert!(p.needs_full_sync());
    }
}
