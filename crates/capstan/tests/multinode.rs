//! Several nodes on one machine (testkit's `Cluster`: each agent in its own network namespace
//! on a bridge of the test's own): pods on different nodes reach each other by pod IP through
//! the host-gw routes the agents keep, with their own source addresses, and a node that goes
//! takes its route with it; a Service found by name (cluster DNS) and a NodePort lead to a pod
//! that lives only on another node.
//!
//! The server runs without its own agent: both nodes are then alike (each in a namespace of
//! its own, as separate machines would be) and the host's routing table is not touched.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is the test failing

use std::net::TcpListener;
use std::time::Duration;

use capstan_testkit::agent::{BUSYBOX, HTTPD};
use capstan_testkit::cluster::{Cluster, ClusterOpts};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");

/// A busybox httpd whose CGI /cgi-bin/ip answers `client <the caller's address>`.
const WHOAMI: &str = "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho \"client $REMOTE_ADDR\"\\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www";

/// The address in a WHOAMI answer (busybox httpd listens on IPv6 too and writes IPv4 clients
/// as [::ffff:a.b.c.d]).
fn whoami_client(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("client "))
        .unwrap_or_default()
        .trim_start_matches("[::ffff:")
        .trim_end_matches(']')
        .to_string()
}

fn pod_on(name: &str, node: &str, body: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeSelector:\n    \
         kubernetes.io/hostname: {node}\n  terminationGracePeriodSeconds: 2\n{body}"
    )
}

/// The capstan routes (`proto 77`) in node `name`'s namespace.
fn pod_routes(c: &Cluster, name: &str) -> String {
    c.exec_ok(name, &["ip", "-4", "route", "show", "proto", "77"])
}

#[test]
fn pods_on_two_nodes_reach_each_other_by_pod_ip_keeping_their_source_address() {
    let mut c = Cluster::start(BIN);
    let names = c.node_names();
    let (a, b) = (names[0].clone(), names[1].clone());

    // Distinct podCIDRs from the cluster CIDR, each routed on the other node via its address.
    let (cidr_a, cidr_b) = (c.pod_cidr(&a), c.pod_cidr(&b));
    assert_ne!(cidr_a, cidr_b);
    let prefix = format!("10.{}.", c.octet);
    assert!(
        cidr_a.starts_with(&prefix) && cidr_b.starts_with(&prefix),
        "{cidr_a} {cidr_b}"
    );
    let (ip_a, ip_b) = (c.node(&a).ip, c.node(&b).ip);
    c.eventually(
        Duration::from_secs(30),
        "each node routing the other's pods",
        || {
            let on_a = pod_routes(&c, &a);
            let on_b = pod_routes(&c, &b);
            (on_a.contains(&format!("{cidr_b} via {ip_b} "))
                && on_b.contains(&format!("{cidr_a} via {ip_a} ")))
            .then_some(())
        },
    );
    // The server's InternalIP for each node is its namespace address (kubectl logs goes there).
    assert_eq!(
        c.ok(&[
            "get",
            "node",
            &b,
            "-o",
            "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}"
        ]),
        ip_b.to_string()
    );

    // On node B: the test httpd, and a CGI that answers with the client's address.
    c.apply(&pod_on(
        "web",
        &b,
        &format!("  containers:\n  - name: web\n    image: {HTTPD}\n"),
    ));
    c.apply(&pod_on(
        "whoami",
        &b,
        &format!(
            "  containers:\n  - name: whoami\n    image: {BUSYBOX}\n    command: [sh, -c, '{}']\n",
            WHOAMI.replace('\'', "''")
        ),
    ));
    let web_ip = c.pod_ip("web");
    let whoami_ip = c.pod_ip("whoami");
    // Node A itself (not a pod) reaches B's pods too.
    let page = c.eventually(
        Duration::from_secs(30),
        "node A fetching from B's pod",
        || c.curl_in(&a, &format!("http://{web_ip}/")),
    );
    assert_eq!(page, "hello from web\n");
    assert!(
        web_ip.starts_with(cidr_b.trim_end_matches("0/24")),
        "{web_ip} in {cidr_b}"
    );

    // On node A: a client that fetches both (retrying until the pods listen) and prints them.
    // (`timeout`, not wget's -T, which crashes Debian's busybox 1.35.)
    let script = format!(
        "until timeout 5 wget -q -O /tmp/web http://{web_ip}/; do sleep 1; done; \
         until timeout 5 wget -q -O /tmp/ip http://{whoami_ip}:8080/cgi-bin/ip; do sleep 1; done; \
         cat /tmp/web /tmp/ip; sleep 3600"
    );
    c.apply(&pod_on(
        "client",
        &a,
        &format!("  containers:\n  - name: client\n    image: {BUSYBOX}\n    command: [sh, -c, '{script}']\n"),
    ));
    let client_ip = c.pod_ip("client");
    assert!(
        client_ip.starts_with(cidr_a.trim_end_matches("0/24")),
        "{client_ip} in {cidr_a}"
    );
    let logs = c.logs_containing("client", "client ");
    assert!(logs.contains("hello from web"), "{logs}");
    // No NAT between nodes: the server pod saw the client pod's own address.
    assert_eq!(
        whoami_client(&logs),
        client_ip,
        "the source address httpd saw:\n{logs}"
    );

    // Leaving the cluster CIDR (here: to the host's bridge address), a pod's traffic is
    // masqueraded to its node's address.
    let outside = TcpListener::bind((c.bridge_ip(), 0)).expect("listening on the bridge");
    outside.set_nonblocking(true).expect("nonblocking");
    let port = outside.local_addr().expect("addr").port();
    let bridge_ip = c.bridge_ip();
    c.apply(&pod_on(
        "outbound",
        &a,
        &format!("  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, 'until echo hi | timeout 5 nc {bridge_ip} {port}; do sleep 1; done; sleep 3600']\n"),
    ));
    let peer = c.eventually(
        Duration::from_secs(60),
        "a connection from the outbound pod",
        || outside.accept().ok().map(|(_, peer)| peer.ip()),
    );
    assert_eq!(
        peer,
        std::net::IpAddr::V4(ip_a),
        "the source of a pod's connection out of the cluster"
    );

    // Node B goes (its agent stops, its Node is deleted): A drops the route to B's pods.
    c.stop_agent(&b);
    c.ok(&["delete", "node", &b]);
    c.eventually(
        Duration::from_secs(30),
        "node A to drop the route to B's pods",
        || (!pod_routes(&c, &a).contains(&cidr_b)).then_some(()),
    );
    let left = c.exec_ok(&a, &["ip", "-4", "route", "show", &cidr_b]);
    assert_eq!(left.trim(), "", "a route to {cidr_b} is left on {a}");
}

