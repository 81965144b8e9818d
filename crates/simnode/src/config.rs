//! What simulated nodes look like: their count and names, capacity, labels (templated per
//! node) and taints, parsed from the command line's `key=value` lists. Pure.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use capstan_api::net::Cidr;

use k8s_openapi::api::core::v1::Taint;

/// Errors in the simulated nodes' settings (a user's typo: not retryable).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("expected key=value, got {0:?}")]
    NotKeyValue(String),
    #[error("a taint is key[=value]:Effect with Effect NoSchedule, PreferNoSchedule or NoExecute, got {0:?}")]
    BadTaint(String),
    #[error("expected an IPv4 CIDR of /8 to /24 such as 10.64.0.0/10, got {0:?}")]
    BadCidr(String),
}

/// The default capacity of a simulated node (kwok's default node is as big).
pub const DEFAULT_CAPACITY: &[(&str, &str)] = &[
    ("cpu", "32"),
    ("memory", "256Gi"),
    ("pods", "110"),
    ("ephemeral-storage", "100Gi"),
];

/// Where simulated nodes take their /24 podCIDRs from when they have none: apart from the
/// 10.42.0.0/16 real nodes get, so simulated and real nodes can share a cluster.
pub const DEFAULT_POD_CIDR: &str = "10.64.0.0/10";

/// The simulated nodes' settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// How many nodes.
    pub count: usize,
    /// Names are the prefix and a zero-padded index: sim-0000, sim-0001...
    pub name_prefix: String,
    pub capacity: BTreeMap<String, String>,
    /// Label templates: `{index}` becomes the node's index and `{index%N}` the index modulo N
    /// (e.g. `topology.kubernetes.io/zone=zone-{index%3}`).
    pub labels: Vec<(String, String)>,
    pub taints: Vec<Taint>,
    /// Range of /24 podCIDRs for nodes the cluster gave none.
    pub pod_cidr: Cidr,
    /// How long a Lease is valid; it is renewed every quarter of it (upstream: 40 s, 10 s).
    pub lease_duration: Duration,
    /// How often a node's status is posted when nothing changes (upstream: 5 minutes).
    pub status_report_interval: Duration,
    /// How long a deleted pod takes to "stop" before it is removed.
    pub stop_delay: Duration,
    /// API requests in flight at once.
    pub concurrency: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            count: 0,
            name_prefix: "sim-".into(),
            capacity: DEFAULT_CAPACITY
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            labels: Vec::new(),
            taints: Vec::new(),
            pod_cidr: Cidr {
                base: u32::from(Ipv4Addr::new(10, 64, 0, 0)),
                len: 10,
            },
            lease_duration: Duration::from_secs(40),
            status_report_interval: Duration::from_secs(300),
            stop_delay: Duration::from_millis(500),
            concurrency: 32,
        }
    }
}

impl Config {
    /// The name of node `i`: the prefix and at least four digits.
    pub fn node_name(&self, i: usize) -> String {
        let width = self.count.saturating_sub(1).to_string().len().max(4);
        format!("{}{:0width$}", self.name_prefix, i)
    }

    /// Capacity entries `cpu=8,memory=16Gi` replace the defaults one by one.
    pub fn set_capacity(&mut self, items: &[String]) -> Result<(), Error> {
        for (k, v) in parse_pairs(items)? {
            self.capacity.insert(k, v);
        }
        Ok(())
    }

    pub fn set_labels(&mut self, items: &[String]) -> Result<(), Error> {
        self.labels = parse_pairs(items)?;
        Ok(())
    }

    pub fn set_taints(&mut self, items: &[String]) -> Result<(), Error> {
        self.taints = items
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| parse_taint(s))
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    /// The range simulated nodes' /24 podCIDRs come from: a /8 to a /24.
    pub fn set_pod_cidr(&mut self, cidr: &str) -> Result<(), Error> {
        self.pod_cidr =
            Cidr::parse_within(cidr, 8, 24).map_err(|_| Error::BadCidr(cidr.to_string()))?;
        Ok(())
    }

    /// The labels of node `i` with its templates filled in.
    pub fn labels_for(&self, i: usize) -> Vec<(String, String)> {
        self.labels
            .iter()
            .map(|(k, v)| (k.clone(), fill_template(v, i)))
            .collect()
    }
}

fn parse_pairs(items: &[String]) -> Result<Vec<(String, String)>, Error> {
    items
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| Error::NotKeyValue(s.clone()))?;
            if k.trim().is_empty() {
                return Err(Error::NotKeyValue(s.clone()));
            }
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// `key[=value]:Effect`, as `kubectl taint` writes them.
pub fn parse_taint(s: &str) -> Result<Taint, Error> {
    let bad = || Error::BadTaint(s.to_string());
    let (kv, effect) = s.rsplit_once(':').ok_or_else(bad)?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(bad());
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(bad());
    }
    Ok(Taint {
        key: key.to_string(),
        value,
        effect: effect.to_string(),
        time_added: None,
    })
}

/// Replaces `{index}` and `{index%N}` in `v`.
fn fill_template(v: &str, i: usize) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(start) = rest.find("{index") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let Some(end) = after.find('}') else {
            out.push_str(after);
            return out;
        };
        let inner = &after[1..end];
        let value = match inner
            .strip_prefix("index%")
            .and_then(|m| m.parse::<usize>().ok())
        {
            Some(m) if m > 0 => (i % m).to_string(),
            _ if inner == "index" => i.to_string(),
            _ => after[..=end].to_string(),
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_zero_padded_to_the_count() {
        let mut c = Config {
            count: 3,
            ..Default::default()
        };
        assert_eq!(c.node_name(2), "sim-0002");
        c.count = 20000;
        assert_eq!(c.node_name(7), "sim-00007");
    }

    #[test]
    fn label_templates_take_the_index_and_modulo() {
        let mut c = Config::default();
        c.set_labels(&[
            "topology.kubernetes.io/zone=zone-{index%3}".into(),
            "rack=r{index}".into(),
            "plain=x".into(),
        ])
        .expect("labels");
        assert_eq!(
            c.labels_for(4),
            vec![
                (
                    "topology.kubernetes.io/zone".to_string(),
                    "zone-1".to_string()
                ),
                ("rack".to_string(), "r4".to_string()),
                ("plain".to_string(), "x".to_string())
            ]
        );
        assert!(c.set_labels(&["novalue".into()]).is_err());
    }

    #[test]
    fn taints_parse_as_kubectl_writes_them() {
        let t = parse_taint("dedicated=gpu:NoSchedule").expect("taint");
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("dedicated", Some("gpu"), "NoSchedule")
        );
        let t = parse_taint("spot:PreferNoSchedule").expect("taint");
        assert_eq!((t.key.as_str(), t.value.as_deref()), ("spot", None));
        assert!(parse_taint("x=y:Sometimes").is_err());
        assert!(parse_taint("nocolon").is_err());
    }

    #[test]
    fn capacity_overrides_defaults_one_by_one() {
        let mut c = Config::default();
        c.set_capacity(&["cpu=4".into()]).expect("capacity");
        assert_eq!(c.capacity.get("cpu").map(String::as_str), Some("4"));
        assert_eq!(c.capacity.get("pods").map(String::as_str), Some("110"));
    }

    #[test]
    fn pod_cidrs_must_hold_whole_slash_24s() {
        let mut c = Config::default();
        assert!(c.set_pod_cidr("10.200.0.0/16").is_ok());
        assert!(c.set_pod_cidr("10.200.0.0/28").is_err());
        assert!(c.set_pod_cidr("nope").is_err());
    }
}
