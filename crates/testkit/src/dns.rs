//! Cluster DNS in tests: a free port for a server's DNS, the address it listens on, and a
//! stand-in for the host's resolver, so that tests of forwarding never send a query off the
//! machine (the server's hidden `--dns-upstream` flag points at it).

use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{eventually, Server};

/// A port free for both TCP and UDP on every address.
pub fn free_dns_port() -> u16 {
    loop {
        let t = TcpListener::bind("0.0.0.0:0").expect("tcp");
        let port = t.local_addr().expect("addr").port();
        if UdpSocket::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

/// The address `s`'s cluster DNS listens on, from the EndpointSlice the server publishes.
pub fn dns_endpoint(s: &Server) -> String {
    eventually(
        Duration::from_secs(20),
        "the kube-dns EndpointSlice",
        || {
            let ip = s.jsonpath(
                &["-n", "kube-system", "endpointslice", "kube-dns-capstan"],
                "{.endpoints[0].addresses[0]}",
            );
            let ip = ip.trim().to_string();
            (!ip.is_empty()).then_some(ip)
        },
    )
}

/// A stand-in for the host's resolver on loopback: every question gets one A record,
/// 192.0.2.99, and is counted.
pub fn fake_upstream() -> (u16, Arc<AtomicUsize>) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sock.local_addr().expect("addr").port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            counter.fetch_add(1, Ordering::SeqCst);
            // The question ends after its name (a run of labels ending in 0) and type+class.
            let mut i = 12;
            while i < n && buf[i] != 0 {
                i += usize::from(buf[i]) + 1;
            }
            let qend = (i + 5).min(n);
            let mut out = buf[..qend].to_vec();
            out[2] = 0x81; // QR, RD
            out[3] = 0x80; // RA, NOERROR
            out[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]); // one answer, nothing else
                                                             // Name: a pointer to the question's name; A, IN, TTL 60, 4 bytes.
            out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 99]);
            let _ = sock.send_to(&out, from);
        }
    });
    (port, seen)
}
