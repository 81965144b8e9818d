//! pods/exec and pods/attach end to end: the real kubectl (WebSocket v5), the Python client and
//! kube-rs (v4) through the API server and the node agent to containerd's stream server, with
//! real containers. Also `kubectl cp` both ways, a terminal driven in a pty, attach, `run -i
//! --rm`, upstream's refusals, and clients that drop mid-stream.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is the test failing

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use capstan_testkit::agent::BUSYBOX;
use capstan_testkit::{eventually, Server};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");

/// A busybox pod that idles, Running.
fn idle_pod(s: &Server, name: &str, extra: &str) {
    s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n{extra}  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sleep, '3600']\n"
    ));
    s.wait_pod_field(name, "{.status.phase}", "Running", Duration::from_secs(90));
}

/// Open sessions on the API server (`apiserver_stream_sessions`).
fn api_sessions(s: &Server) -> i64 {
    let m = s.ok(&["get", "--raw", "/metrics"]);
    m.lines()
        .find_map(|l| l.strip_prefix("apiserver_stream_sessions "))
        .and_then(|v| v.trim().parse().ok())
        .expect("apiserver_stream_sessions in /metrics")
}

/// Open sessions on the node agent (`capstan_kubelet_stream_sessions` on its port).
fn agent_sessions(s: &Server) -> i64 {
    let opts = s.agent.clone().expect("agent");
    let dir = tempfile::tempdir().expect("tmp");
    let client = capstan_apiserver::node_certs::NodeIssuer::load(&s.data_dir().join("server/tls"))
        .expect("cluster CA")
        .apiserver_kubelet_client()
        .expect("client certificate");
    let cert = capstan_testkit::write_file(dir.path(), "client.crt", &client.cert_pem);
    let key = capstan_testkit::write_file(dir.path(), "client.key", &client.key_pem);
    let out = Command::new("curl")
        .args(["-sSk", "--max-time", "15", "--cert"])
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .arg(format!("https://127.0.0.1:{}/metrics", opts.kubelet_port))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("capstan_kubelet_stream_sessions "))
        .and_then(|v| v.trim().parse().ok())
        .expect("capstan_kubelet_stream_sessions in the agent's /metrics")
}

fn python(script: &str, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tmp");
    let f = capstan_testkit::write_file(dir.path(), "t.py", script);
    Command::new("python3")
        .arg(f)
        .args(args)
        .output()
        .expect("python3")
}

