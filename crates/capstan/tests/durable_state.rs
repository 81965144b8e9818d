//! The server's state on disk: a full disk answered with a Status and survived, acknowledged
//! writes surviving a (simulated) power loss, certificates renewed before they expire, a CA with
//! a missing half or a damaged database refused at start, and owner-only files whatever the
//! umask. These tests mount file systems and loop devices, so they run as root (as CI does).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use capstan_testkit::{http, Server};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A file system mounted by the test; lazily unmounted (it may still be busy) when dropped.
struct Mount {
    at: PathBuf,
    loop_device: Option<String>,
}

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).expect("mount point");
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
                at.to_str().expect("path"),
            ],
        );
        Mount {
            at: at.to_owned(),
            loop_device: None,
        }
    }

    /// Mounts the ext4 image `image` at `at` through a loop device.
    fn ext4_image(image: &Path, at: &Path) -> Self {
        std::fs::create_dir_all(at).expect("mount point");
        let device = run(
            "losetup",
            &["--find", "--show", image.to_str().expect("path")],
        );
        let mount = Mount {
            at: at.to_owned(),
            loop_device: Some(device.clone()),
        };
        run(
            "mount",
            &["-t", "ext4", &device, at.to_str().expect("path")],
        );
        mount
    }

    fn unmount(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        if let Some(device) = self.loop_device.take() {
            let _ = Command::new("losetup").args(["-d", &device]).status();
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn available_bytes(path: &Path) -> u64 {
    run(
        "df",
        &["--output=avail", "-B1", path.to_str().expect("path")],
    )
    .lines()
    .last()
    .and_then(|l| l.trim().parse().ok())
    .expect("df output")
}

fn create_configmap(s: &Server, name: &str, value: &str) -> (u16, Value) {
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"v": value}});
    http(
        s,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(body.to_string().as_bytes()),
        "application/json",
        true,
    )
}

fn configmap_names(s: &Server) -> BTreeSet<String> {
    let (code, list) = http(
        s,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        None,
        "application/json",
        true,
    );
    assert_eq!(code, 200, "{list}");
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_full_disk_fails_writes_with_a_status_and_writes_resume_once_space_is_freed() {
    let (mut s, _mount) = Server::start_prepared(BIN, &[], |data| Mount::tmpfs(data, "32m"));
    // Leave about 2 MiB: enough for a few of the 100 kB objects below, not for all of them.
    let filler = s.data_dir().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 1 << 20];
        while available_bytes(&s.data_dir()) > 3 << 20 {
            f.write_all(&chunk).expect("filling");
        }
        f.sync_all().expect("sync");
    }
    let value = "x".repeat(100_000);
    let mut acked = Vec::new();
    let mut refusal = None;
    for i in 0..200 {
        let name = format!("fill-{i}");
        match create_configmap(&s, &name, &value) {
            (201, _) => acked.push(name),
            other => {
                refusal = Some(other);
                break;
            }
        }
    }
    let (code, status) = refusal.expect("writes should fail once the disk is full");
    assert!(!acked.is_empty(), "some creates fit before the disk filled");
    assert_eq!(code, 500, "{status}");
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["code"], 500, "{status}");
    assert_eq!(status["reason"], "InternalError", "{status}");
    let message = status["message"].as_str().expect("message");
    assert!(message.contains("storage is full"), "{message}");

    // Still up, and reads work while writes cannot.
    let names = configmap_names(&s);
    for name in &acked {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    s.ok(&["get", "configmap", &acked[0]]);

    std::fs::remove_file(&filler).expect("freeing space");
    match create_configmap(&s, "after-space-returned", &value) {
        (201, _) => acked.push("after-space-returned".into()),
        (code, body) => panic!("the first write after space returned failed: {code} {body}"),
    }

    s.restart();
    let names = configmap_names(&s);
    let lost: Vec<_> = acked.iter().filter(|n| !names.contains(*n)).collect();
    assert!(lost.is_empty(), "acknowledged creates lost: {lost:?}");
    assert!(
        s.log().contains("writes succeed again"),
        "the recovery is logged:\n{}",
        s.log()
    );
}

/// Power loss, as closely as this machine allows. The kernel here has no device-mapper (no
/// dm-flakey, no dm snapshots), so the data dir is an ext4 file system on a loop device whose
/// backing file stands in for the disk. At the moment of the "power cut" the server is frozen
/// (SIGSTOP) right after its last acknowledged write and the backing file is copied: the copy
/// holds exactly what the file system had handed to the block device, and nothing of what was
/// still only in the page cache (written but not yet written back). The server is then killed,
/// the copy is mounted (ext4 replays its journal, as after a real crash) and the server started
/// on it: every create answered 201 must be there.
///
/// What this proves: an acknowledged write had reached the block device (was fsynced) before it
/// was acknowledged, so losing the page cache loses none of them. Run with the server's
/// benchmark-only switch that turns the per-commit fsync off, the same procedure loses
/// acknowledged writes (see the ignored test below). What it cannot prove: that the device
/// itself honours flushes (a disk's volatile write cache, reordered or torn sectors), nor a
/// crash in the middle of the kernel's own I/O; the page-cache writeback that happens to run
/// during the test only adds data, so it can hide a missing fsync but never fake a loss.
#[test]
fn acknowledged_creates_survive_a_simulated_power_loss() {
    let lost = power_loss_run(&[]);
    assert!(
        lost.0.is_empty(),
        "{} of {} acknowledged creates were lost after the power cut: {:?}",
        lost.0.len(),
        lost.1,
        lost.0
    );
}

