//! Debian's docker-registry on a loopback port, for tests whose pulls must really happen
//! (the examples name `nginx`, i.e. docker.io/library/nginx:latest with pull policy Always).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{eventually, free_port};

/// A registry on 127.0.0.1, stopped when dropped.
pub struct Registry {
    child: std::process::Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Self {
        Self::start_with_auth(None)
    }

    /// With `Some((user, password))`, pulls need those credentials (htpasswd, bcrypt).
    pub fn start_with_auth(auth: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let port = free_port();
        let cfg = dir.path().join("config.yml");
        let mut text = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("store").display()
        );
        if let Some((user, password)) = auth {
            let out = std::process::Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (Debian package apache2-utils)");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).expect("htpasswd file");
            text.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: capstan\n    path: {}\n",
                file.display()
            ));
        }
        std::fs::write(&cfg, text).expect("registry config");
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry)");
        eventually(Duration::from_secs(10), "the registry to listen", || {
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        Self { child, port, dir }
    }

    /// A registry holding the test nginx image as library/nginx:latest, with a registries.yaml
    /// (see [`Registry::agent_args`]) making it docker.io's mirror.
    pub fn docker_io_mirror_with_nginx() -> Self {
        let reg = Self::start();
        reg.push(
            &crate::agent::test_images().join("nginx.tar"),
            "library/nginx:latest",
        );
        std::fs::write(
            reg.registries_file(),
            format!(
                "mirrors:\n  docker.io:\n    endpoint:\n      - \"http://127.0.0.1:{}\"\n",
                reg.port
            ),
        )
        .expect("registries.yaml");
        reg
    }

    /// Where [`Registry::docker_io_mirror_with_nginx`] writes its registries.yaml.
    pub fn registries_file(&self) -> PathBuf {
        self.dir.path().join("registries.yaml")
    }

    /// The value of the node agent's `--private-registry` flag that makes this registry
    /// docker.io's mirror.
    pub fn registries_arg(&self) -> String {
        self.registries_file().to_string_lossy().into_owned()
    }

    /// Pushes a docker-archive tarball as `repo:tag` with skopeo.
    pub fn push(&self, tarball: &Path, reference: &str) {
        self.push_as(tarball, reference, None)
    }

    pub fn push_as(&self, tarball: &Path, reference: &str, creds: Option<&str>) {
        let mut cmd = std::process::Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        let st = cmd
            .arg(format!("docker-archive:{}", tarball.display()))
            .arg(format!("docker://127.0.0.1:{}/{reference}", self.port))
            .status()
            .expect("skopeo (Debian package skopeo)");
        assert!(st.success(), "skopeo copy failed");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