/// The server's own node (in the host namespace, its address on the bed's bridge) and a joined
/// node route each other's pods the same way.
#[test]
fn the_servers_own_node_and_a_joined_node_reach_each_others_pods() {
    let c = Cluster::start_with(
        BIN,
        ClusterOpts {
            agents: 1,
            server_agent: true,
            ..Default::default()
        },
    );
    let names = c.node_names();
    let (own, joined) = (names[0].clone(), names[1].clone());
    let cidr_joined = c.pod_cidr(&joined);
    let via = c.node(&joined).ip;
    // The server's node programs the host's table, only inside this cluster's CIDR.
    c.eventually(
        Duration::from_secs(30),
        "the host routing the joined node's pods",
        || {
            let out = std::process::Command::new("ip")
                .args(["-4", "route", "show", "proto", "77"])
                .output()
                .expect("ip route");
            String::from_utf8_lossy(&out.stdout)
                .contains(&format!("{cidr_joined} via {via} "))
                .then_some(())
        },
    );

    c.apply(&pod_on(
        "web",
        &own,
        &format!("  containers:\n  - name: web\n    image: {HTTPD}\n"),
    ));
    let web_ip = c.pod_ip("web");
    c.apply(&pod_on(
        "client",
        &joined,
        &format!("  containers:\n  - name: client\n    image: {BUSYBOX}\n    command: [sh, -c, 'until timeout 5 wget -q -O /tmp/web http://{web_ip}/; do sleep 1; done; cat /tmp/web; sleep 3600']\n"),
    ));
    c.pod_ip("client");
    let logs = c.logs_containing("client", "hello from");
    assert_eq!(logs, "hello from web\n");
}

/// The bed's node failure helpers, and routes that outlive a node's agent: node B loses power
/// (agent, containerd and containers killed) while a route on A is deleted by hand; A puts
/// the route back, and B started again runs pods that A's pods reach.
#[test]
fn a_node_powered_off_and_started_again_is_reachable_and_lost_routes_come_back() {
    let mut c = Cluster::start(BIN);
    let names = c.node_names();
    let (a, b) = (names[0].clone(), names[1].clone());
    let cidr_b = c.pod_cidr(&b);
    let via = format!("{cidr_b} via {} ", c.node(&b).ip);
    c.eventually(Duration::from_secs(30), "A routing B's pods", || {
        pod_routes(&c, &a).contains(&via).then_some(())
    });
    c.apply(&pod_on(
        "before",
        &b,
        &format!(
            "  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sleep, '3600']\n"
        ),
    ));
    c.pod_ip("before");

    c.power_off(&b);
    assert!(!c.node(&b).is_running());
    // Nothing of B runs any more: its kubelet port is closed.
    let kubelet_b = format!("https://{}:10250/", c.node(&b).ip);
    let out = c.exec_in(&a, &["curl", "-sk", "-m", "3", &kubelet_b]);
    assert!(!out.status.success(), "B's kubelet still answers");
    // A route lost on A (deleted by hand) is put back by the periodic check.
    c.exec_ok(&a, &["ip", "route", "del", &cidr_b]);
    c.eventually(
        Duration::from_secs(60),
        "A to restore the route to B's pods",
        || pod_routes(&c, &a).contains(&via).then_some(()),
    );

    c.start_agent(&b);
    c.apply(&pod_on(
        "after",
        &b,
        &format!("  containers:\n  - name: web\n    image: {HTTPD}\n"),
    ));
    let web_ip = c.pod_ip("after");
    c.apply(&pod_on(
        "client",
        &a,
        &format!("  containers:\n  - name: client\n    image: {BUSYBOX}\n    command: [sh, -c, 'until timeout 5 wget -q -O /tmp/web http://{web_ip}/; do sleep 1; done; cat /tmp/web; sleep 3600']\n"),
    ));
    let logs = c.logs_containing("client", "hello from");
    assert_eq!(logs, "hello from after\n");
}

