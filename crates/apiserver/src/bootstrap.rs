//! What exists from the first start: the default namespaces, the `capstan` IngressClass, the
//! `local-path` StorageClass,
//! `default/kubernetes` Service
//! at the first service IP with Endpoints pointing at this API server, and the allocator's
//! memory of every stored Service. Idempotent: safe on every start.

use std::net::IpAddr;

use capstan_api::catalogue;
use serde_json::{json, Value};

use crate::codec::{self, decode_stored};
use crate::error::{ApiError, ApiResult};
use crate::registry::{Registry, WriteOptions};

pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

fn info(group: &str, plural: &str) -> ApiResult<&'static catalogue::ResourceInfo> {
    catalogue::lookup(group, "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} missing from the catalogue")))
}

async fn ensure(
    reg: &Registry,
    group: &str,
    plural: &str,
    ns: Option<&str>,
    obj: Value,
) -> ApiResult<()> {
    let info = info(group, plural)?;
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    // Look first: creating an existing Service would fail on its (taken) address, not its name.
    match reg.get(info, ns, name).await {
        Ok(_) => return Ok(()),
        Err(e) if e.code == 404 => {}
        Err(e) => return Err(e),
    }
    match reg
        .create(info, ns, obj, &WriteOptions::default(), Vec::new())
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Brings the store to the state every cluster starts from.
pub async fn run(reg: &Registry, advertise_ip: IpAddr, port: u16) -> ApiResult<()> {
    reg.load_namespaces().await?;
    // Services first: the allocator must know every address in use before anything allocates.
    let services = info("", "services")?;
    let existing = reg
        .store()
        .list(&codec::prefix(services, None), Default::default())
        .await
        .map_err(crate::error::from_store)?;
    for kv in &existing.items {
        reg.services().restore(&decode_stored(services, kv)?);
    }
    for ns in SYSTEM_NAMESPACES {
        ensure(
            reg,
            "",
            "namespaces",
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    // The built-in ingress's class (every node agent serves it), the default for Ingresses
    // naming none. Created once: a user's later edits (e.g. unmarking it default) stay.
    ensure(
        reg,
        "networking.k8s.io",
        "ingressclasses",
        None,
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "capstan", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
            "spec": {"controller": "capstan.io/ingress"},
        }),
    )
    .await?;
    // The built-in local-path provisioner's class (k3s's name and provisioner, so manifests
    // written for k3s work), the default for claims naming none. Created once, as above.
    ensure(
        reg,
        "storage.k8s.io",
        "storageclasses",
        None,
        json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
        }),
    )
    .await?;
    let cluster_ip = reg.services().config().service_ip(1).to_string();
    ensure(
        reg,
        "",
        "services",
        Some("default"),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "sessionAffinity": "None",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
        }),
    )
    .await?;
    let endpoints = info("", "endpoints")?;
    let desired = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": advertise_ip.to_string()}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    // The address may change between starts; PUT creates or replaces. A host without a usable
    // address (e.g. loopback only, which Endpoints refuse) still gets a working API server.
    if let Err(e) = reg
        .update(
            endpoints,
            Some("default"),
            "kubernetes",
            desired,
            &WriteOptions::default(),
            None,
            Vec::new(),
        )
        .await
    {
        tracing::warn!(address = %advertise_ip, error = %e.message, "cannot publish the kubernetes Service's endpoints; set --advertise-address");
    }
    // The same as an EndpointSlice, as upstream's API server writes it: service proxies read
    // slices only (the Service has no selector, so no controller writes one).
    let slices = info("discovery.k8s.io", "endpointslices")?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": if advertise_ip.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{"addresses": [advertise_ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    if let Err(e) = reg
        .update(
            slices,
            Some("default"),
            "kubernetes",
            slice,
            &WriteOptions::default(),
            None,
            Vec::new(),
        )
        .await
    {
        tracing::warn!(address = %advertise_ip, error = %e.message, "cannot publish the kubernetes Service's EndpointSlice");
    }
    Ok(())
}