#[test]
fn exec_carries_output_exit_codes_and_stdin_and_refuses_as_upstream() {
    let s = Server::start_with_agent(BIN, &[]);
    idle_pod(&s, "p", "");

    // stdout and stderr arrive apart.
    let out = s.kubectl(&[
        "exec",
        "p",
        "--",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-out\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("to-err"),
        "{out:?}"
    );
    // The exit code is kubectl's.
    let out = s.kubectl(&["exec", "p", "--", "sh", "-c", "exit 42"]);
    assert_eq!(out.status.code(), Some(42), "{out:?}");
    // stdin, closed at its end (v5), ends `cat`.
    assert_eq!(
        s.ok_stdin(&["exec", "-i", "p", "--", "cat"], "hi\n"),
        "hi\n"
    );

    // The agent's streaming endpoints admit only the API server's client certificate.
    let kubelet_port = s.agent.clone().expect("agent").kubelet_port;
    let direct = Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["-H", "Connection: Upgrade", "-H", "Upgrade: websocket"])
        .args([
            "-H",
            "Sec-WebSocket-Version: 13",
            "-H",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ])
        .args(["-H", "Sec-WebSocket-Protocol: v5.channel.k8s.io"])
        .arg(format!(
            "https://127.0.0.1:{kubelet_port}/exec/default/p/main?command=true&stdout=1"
        ))
        .output()
        .expect("curl");
    assert!(!direct.status.success(), "{direct:?}");
    assert_ne!(String::from_utf8_lossy(&direct.stdout), "101", "{direct:?}");

    // Upstream's refusals.
    let e = s.fails(&["exec", "nope", "--", "true"]);
    assert!(e.contains(r#"pods "nope" not found"#), "{e}");
    let e = s.fails(&["exec", "p", "-c", "nope", "--", "true"]);
    assert!(e.contains("container nope is not valid for pod p"), "{e}");
    let (code, body) = capstan_testkit::http(
        &s,
        "GET",
        "/api/v1/namespaces/default/pods/p/exec?stdout=1",
        None,
        "application/json",
        true,
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("at least one command"),
        "{body}"
    );
    s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: done\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: ['true']\n"
    ));
    s.wait_pod_field(
        "done",
        "{.status.phase}",
        "Succeeded",
        Duration::from_secs(90),
    );
    let e = s.fails(&["exec", "done", "--", "true"]);
    assert!(
        e.contains("cannot exec into a container in a completed pod; current phase is Succeeded"),
        "{e}"
    );
    let (code, body) = capstan_testkit::http(
        &s,
        "GET",
        "/api/v1/namespaces/default/pods/done/exec?command=true&stdout=1",
        None,
        "application/json",
        true,
    );
    assert_eq!(code, 400, "{body}");

    // Older clients' SPDY/3.1 (kubectl with WebSockets turned off): relayed to the runtime.
    let spdy = |args: &[&str], input: &str| {
        let mut c = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(s.kubeconfig())
            .args(args)
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        c.stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("stdin");
        c.wait_with_output().expect("kubectl")
    };
    let out = spdy(
        &["exec", "-i", "p", "--", "sh", "-c", "cat; exit 42"],
        "over-spdy\n",
    );
    assert_eq!(out.status.code(), Some(42), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over-spdy\n");

    // The Python client (WebSocket v4).
    let py = python(
        r#"
import sys
from kubernetes import client, config
from kubernetes.stream import stream
config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
out = stream(v1.connect_get_namespaced_pod_exec, "p", "default",
             command=["sh", "-c", "echo from-python"], stderr=True, stdin=False, stdout=True, tty=False)
print("OUT:" + out.strip())
"#,
        &[s.kubeconfig().to_str().unwrap()],
    );
    assert!(
        String::from_utf8_lossy(&py.stdout).contains("OUT:from-python"),
        "{py:?}"
    );

    // kube-rs (WebSocket v4), with stdin and an exit status.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        use k8s_openapi::api::core::v1::Pod;
        use kube::api::{Api, AttachParams};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let client = capstan_testkit::kube_client(s.kubeconfig()).await;
        let pods: Api<Pod> = Api::namespaced(client, "default");
        let mut p = pods
            .exec(
                "p",
                ["sh", "-c", "read x; echo got-$x; exit 7"],
                &AttachParams::default().stdin(true).stderr(false),
            )
            .await
            .expect("kube-rs exec");
        let mut stdin = p.stdin().expect("stdin");
        stdin.write_all(b"rust\n").await.expect("write");
        let mut stdout = p.stdout().expect("stdout");
        let mut got = String::new();
        let status = p.take_status().expect("status");
        stdout.read_to_string(&mut got).await.expect("read");
        assert_eq!(got, "got-rust\n");
        let status = status.await.expect("a status");
        assert_eq!(status.status.as_deref(), Some("Failure"), "{status:?}");
        assert_eq!(
            status.reason.as_deref(),
            Some("NonZeroExitCode"),
            "{status:?}"
        );
    });

    // A client that drops mid-stream: the process's stdin ends (so `cat` exits) and no
    // session is left on the API server or the agent.
    let mut kubectl = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .args([
            "exec",
            "-i",
            "p",
            "--",
            "sh",
            "-c",
            "echo started; exec cat",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl");
    let mut held_stdin = kubectl.stdin.take().expect("stdin");
    held_stdin.write_all(b"x\n").expect("stdin");
    eventually(Duration::from_secs(30), "one open session", || {
        (api_sessions(&s) == 1 && agent_sessions(&s) == 1).then_some(())
    });
    let ps = s.ok(&["exec", "p", "--", "ps"]);
    assert!(ps.contains("cat"), "{ps}");
    kubectl.kill().expect("kill kubectl");
    let _ = kubectl.wait();
    drop(held_stdin);
    eventually(Duration::from_secs(30), "no open session", || {
        (api_sessions(&s) == 0 && agent_sessions(&s) == 0).then_some(())
    });
    eventually(Duration::from_secs(30), "cat ended with its stdin", || {
        let ps = s.ok(&["exec", "p", "--", "ps"]);
        (!ps.contains("cat")).then_some(())
    });
}

#[test]
fn cp_copies_a_directory_with_a_20_mb_file_into_a_pod_and_back() {
    let s = Server::start_with_agent(BIN, &[]);
    idle_pod(&s, "cp", "");
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    // 20 MB that does not compress to nothing: a xorshift sequence.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let big: Vec<u8> = (0..20 * 1024 * 1024 / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    std::fs::write(src.join("big.bin"), &big).expect("write");
    std::fs::write(src.join("sub/small.txt"), "small\n").expect("write");
    let src_arg = src.to_str().unwrap().to_string();
    s.ok(&["cp", &src_arg, "cp:/tmp/copied"]);
    let size = s.ok(&[
        "exec",
        "cp",
        "--",
        "stat",
        "-c",
        "%s",
        "/tmp/copied/big.bin",
    ]);
    assert_eq!(size.trim(), (20 * 1024 * 1024).to_string());
    let back = dir.path().join("back");
    s.ok(&["cp", "cp:/tmp/copied", back.to_str().unwrap()]);
    assert!(
        std::fs::read(back.join("big.bin")).expect("big.bin back") == big,
        "big.bin differs after the round trip"
    );
    assert_eq!(
        std::fs::read_to_string(back.join("sub/small.txt")).expect("small back"),
        "small\n"
    );
}

/// Drives `kubectl` in a pseudo-terminal: waits for a shell prompt, checks `stty size`, resizes
/// the terminal until the shell sees the new size, exits with 3.
const PTY_DRIVER: &str = r#"
import fcntl, os, pty, select, struct, sys, termios, time
args = sys.argv[1:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(args[0], args)
def size(rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
size(24, 80)
seen = b""
def wait_for(needle, secs, poke=None):
    global seen
    deadline = time.time() + secs
    next_poke = 0
    while time.time() < deadline:
        if poke and time.time() >= next_poke:
            os.write(fd, poke)
            next_poke = time.time() + 1
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if needle in seen:
                seen = b""
                return
    sys.stderr.write("did not see %r; output: %r\n" % (needle, seen))
    sys.exit(90)
wait_for(b"24 80", 60, b"stty size\n")
size(40, 120)
wait_for(b"40 120", 30, b"stty size\n")
os.write(fd, b"exit 3\n")
_, st = os.waitpid(pid, 0)
print("EXIT:%d" % os.waitstatus_to_exitcode(st))
"#;

#[test]
fn a_terminal_resizes_and_attach_and_run_carry_stdin() {
    let s = Server::start_with_agent(BIN, &[]);
    idle_pod(&s, "tty", "");
    let kc = s.kubeconfig().to_str().unwrap().to_string();
    let out = python(
        PTY_DRIVER,
        &[
            "kubectl",
            "--kubeconfig",
            &kc,
            "exec",
            "-it",
            "tty",
            "--",
            "sh",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("EXIT:3"),
        "{out:?}"
    );
    // run -it --rm: attach with a terminal, resized the same way; the pod is deleted after.
    let image = format!("--image={BUSYBOX}");
    let out = python(
        PTY_DRIVER,
        &[
            "kubectl",
            "--kubeconfig",
            &kc,
            "run",
            "shell",
            "-it",
            "--rm",
            "--restart=Never",
            &image,
            "--",
            "sh",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("EXIT:"),
        "{out:?}"
    );
    eventually(Duration::from_secs(60), "the shell pod deleted", || {
        (!s.kubectl(&["get", "pod", "shell"]).status.success()).then_some(())
    });

    // attach to a container reading stdin (stdinOnce: the end of our stdin is its end).
    s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: reader\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    stdin: true\n    stdinOnce: true\n    command: [sh, -c, 'while read l; do echo got-$l; done']\n"
    ));
    s.wait_pod_field(
        "reader",
        "{.status.phase}",
        "Running",
        Duration::from_secs(90),
    );
    let out = s.kubectl_stdin(&["attach", "-i", "reader"], "one\ntwo\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("got-one") && stdout.contains("got-two"),
        "{out:?}"
    );

    // run -i --rm: the pod runs with our stdin, prints, and is deleted.
    let out = s.kubectl_stdin(
        &[
            "run",
            "once",
            "-i",
            "--rm",
            "--restart=Never",
            &format!("--image={BUSYBOX}"),
            "--",
            "sh",
            "-c",
            "read x; echo ran-$x",
        ],
        "ok\n",
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ran-ok"),
        "{out:?}"
    );
    eventually(Duration::from_secs(60), "the run pod deleted", || {
        (!s.kubectl(&["get", "pod", "once"]).status.success()).then_some(())
    });
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// GET / on 127.0.0.1:`port`; the body when the answer is 200.
fn http_get_local(port: u16) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines()
        .next()
        .is_some_and(|l| l.contains(" 200"))
        .then(|| out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

#[test]
fn port_forward_carries_two_ports_and_a_refused_port_gets_upstreams_error() {
    use capstan_testkit::agent::HTTPD;
    let s = Server::start_with_agent(BIN, &[]);
    s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pf\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: a\n    image: {HTTPD}\n  - name: b\n    image: {HTTPD}\n    env:\n    - name: PORT\n      value: '8080'\n"
    ));
    s.wait_pod_field("pf", "{.status.phase}", "Running", Duration::from_secs(90));
    let (p80, p8080, p81) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("tmp");
    let err_path = dir.path().join("stderr");
    let mut kubectl = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .args([
            "port-forward",
            "pod/pf",
            &format!("{p80}:80"),
            &format!("{p8080}:8080"),
            &format!("{p81}:81"),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("kubectl port-forward");
    for port in [p80, p8080] {
        let mut body = None;
        capstan_testkit::poll(Duration::from_secs(30), || {
            body = http_get_local(port);
            body.is_some()
        });
        let body = body.unwrap_or_else(|| {
            let log = s.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "no HTTP through the forward of {port}; kubectl: {}\nserver log (newest first):\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default(),
                tail.join("\n")
            )
        });
        assert!(body.starts_with("hello from pf"), "{body}");
    }
    // Several requests at once on one session.
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let port = if i % 2 == 0 { p80 } else { p8080 };
            std::thread::spawn(move || http_get_local(port))
        })
        .collect();
    for t in threads {
        assert!(t.join().expect("thread").is_some());
    }
    // The Python client's port-forward (WebSocket v4, served by the runtime itself).
    let py = python(
        r#"
import select, sys
from kubernetes import client, config
from kubernetes.stream import portforward
config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
pf = portforward(v1.connect_get_namespaced_pod_portforward, "pf", "default", ports="80,8080")
for port in (80, 8080):
    s = pf.socket(port)
    s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    data = b""
    while b"hello from" not in data or not data.endswith(b"\n"):
        r, _, _ = select.select([s], [], [], 30)
        if not r:
            break
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    print("PORT%d:%s" % (port, data.split(b"\r\n\r\n", 1)[-1].decode().strip()))
    s.close()
"#,
        &[s.kubeconfig().to_str().unwrap()],
    );
    let py_out = String::from_utf8_lossy(&py.stdout);
    assert!(
        py_out.contains("PORT80:hello from pf") && py_out.contains("PORT8080:hello from pf"),
        "{py:?}"
    );

    // kube-rs's port-forward (WebSocket v4).
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        use k8s_openapi::api::core::v1::Pod;
        use kube::api::Api;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let client = capstan_testkit::kube_client(s.kubeconfig()).await;
        let pods: Api<Pod> = Api::namespaced(client, "default");
        let mut pf = pods
            .portforward("pf", &[8080])
            .await
            .expect("kube-rs portforward");
        let mut stream = pf.take_stream(8080).expect("stream");
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("hello from pf") {
            let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
                .await
                .expect("an answer within 30s")
                .expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            String::from_utf8_lossy(&got).contains("hello from pf"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        drop(stream);
        pf.abort();
    });

    // Nobody listens on 81: the runtime's error reaches kubectl.
    let _ = std::net::TcpStream::connect(("127.0.0.1", p81)).map(|mut c| {
        let _ = c.write_all(b"GET / HTTP/1.0\r\n\r\n");
        let _ = std::io::Read::read(&mut c, &mut [0u8; 16]);
    });
    let err = eventually(Duration::from_secs(30), "the refused port's error", || {
        let e = std::fs::read_to_string(&err_path).unwrap_or_default();
        e.contains("connection refused").then_some(e)
    });
    assert!(err.contains("an error occurred forwarding"), "{err}");
    assert!(err.contains("-> 81"), "{err}");
    // client-go 1.32 closes the whole connection after any port's error (portforward.go:
    // handleConnection), so kubectl exits 1; the session ends on the server side too.
    let status = kubectl.wait().expect("kubectl exit");
    assert_eq!(status.code(), Some(1), "{err}");
    eventually(Duration::from_secs(30), "no open session", || {
        (api_sessions(&s) == 0 && agent_sessions(&s) == 0).then_some(())
    });
    // A new session forwards again at once; this one over plain SPDY/3.1, as older clients.
    let mut again = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .args(["port-forward", "pod/pf", &format!("{p80}:80")])
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl port-forward");
    let body = eventually(
        Duration::from_secs(30),
        "HTTP through a new forward",
        || http_get_local(p80),
    );
    assert!(body.starts_with("hello from pf"), "{body}");
    let _ = again.kill();
    let _ = again.wait();
}

#[test]
fn proxy_subresources_reach_pods_services_and_nodes_with_upgrades() {
    use capstan_testkit::agent::HTTPD;
    let s = Server::start_with_agent(BIN, &[]);
    let node = s.node_name();
    s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {HTTPD}\n    ports:\n    - name: http\n      containerPort: 80\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n  - name: http\n    port: 8000\n    targetPort: 80\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: empty\nspec:\n  selector:\n    app: nobody\n  ports:\n  - port: 80\n"
    ));
    s.wait_pod_field("web", "{.status.phase}", "Running", Duration::from_secs(90));
    let body = s.ok(&["get", "--raw", "/api/v1/namespaces/default/pods/web/proxy/"]);
    assert!(body.starts_with("hello from web"), "{body}");
    let body = s.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/web:http/proxy/",
    ]);
    assert!(body.starts_with("hello from web"), "{body}");
    let body = eventually(Duration::from_secs(30), "the Service's endpoint", || {
        let out = s.kubectl(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/services/web:8000/proxy/",
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert!(body.starts_with("hello from web"), "{body}");
    let body = s.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{node}/proxy/healthz"),
    ]);
    assert_eq!(body, "ok");
    let e = s.fails(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/empty/proxy/",
    ]);
    assert!(
        e.contains(r#"no endpoints available for service "empty""#),
        "{e}"
    );
    let e = s.fails(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/nope/proxy/",
    ]);
    assert!(e.contains(r#"services "nope" not found"#), "{e}");

    // kubectl proxy in front of the API server.
    let port = free_port();
    let mut proxy = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .args(["proxy", &format!("--port={port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl proxy");
    let body = eventually(
        Duration::from_secs(30),
        "HTTP through kubectl proxy",
        || {
            use std::io::Read;
            let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            c.write_all(
            b"GET /api/v1/namespaces/default/services/web:8000/proxy/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
        )
        .ok()?;
            let mut out = String::new();
            c.read_to_string(&mut out).ok()?;
            out.contains(" 200 ").then_some(out)
        },
    );
    assert!(body.contains("hello from web"), "{body}");
    let _ = proxy.kill();
    let _ = proxy.wait();

    // A WebSocket upgrade through nodes/proxy: the kubelet's own exec endpoint.
    let py = python(
        r#"
import ssl, sys, websocket
url, token, ca = sys.argv[1], sys.argv[2], sys.argv[3]
ws = websocket.create_connection(url, header=["Authorization: Bearer " + token],
                                 subprotocols=["v4.channel.k8s.io"], sslopt={"ca_certs": ca})
out = b""
while True:
    try:
        op, data = ws.recv_data()
    except Exception:
        break
    if op == websocket.ABNF.OPCODE_CLOSE:
        break
    out += data
print(repr(out))
"#,
        &[
            &format!(
                "{}/api/v1/nodes/{node}/proxy/exec/default/web/main?command=echo&command=via-node-proxy&stdout=1",
                s.url().replace("https://", "wss://")
            ),
            &s.admin_token(),
            s.ca_file().to_str().unwrap(),
        ],
    );
    let py_out = String::from_utf8_lossy(&py.stdout);
    assert!(py_out.contains("\\x01via-node-proxy"), "{py:?}");
    assert!(py_out.contains("Success"), "{py:?}");
}

#[test]
fn debug_adds_an_ephemeral_container_that_sees_the_targets_processes() {
    let s = Server::start_with_agent(BIN, &[]);
    idle_pod(&s, "dbg", "");
    let out = s.kubectl_stdin(
        &[
            "debug",
            "-i",
            "dbg",
            &format!("--image={BUSYBOX}"),
            "--target=main",
            "--",
            "sh",
            "-c",
            "read x; ps",
        ],
        "go\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("Defaulting debug container name to debugger-"),
        "{out:?}"
    );
    let pod = s.get_json(&["pod", "dbg"]);
    let eph = &pod["spec"]["ephemeralContainers"][0];
    assert_eq!(eph["targetContainerName"], "main", "{pod}");
    let name = eph["name"].as_str().expect("a debugger name").to_string();
    let st = eventually(
        Duration::from_secs(30),
        "the ephemeral container's status",
        || {
            let pod = s.get_json(&["pod", "dbg"]);
            let st = pod["status"]["ephemeralContainerStatuses"][0].clone();
            (st["name"] == name.as_str() && st["state"]["terminated"].is_object()).then_some(st)
        },
    );
    assert_eq!(st["state"]["terminated"]["exitCode"], 0, "{st}");
    // What it printed (read back from its log: a process this short may end before an
    // attached client has read its output, with containerd as upstream): the target's `sleep`
    // as PID 1, so it shares the target's process namespace.
    let logs = s.ok(&["logs", "dbg", "-c", &name]);
    assert!(
        logs.lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("sleep 3600")),
        "{logs}"
    );
    // Existing ephemeral containers cannot be removed (upstream's rule), nor is the pod's
    // main spec changed through the subresource.
    let mut pod = s.get_json(&["pod", "dbg"]);
    pod["spec"]["ephemeralContainers"] = serde_json::json!([]);
    let (code, body) = capstan_testkit::http(
        &s,
        "PUT",
        "/api/v1/namespaces/default/pods/dbg/ephemeralcontainers",
        Some(pod.to_string().as_bytes()),
        "application/json",
        true,
    );
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("may not be removed"),
        "{body}"
    );
    // The container ran once: the pod still runs its app container, untouched.
    assert_eq!(s.jsonpath(&["pod", "dbg"], "{.status.phase}"), "Running");
}

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

#[test]
fn a_client_that_stops_reading_holds_the_process_back_instead_of_filling_memory() {
    let s = Server::start_with_agent(BIN, &[]);
    idle_pod(&s, "fast", "");
    let pid = s.pid().expect("server pid");
    let before = rss(pid);
    // A process writing as fast as it can to a kubectl that reads nothing (stopped).
    let mut kubectl = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .args(["exec", "fast", "--", "cat", "/dev/zero"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl");
    let mut out = kubectl.stdout.take().expect("stdout");
    let mut first = [0u8; 4096];
    std::io::Read::read_exact(&mut out, &mut first).expect("data flows");
    Command::new("kill")
        .args(["-STOP", &kubectl.id().to_string()])
        .status()
        .expect("kill -STOP");
    // The server's memory settles (every buffer on the way is full and the writer waits)
    // instead of growing with the gigabytes `cat` could write meanwhile.
    let mut last = rss(pid);
    let settled = eventually(Duration::from_secs(60), "memory to settle", || {
        std::thread::sleep(Duration::from_millis(500));
        let now = rss(pid);
        let steady = now.abs_diff(last) < 2 * 1024 * 1024;
        last = now;
        steady.then_some(now)
    });
    assert!(
        settled < before + 64 * 1024 * 1024,
        "server RSS grew from {} MB to {} MB behind a stopped client",
        before >> 20,
        settled >> 20
    );
    assert_eq!(api_sessions(&s), 1);
    Command::new("kill")
        .args(["-KILL", &kubectl.id().to_string()])
        .status()
        .expect("kill");
    let _ = kubectl.wait();
    eventually(Duration::from_secs(30), "no open session", || {
        (api_sessions(&s) == 0 && agent_sessions(&s) == 0).then_some(())
    });
}