/// A node on another subnet (no shared link: the host routes between the two) is reached
/// through VXLAN: each side publishes its device's MAC, routes the other's podCIDR over it,
/// pods keep their addresses, and the peer goes with its Node.
#[test]
fn a_node_on_another_subnet_is_reached_through_vxlan() {
    let mut c = Cluster::start_with(
        BIN,
        ClusterOpts {
            agents: 1,
            far_agents: 1,
            ..Default::default()
        },
    );
    let names = c.node_names();
    let (near, far) = (names[0].clone(), names[1].clone());
    let (cidr_near, cidr_far) = (c.pod_cidr(&near), c.pod_cidr(&far));
    let net = |cidr: &str| cidr.trim_end_matches("/24").to_string();
    for (node, other) in [(&near, &cidr_far), (&far, &cidr_near)] {
        let want = format!("{other} via {} dev capstan.vxlan ", net(other));
        c.eventually(
            Duration::from_secs(30),
            &format!("{node} routing {other} over VXLAN"),
            || pod_routes(&c, node).contains(&want).then_some(()),
        );
        let mac = c.ok(&[
            "get",
            "node",
            node,
            "-o",
            "jsonpath={.metadata.annotations.capstan\\.io/vxlan-mac}",
        ]);
        assert_eq!(mac.len(), 17, "{node}'s published MAC: {mac:?}");
    }

    c.apply(&pod_on(
        "whoami",
        &far,
        &format!(
            "  containers:\n  - name: whoami\n    image: {BUSYBOX}\n    command: [sh, -c, '{}']\n",
            WHOAMI.replace('\'', "''")
        ),
    ));
    let whoami_ip = c.pod_ip("whoami");
    c.apply(&pod_on(
        "client",
        &near,
        &format!("  containers:\n  - name: client\n    image: {BUSYBOX}\n    command: [sh, -c, 'until timeout 5 wget -q -O /tmp/ip http://{whoami_ip}:8080/cgi-bin/ip; do sleep 1; done; cat /tmp/ip; sleep 3600']\n"),
    ));
    let client_ip = c.pod_ip("client");
    let logs = c.logs_containing("client", "client ");
    assert_eq!(whoami_client(&logs), client_ip, "{logs}");

    c.stop_agent(&far);
    c.ok(&["delete", "node", &far]);
    c.eventually(
        Duration::from_secs(30),
        "the near node to drop the VXLAN peer",
        || {
            let routes = pod_routes(&c, &near);
            let neigh = c.exec_ok(&near, &["ip", "neigh", "show", "dev", "capstan.vxlan"]);
            (!routes.contains(&cidr_far) && !neigh.contains(&net(&cidr_far))).then_some(())
        },
    );
}

#[test]
fn services_by_name_and_node_ports_reach_pods_that_live_on_another_node() {
    let c = Cluster::start(BIN);
    let names = c.node_names();
    let (a, b) = (names[0].clone(), names[1].clone());
    // The only backend lives on node B; the Service is reached from node A.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {{app: web}}\nspec:\n  \
         nodeSelector: {{kubernetes.io/hostname: {b}}}\n  terminationGracePeriodSeconds: 2\n  \
         containers:\n  - {{name: web, image: \"{HTTPD}\"}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  selector: {{app: web}}\n  \
         ports: [{{port: 80}}]\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {{name: web-np}}\nspec:\n  type: NodePort\n  \
         selector: {{app: web}}\n  ports: [{{port: 80}}]\n"
    ));
    c.pod_ip("web");

    // A pod on A finds the Service by its short name (cluster DNS, on the server) and fetches.
    let script =
        "until timeout 5 wget -q -O /tmp/o http://web/; do sleep 1; done; cat /tmp/o; sleep 3600";
    c.apply(&pod_on(
        "client",
        &a,
        &format!("  containers:\n  - name: client\n    image: {BUSYBOX}\n    command: [sh, -c, '{script}']\n"),
    ));
    let logs = c.logs_containing("client", "hello from web");
    assert!(logs.contains("hello from web"), "{logs}");

    // Node A's NodePort leads to the pod on B.
    let port = c.ok(&[
        "get",
        "service",
        "web-np",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    let url = format!("http://{}:{port}/", c.node(&a).ip);
    let page = c.eventually(
        Duration::from_secs(30),
        "node A's NodePort answering",
        || c.curl_in(&a, &url),
    );
    assert_eq!(page, "hello from web\n");
}
