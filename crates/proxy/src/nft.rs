//! Talking to netfilter: [`Netfilter`] is the small trait the proxier programs through, and
//! [`NftCommand`] the real one, Debian's `nft` fed one script per call on stdin (one atomic
//! transaction), optionally inside a named network namespace (tests and benchmarks).

use std::io::Write;
use std::process::{Command, Stdio};

use crate::ruleset::Existing;

/// Errors from `nft`. All are retryable: the next sync rebuilds the table from scratch.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nft rejected the transaction: {0}")]
    Rejected(String),
    #[error("nft's listing of table {table} is not JSON it understands: {reason}")]
    Listing { table: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the proxier needs from netfilter.
pub trait Netfilter: Send + Sync {
    /// Applies `script` as one transaction.
    fn apply(&self, script: &str) -> Result<()>;
    /// The names in table `ip <table>`, or None when there is no such table.
    fn existing(&self, table: &str) -> Result<Option<Existing>>;
    /// Deletes table `ip <table>`; false when there was none.
    fn delete_table(&self, table: &str) -> Result<bool>;
    /// Whether table `ip <table>` exists (cheap: table names only).
    fn table_exists(&self, table: &str) -> Result<bool>;
    /// Deletes conntrack entries matching `args` (conntrack -D syntax); the number deleted.
    fn conntrack_delete(&self, args: &[String]) -> Result<usize>;
}

/// `nft` and `conntrack` on this host, or in network namespace `netns`.
#[derive(Clone, Debug, Default)]
pub struct NftCommand {
    pub netns: Option<String>,
}

impl NftCommand {
    fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        }
    }

    fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<std::process::Output> {
        let spawn = |source| Error::Spawn {
            program: program.to_string(),
            source,
        };
        let mut child = self
            .command(program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).map_err(spawn)?;
        }
        child.wait_with_output().map_err(spawn)
    }
}

/// The first lines of nft's complaint (a failed 10,000-line script names its line).
fn short(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().take(6).collect();
    lines.join(" | ")
}

impl Netfilter for NftCommand {
    fn apply(&self, script: &str) -> Result<()> {
        let out = self.run("nft", &["-f", "-"], Some(script))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Rejected(short(&out.stderr)))
        }
    }

    fn existing(&self, table: &str) -> Result<Option<Existing>> {
        let out = self.run("nft", &["-j", "list", "table", "ip", table], None)?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("No such file or directory") {
                return Ok(None);
            }
            return Err(Error::Rejected(short(&out.stderr)));
        }
        parse_existing(table, &out.stdout).map(Some)
    }

    fn delete_table(&self, table: &str) -> Result<bool> {
        let out = self.run("nft", &["delete", "table", "ip", table], None)?;
        if out.status.success() {
            return Ok(true);
        }
        if String::from_utf8_lossy(&out.stderr).contains("No such file or directory") {
            return Ok(false);
        }
        Err(Error::Rejected(short(&out.stderr)))
    }

    fn table_exists(&self, table: &str) -> Result<bool> {
        let out = self.run("nft", &["list", "tables", "ip"], None)?;
        if !out.status.success() {
            return Err(Error::Rejected(short(&out.stderr)));
        }
        let want = format!("table ip {table}");
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == want))
    }

    fn conntrack_delete(&self, args: &[String]) -> Result<usize> {
        let mut all: Vec<&str> = vec!["-D"];
        all.extend(args.iter().map(String::as_str));
        let out = self.run("conntrack", &all, None)?;
        // conntrack exits 1 when nothing matched; it reports the count on stderr.
        let err = String::from_utf8_lossy(&out.stderr);
        let deleted = err
            .lines()
            .find_map(|l| {
                l.split("flow entries have been deleted")
                    .next()
                    .filter(|_| l.contains("flow entries"))
                    .and_then(|n| n.rsplit(' ').find(|w| !w.is_empty())?.parse().ok())
            })
            .unwrap_or(0);
        Ok(deleted)
    }
}

/// Chain, set and map names from `nft -j list table ip <table>`.
pub fn parse_existing(table: &str, json: &[u8]) -> Result<Existing> {
    let bad = |reason: String| Error::Listing {
        table: table.to_string(),
        reason,
    };
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    let items = v
        .get("nftables")
        .and_then(|n| n.as_array())
        .ok_or_else(|| bad("no \"nftables\" array".into()))?;
    let mut out = Existing::default();
    for item in items {
        let name = |kind: &str| {
            item.get(kind)
                .and_then(|o| o.get("name"))
                .and_then(|n| n.as_str())
                .map(str::to_string)
        };
        if let Some(n) = name("chain") {
            out.chains.insert(n);
        } else if let Some(n) = name("set") {
            out.sets.insert(n);
        } else if let Some(n) = name("map") {
            out.maps.insert(n);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_listing_gives_chain_set_and_map_names() {
        let json = br#"{"nftables":[{"metainfo":{"json_schema_version":1}},
            {"table":{"family":"ip","name":"t","handle":1}},
            {"map":{"family":"ip","name":"service-ips","table":"t","type":["ipv4_addr"],"map":"verdict"}},
            {"set":{"family":"ip","name":"aff60-x","table":"t","type":"ipv4_addr"}},
            {"chain":{"family":"ip","table":"t","name":"services","handle":2}},
            {"rule":{"family":"ip","table":"t","chain":"services","expr":[]}}]}"#;
        let e = parse_existing("t", json).expect("parses");
        assert_eq!(e.chains.into_iter().collect::<Vec<_>>(), vec!["services"]);
        assert_eq!(e.sets.into_iter().collect::<Vec<_>>(), vec!["aff60-x"]);
        assert_eq!(e.maps.into_iter().collect::<Vec<_>>(), vec!["service-ips"]);
        assert!(parse_existing("t", b"{}").is_err());
    }
}