/// Shows that the power-loss test can fail: without an fsync per commit, acknowledged writes
/// are lost. On demand (it depends on the kernel not writing back the page cache by itself
/// within the test's second, which holds with the default 30 s dirty expiry).
#[test]
#[ignore]
fn without_an_fsync_per_commit_the_power_loss_test_loses_writes() {
    let (lost, acked) = power_loss_run(&["--unsafe-no-fsync-per-commit"]);
    assert!(
        !lost.is_empty(),
        "none of {acked} acknowledged creates was lost without fsync: the test would not notice a missing fsync"
    );
}

/// Runs the procedure of [`acknowledged_creates_survive_a_simulated_power_loss`]; returns the
/// acknowledged creates that are missing afterwards and how many were acknowledged.
fn power_loss_run(extra: &[&str]) -> (Vec<String>, usize) {
    let images = tempfile::tempdir().expect("tempdir");
    let disk = images.path().join("disk.img");
    let after_cut = images.path().join("after-cut.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(96 << 20))
        .expect("image");
    run("mkfs.ext4", &["-q", "-F", disk.to_str().expect("path")]);
    let (mut s, mut mount) =
        Server::start_prepared(BIN, extra, |data| Mount::ext4_image(&disk, data));
    // Let the start-up's own writes reach the disk, so that what is judged is the creates.
    run("sync", &[]);

    let mut acked = Vec::new();
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let name = format!("before-cut-{i}");
        let (code, body) = create_configmap(&s, &name, "acknowledged");
        assert_eq!(code, 201, "{body}");
        acked.push(name);
        i += 1;
    }
    // The power cut: nothing more may reach the disk from the server, then take the disk as
    // it is.
    let pid = s.pid().expect("running").to_string();
    run("kill", &["-STOP", &pid]);
    std::fs::copy(&disk, &after_cut).expect("copying the disk");
    s.kill9();
    mount.unmount();

    let _after = Mount::ext4_image(&after_cut, &s.data_dir());
    s.start_again();
    let names = configmap_names(&s);
    let lost = acked
        .iter()
        .filter(|n| !names.contains(*n))
        .cloned()
        .collect::<Vec<_>>();
    eprintln!(
        "power cut after {} acknowledged creates (server flags {extra:?}): {} lost",
        acked.len(),
        lost.len()
    );
    s.kill9();
    (lost, acked.len())
}

/// The CA's subject, as the server makes it (crates/apiserver/src/pki.rs).
fn ca_issuer(ca_key_pem: &str) -> rcgen::Issuer<'static, rcgen::KeyPair> {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "capstan-server-ca");
    p.distinguished_name = dn;
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    rcgen::Issuer::new(p, rcgen::KeyPair::from_pem(ca_key_pem).expect("ca key"))
}

/// The certificate the server presents on its port, PEM.
fn served_certificate(s: &Server, dir: &Path) -> PathBuf {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{} -servername localhost </dev/null 2>/dev/null | openssl x509",
            s.port
        ))
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("served.pem");
    std::fs::write(&path, &out.stdout).expect("write");
    path
}

/// Whether the certificate at `path` is still valid `days` from now.
fn valid_in(path: &Path, days: u64) -> bool {
    Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-checkend",
            &(days * 86400).to_string(),
            "-in",
        ])
        .arg(path)
        .status()
        .expect("openssl")
        .success()
}

