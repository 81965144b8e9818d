//! The name → answer rules over an index fed by hand (the informers feed the same methods).

use super::*;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

fn zone() -> Zone {
    Zone::new("cluster.local", vec!["10.43.0.10".parse().expect("ip")]).expect("zone")
}

fn add_service(idx: &Index, v: serde_json::Value) {
    let s: Service = serde_json::from_value(v).expect("service");
    idx.apply_service(&s);
}

fn add_slice(idx: &Index, v: serde_json::Value) {
    let s: EndpointSlice = serde_json::from_value(v).expect("slice");
    idx.apply_slice(&s);
}

/// A cluster with one of each kind of Service.
fn cluster() -> Index {
    let idx = Index::new();
    add_service(
        &idx,
        json!({"metadata": {"name": "web", "namespace": "shop"},
        "spec": {"clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 81}]}}),
    );
    add_service(
        &idx,
        json!({"metadata": {"name": "db", "namespace": "shop"},
        "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
    );
    add_slice(
        &idx,
        json!({"metadata": {"name": "db-abc", "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.42.0.7"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.42.0.8"], "conditions": {"ready": true}},
            {"addresses": ["10.42.0.9"], "hostname": "db-2", "conditions": {"ready": false}}
        ]}),
    );
    add_service(
        &idx,
        json!({"metadata": {"name": "search", "namespace": "shop"},
        "spec": {"type": "ExternalName", "externalName": "Search.Example.COM."}}),
    );
    idx
}

fn ask(idx: &Index, name: &str, t: RecordType) -> Answer {
    answer(idx, &zone(), &Name::from_ascii(name).expect("name"), t)
}

fn ips(a: &Answer) -> Vec<String> {
    a.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

fn srvs(a: &Answer) -> Vec<(u16, String)> {
    a.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.port, s.target.to_string())),
            _ => None,
        })
        .collect()
}

fn assert_soa_authority(a: &Answer) {
    assert!(a.answers.is_empty(), "{a:?}");
    assert_eq!(a.authority.len(), 1, "{a:?}");
    let RData::SOA(soa) = &a.authority[0].data else {
        panic!("not an SOA: {a:?}")
    };
    assert_eq!(a.authority[0].name.to_string(), "cluster.local.");
    assert_eq!(soa.mname.to_string(), "ns.dns.cluster.local.");
    assert_eq!(soa.rname.to_string(), "hostmaster.cluster.local.");
    assert_eq!(soa.minimum, TTL);
}

#[test]
fn a_cluster_ip_service_answers_its_address() {
    let a = ask(&cluster(), "web.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert_eq!(ips(&a), ["10.43.0.20"]);
    assert_eq!(a.answers[0].ttl, TTL);
}

#[test]
fn names_match_whatever_their_case_and_trailing_dot() {
    let idx = cluster();
    for n in [
        "WEB.Shop.SVC.cluster.LOCAL.",
        "web.shop.svc.cluster.local",
        "wEb.sHoP.svc.ClUsTeR.lOcAl",
    ] {
        let a = ask(&idx, n, RecordType::A);
        assert_eq!(ips(&a), ["10.43.0.20"], "{n}");
        // The answer carries the name as asked (resolvers using 0x20 randomisation check it).
        assert_eq!(
            a.answers[0].name.to_string().trim_end_matches('.'),
            n.trim_end_matches('.')
        );
    }
}

#[test]
fn an_existing_name_without_records_of_the_type_is_nodata_with_the_soa() {
    let a = ask(&cluster(), "web.shop.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert_soa_authority(&a);
    let a = ask(&cluster(), "web.shop.svc.cluster.local.", RecordType::TXT);
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert_soa_authority(&a);
}

#[test]
fn a_missing_service_or_namespace_is_nxdomain_with_the_soa() {
    let idx = cluster();
    for n in [
        "nope.shop.svc.cluster.local.",
        "web.other.svc.cluster.local.",
        "other.svc.cluster.local.",
        "a.b.c.d.e.f.svc.cluster.local.",
        "web.shop.cluster.local.",
        "something.cluster.local.",
    ] {
        let a = ask(&idx, n, RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NXDomain, "{n}");
        assert_soa_authority(&a);
    }
}

#[test]
fn empty_non_terminals_exist() {
    let idx = cluster();
    for n in [
        "svc.cluster.local.",
        "shop.svc.cluster.local.",
        "pod.cluster.local.",
        "_tcp.web.shop.svc.cluster.local.",
    ] {
        let a = ask(&idx, n, RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NoError, "{n}");
        assert_soa_authority(&a);
    }
    assert_eq!(
        ask(&idx, "_udp.web.shop.svc.cluster.local.", RecordType::A).rcode,
        ResponseCode::NXDomain
    );
}

#[test]
fn the_zone_apex_answers_soa_and_ns() {
    let idx = cluster();
    let a = ask(&idx, "cluster.local.", RecordType::SOA);
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert!(matches!(a.answers[0].data, RData::SOA(_)));
    let a = ask(&idx, "cluster.local.", RecordType::NS);
    let RData::NS(ns) = &a.answers[0].data else {
        panic!("{a:?}")
    };
    assert_eq!(ns.0.to_string(), "ns.dns.cluster.local.");
    let a = ask(&idx, "ns.dns.cluster.local.", RecordType::A);
    assert_eq!(ips(&a), ["10.43.0.10"]);
}

#[test]
fn a_headless_service_answers_its_ready_endpoints() {
    let a = ask(&cluster(), "db.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert_eq!(ips(&a), ["10.42.0.7", "10.42.0.8"]);
}

#[test]
fn a_headless_service_publishing_not_ready_addresses_answers_them_too() {
    let idx = cluster();
    add_service(
        &idx,
        json!({"metadata": {"name": "db", "namespace": "shop"},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": true, "ports": [{"name": "pg", "port": 5432}]}}),
    );
    let a = ask(&idx, "db.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(ips(&a), ["10.42.0.7", "10.42.0.8", "10.42.0.9"]);
}

#[test]
fn a_headless_service_without_endpoints_is_nodata() {
    let idx = cluster();
    add_service(
        &idx,
        json!({"metadata": {"name": "empty", "namespace": "shop"}, "spec": {"clusterIP": "None"}}),
    );
    let a = ask(&idx, "empty.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert_soa_authority(&a);
}

#[test]
fn endpoint_hostnames_and_dashed_addresses_name_single_pods() {
    let idx = cluster();
    // What a StatefulSet pod with hostname db-0 and subdomain db gets.
    let a = ask(&idx, "db-0.db.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(ips(&a), ["10.42.0.7"]);
    let a = ask(&idx, "10-42-0-8.db.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(ips(&a), ["10.42.0.8"]);
    // Not ready: not published.
    assert_eq!(
        ask(&idx, "db-2.db.shop.svc.cluster.local.", RecordType::A).rcode,
        ResponseCode::NXDomain
    );
    // Only headless Services name their endpoints.
    assert_eq!(
        ask(&idx, "db-0.web.shop.svc.cluster.local.", RecordType::A).rcode,
        ResponseCode::NXDomain
    );
}

#[test]
fn srv_of_a_named_port_points_at_the_service() {
    let a = ask(
        &cluster(),
        "_http._tcp.web.shop.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert_eq!(srvs(&a), [(80, "web.shop.svc.cluster.local.".to_string())]);
    assert_eq!(
        a.answers[0].name.to_string(),
        "_http._tcp.web.shop.svc.cluster.local."
    );
    let RData::A(glue) = &a.additionals[0].data else {
        panic!("{a:?}")
    };
    assert_eq!(glue.0.to_string(), "10.43.0.20");
    // A wrong protocol or an unknown port name does not exist.
    for n in [
        "_http._udp.web.shop.svc.cluster.local.",
        "_nope._tcp.web.shop.svc.cluster.local.",
        "http.tcp.web.shop.svc.cluster.local.",
    ] {
        assert_eq!(
            ask(&cluster(), n, RecordType::SRV).rcode,
            ResponseCode::NXDomain,
            "{n}"
        );
    }
    // The SRV name exists: an A question about it is NODATA.
    let a = ask(
        &cluster(),
        "_http._tcp.web.shop.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert_soa_authority(&a);
}

#[test]
fn srv_of_a_service_name_lists_every_named_port() {
    let a = ask(&cluster(), "web.shop.svc.cluster.local.", RecordType::SRV);
    assert_eq!(srvs(&a), [(80, "web.shop.svc.cluster.local.".to_string())]);
}

#[test]
fn srv_of_a_headless_service_names_each_ready_endpoint() {
    let a = ask(
        &cluster(),
        "_pg._tcp.db.shop.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        srvs(&a),
        [
            (5432, "10-42-0-8.db.shop.svc.cluster.local.".to_string()),
            (5432, "db-0.db.shop.svc.cluster.local.".to_string()),
        ]
    );
    assert_eq!(a.additionals.len(), 2);
}

#[test]
fn an_external_name_service_is_a_cname() {
    for t in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
        let a = ask(&cluster(), "search.shop.svc.cluster.local.", t);
        assert_eq!(a.rcode, ResponseCode::NoError);
        let RData::CNAME(c) = &a.answers[0].data else {
            panic!("{a:?}")
        };
        assert_eq!(c.0.to_string(), "search.example.com.");
    }
}

#[test]
fn pod_names_answer_the_address_they_spell() {
    let idx = cluster();
    let a = ask(&idx, "10-42-1-5.anyns.pod.cluster.local.", RecordType::A);
    assert_eq!(ips(&a), ["10.42.1.5"]);
    let a = ask(&idx, "fd00--5.anyns.pod.cluster.local.", RecordType::AAAA);
    assert_eq!(ips(&a), ["fd00::5"]);
    let a = ask(&idx, "10-42-1-5.anyns.pod.cluster.local.", RecordType::AAAA);
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert_soa_authority(&a);
    for bad in ["10-42-1", "10-42-1-500", "x-y-z-w", "1-2-3-4-5", "1--2--3"] {
        let n = format!("{bad}.ns.pod.cluster.local.");
        assert_eq!(
            ask(&idx, &n, RecordType::A).rcode,
            ResponseCode::NXDomain,
            "{n}"
        );
    }
}

#[test]
fn a_name_outside_the_zone_is_not_ours() {
    let z = zone();
    for n in [
        "example.com.",
        "cluster.local.example.com.",
        "local.",
        "xcluster.local.",
    ] {
        assert!(!z.contains(&Name::from_ascii(n).expect("name")), "{n}");
    }
    assert!(z.contains(&Name::from_ascii("A.Cluster.Local").expect("name")));
}

#[test]
fn a_deleted_service_is_gone_at_once() {
    let idx = cluster();
    let s: Service =
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "shop"}}))
            .expect("svc");
    idx.delete_service(&s);
    assert_eq!(
        ask(&idx, "web.shop.svc.cluster.local.", RecordType::A).rcode,
        ResponseCode::NXDomain
    );
}

#[test]
fn a_custom_domain_is_its_own_zone() {
    let z = Zone::new("Corp.Internal.", Vec::new()).expect("zone");
    let idx = cluster();
    let a = answer(
        &idx,
        &z,
        &Name::from_ascii("web.shop.svc.corp.internal.").expect("name"),
        RecordType::A,
    );
    assert_eq!(ips(&a), ["10.43.0.20"]);
    assert!(Zone::new("bad..domain", Vec::new()).is_err());
}

#[test]
fn odd_names_and_random_labels_never_panic() {
    use rand::Rng;
    let idx = cluster();
    let z = zone();
    // Binary labels (not UTF-8) and wildcards.
    let binary =
        Name::from_labels(vec![&[0xff, 0xfe][..], b"svc", b"cluster", b"local"]).expect("name");
    assert_eq!(
        answer(&idx, &z, &binary, RecordType::A).rcode,
        ResponseCode::NXDomain
    );
    let _ = ask(&idx, "*.shop.svc.cluster.local.", RecordType::A);
    let _ = ask(&idx, "*.cluster.local.", RecordType::ANY);
    let mut rng = rand::rng();
    let alphabet = b"abc-_.019*";
    for _ in 0..2000 {
        let len = rng.random_range(1..40);
        let s: String = (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
            .collect();
        if let Ok(n) = Name::from_ascii(format!("{s}.svc.cluster.local.")) {
            let t = [
                RecordType::A,
                RecordType::SRV,
                RecordType::AAAA,
                RecordType::ANY,
            ][rng.random_range(0..4)];
            let _ = answer(&idx, &z, &n, t);
        }
    }
}

#[test]
fn reverse_names_of_cluster_addresses_answer_ptr_and_others_are_not_ours() {
    let idx = cluster();
    let z = zone();
    let ptr = |n: &str| {
        reverse(&idx, &z, &Name::from_ascii(n).expect("name")).map(|a| {
            a.answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::PTR(p) => Some(p.0.to_string()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(
        ptr("20.0.43.10.in-addr.arpa."),
        Some(vec!["web.shop.svc.cluster.local.".to_string()])
    );
    assert_eq!(
        ptr("7.0.42.10.IN-ADDR.ARPA"),
        Some(vec!["db-0.db.shop.svc.cluster.local.".to_string()])
    );
    assert_eq!(
        ptr("8.0.42.10.in-addr.arpa."),
        Some(vec!["10-42-0-8.db.shop.svc.cluster.local.".to_string()])
    );
    // Not ready, unknown, partial or malformed: forwarded (None).
    for n in [
        "9.0.42.10.in-addr.arpa.",
        "1.1.1.1.in-addr.arpa.",
        "0.42.10.in-addr.arpa.",
        "300.0.42.10.in-addr.arpa.",
        "x.0.42.10.in-addr.arpa.",
    ] {
        assert_eq!(ptr(n), None, "{n}");
    }
    assert_eq!(
        parse_reverse(
            &Name::from_ascii(
                "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."
            )
            .expect("name")
        ),
        Some("fd00::5".parse().expect("ip"))
    );
}