#[test]
fn a_serving_certificate_close_to_expiry_is_renewed_at_start_by_the_same_ca() {
    let mut s = Server::start(BIN);
    s.stop();
    let tls = s.data_dir().join("server/tls");
    let ca_before = std::fs::read_to_string(tls.join("ca.crt")).expect("ca.crt");
    // A serving certificate from the same CA for the same names, expiring in 30 days.
    let sans = std::fs::read_to_string(tls.join("serving.sans")).expect("sans");
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    for san in sans.lines() {
        p.subject_alt_names.push(match san.parse() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => rcgen::SanType::DnsName(san.try_into().expect("dns name")),
        });
    }
    let now = std::time::SystemTime::now();
    p.not_before = (now - Duration::from_secs(3600)).into();
    p.not_after = (now + Duration::from_secs(30 * 86400)).into();
    let key = rcgen::KeyPair::generate().expect("key");
    let issuer = ca_issuer(&std::fs::read_to_string(tls.join("ca.key")).expect("ca.key"));
    let short = p.signed_by(&key, &issuer).expect("sign");
    std::fs::write(tls.join("serving.crt"), short.pem()).expect("write");
    std::fs::write(tls.join("serving.key"), key.serialize_pem()).expect("write");
    let scratch = tempfile::tempdir().expect("tmp");
    let short_path = scratch.path().join("short.pem");
    std::fs::write(&short_path, short.pem()).expect("write");
    assert!(
        !valid_in(&short_path, 90),
        "the planted certificate expires within 90 days"
    );

    s.start_again();
    let served = served_certificate(&s, scratch.path());
    assert!(
        valid_in(&served, 300),
        "the served certificate was renewed for about a year"
    );
    assert_eq!(
        std::fs::read_to_string(tls.join("ca.crt")).expect("ca.crt"),
        ca_before,
        "the CA is kept"
    );
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(tls.join("ca.crt"))
        .arg(&served)
        .output()
        .expect("openssl verify");
    assert!(
        verify.status.success(),
        "the renewed certificate is signed by the same CA: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert!(
        s.log().contains("renewing the serving certificate"),
        "{}",
        s.log()
    );
}

/// Runs `capstan server` on `data_dir` expecting it to refuse to start; returns its output.
fn refused_start(data_dir: &Path) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let logs = tempfile::tempdir().expect("tmp");
    let log_path = logs.path().join("out");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = Command::new(BIN)
        .args(["server", "--disable-agent", "--bind-address", "127.0.0.1"])
        .arg("--https-listen-port")
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the server started instead of refusing:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log_path).expect("log");
    assert!(
        !status.success(),
        "the server must exit with an error: {text}"
    );
    assert!(!text.contains("panicked"), "no panic: {text}");
    text
}

#[test]
fn a_ca_certificate_without_its_key_refuses_to_start_naming_the_file() {
    let mut s = Server::start(BIN);
    s.stop();
    let ca_key = s.data_dir().join("server/tls/ca.key");
    std::fs::remove_file(&ca_key).expect("remove ca.key");
    let out = refused_start(&s.data_dir());
    assert!(
        out.contains(&format!("{} is missing", ca_key.display())),
        "{out}"
    );
    assert!(!ca_key.exists(), "no new CA was made");
}

#[test]
fn a_damaged_database_refuses_to_start_naming_the_file() {
    let mut s = Server::start(BIN);
    for i in 0..20 {
        s.ok(&[
            "create",
            "configmap",
            &format!("c{i}"),
            "--from-literal=a=b",
        ]);
    }
    s.stop();
    let db = s.data_dir().join("server/db/state.db");
    // Fold the WAL into the database file first, so that the damage is not masked by it.
    rusqlite::Connection::open(&db)
        .and_then(|c| c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())))
        .expect("checkpoint");
    // Keep the header page, damage every page after it, as a failing disk would.
    let mut bytes = std::fs::read(&db).expect("read");
    assert!(bytes.len() > 3 * 4096, "the database spans pages");
    for b in &mut bytes[4096..] {
        *b = 0x5a;
    }
    std::fs::write(&db, &bytes).expect("write");
    let out = refused_start(&s.data_dir());
    assert!(out.contains(db.to_str().expect("path")), "{out}");
    assert!(out.contains("integrity check failed"), "{out}");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn under_umask_000_the_data_dir_database_keys_tokens_and_kubeconfig_are_owner_only() {
    let scripts = tempfile::tempdir().expect("tmp");
    let wrapper = scripts.path().join("capstan-umask-000");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\numask 000\nexec {BIN} \"$@\"\n"),
    )
    .expect("wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut s = Server::start(wrapper.to_str().expect("path"));
    s.ok(&["create", "configmap", "c", "--from-literal=a=b"]);
    let data = s.data_dir();
    let dirs = ["", "server", "server/db", "server/tls", "server/cred"];
    let files = [
        "server/db/state.db",
        "server/db/state.db-wal",
        "server/db/state.db-shm",
        "server/tls/ca.key",
        "server/tls/serving.key",
        "server/token",
        "server/node-token",
        "server/cred/admin.token",
        "kubeconfig.yaml",
    ];
    let check = |when: &str| {
        for d in dirs {
            assert_eq!(mode(&data.join(d)), 0o700, "{when}: {d}/");
        }
        for f in files {
            assert_eq!(mode(&data.join(f)), 0o600, "{when}: {f}");
        }
    };
    check("created");
    // Modes widened by hand or by an older build are tightened at the next start.
    s.stop();
    for d in dirs {
        std::fs::set_permissions(data.join(d), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    for f in files.iter().filter(|f| data.join(f).exists()) {
        std::fs::set_permissions(data.join(f), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
    s.start_again();
    check("restarted");
}
