//! Probes and lifecycle hooks: their handlers (exec, httpGet, tcpSocket, grpc, sleep) and
//! timings.

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Lifecycle, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::s;
use crate::field_error::{ErrorList, FieldError, Path};
use crate::kinds::core::checks;

fn http_get(h: &HTTPGetAction, path: &Path, errs: &mut ErrorList) {
    if s(&h.path).is_empty() {
        errs.push(FieldError::required(path.child("path"), ""));
    }
    checks::port_num_or_name(&h.port, &path.child("port"), errs);
    let scheme = s(&h.scheme);
    if scheme != "HTTP" && scheme != "HTTPS" {
        errs.push(FieldError::not_supported(
            path.child("scheme"),
            scheme,
            &["HTTP", "HTTPS"],
        ));
    }
    for header in h.http_headers.iter().flatten() {
        for m in checks::http_header_name(&header.name) {
            errs.push(FieldError::invalid(
                path.child("httpHeaders"),
                header.name.as_str(),
                m,
            ));
        }
    }
}

/// The handler kinds of a probe or lifecycle hook, in upstream's order.
struct Handler<'a> {
    exec: Option<&'a k8s_openapi::api::core::v1::ExecAction>,
    http_get: Option<&'a HTTPGetAction>,
    tcp_socket: Option<&'a k8s_openapi::api::core::v1::TCPSocketAction>,
    grpc: Option<&'a k8s_openapi::api::core::v1::GRPCAction>,
    sleep: Option<&'a k8s_openapi::api::core::v1::SleepAction>,
}

fn handler(h: Handler<'_>, grace: Option<i64>, path: &Path, errs: &mut ErrorList) {
    let mut n = 0;
    let mut one = |name: &str, errs: &mut ErrorList| -> bool {
        if n > 0 {
            errs.push(FieldError::forbidden(
                path.child(name),
                "may not specify more than 1 handler type",
            ));
            false
        } else {
            n += 1;
            true
        }
    };
    if let Some(e) = h.exec {
        if one("exec", errs) && e.command.as_deref().unwrap_or_default().is_empty() {
            errs.push(FieldError::required(
                path.child("exec").child("command"),
                "",
            ));
        }
    }
    if let Some(g) = h.http_get {
        if one("httpGet", errs) {
            http_get(g, &path.child("httpGet"), errs);
        }
    }
    if let Some(t) = h.tcp_socket {
        if one("tcpSocket", errs) {
            checks::port_num_or_name(&t.port, &path.child("tcpSocket").child("port"), errs);
        }
    }
    if let Some(g) = h.grpc {
        if one("grpc", errs) {
            checks::port_num_or_name(
                &IntOrString::Int(g.port),
                &path.child("grpc").child("port"),
                errs,
            );
        }
    }
    if let Some(sl) = h.sleep {
        if one("sleep", errs) {
            let g = grace.unwrap_or(30);
            if sl.seconds <= 0 || sl.seconds > g {
                errs.push(FieldError::invalid(
                    path.child("sleep"),
                    sl.seconds,
                    format!(
                        "must be greater than 0 and less than terminationGracePeriodSeconds ({g})"
                    ),
                ));
            }
        }
    }
    if n == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
}

fn probe(p: &Probe, grace: Option<i64>, path: &Path, errs: &mut ErrorList) {
    handler(
        Handler {
            exec: p.exec.as_ref(),
            http_get: p.http_get.as_ref(),
            tcp_socket: p.tcp_socket.as_ref(),
            grpc: p.grpc.as_ref(),
            sleep: None,
        },
        grace,
        path,
        errs,
    );
    for (v, name) in [
        (p.initial_delay_seconds, "initialDelaySeconds"),
        (p.timeout_seconds, "timeoutSeconds"),
        (p.period_seconds, "periodSeconds"),
        (p.success_threshold, "successThreshold"),
        (p.failure_threshold, "failureThreshold"),
    ] {
        checks::non_negative(i64::from(v.unwrap_or(0)), &path.child(name), errs);
    }
    if let Some(t) = p.termination_grace_period_seconds.filter(|t| *t <= 0) {
        errs.push(FieldError::invalid(
            path.child("terminationGracePeriodSeconds"),
            t,
            "must be greater than 0",
        ));
    }
}

fn lifecycle_handler(h: &LifecycleHandler) -> Handler<'_> {
    Handler {
        exec: h.exec.as_ref(),
        http_get: h.http_get.as_ref(),
        tcp_socket: h.tcp_socket.as_ref(),
        grpc: None,
        sleep: h.sleep.as_ref(),
    }
}

fn lifecycle(l: &Lifecycle, grace: Option<i64>, path: &Path, errs: &mut ErrorList) {
    if let Some(h) = &l.post_start {
        handler(lifecycle_handler(h), grace, &path.child("postStart"), errs);
    }
    if let Some(h) = &l.pre_stop {
        handler(lifecycle_handler(h), grace, &path.child("preStop"), errs);
    }
}

pub(super) fn probes_and_lifecycle(
    c: &Container,
    grace: Option<i64>,
    path: &Path,
    errs: &mut ErrorList,
) {
    if let Some(l) = &c.lifecycle {
        lifecycle(l, grace, &path.child("lifecycle"), errs);
    }
    if let Some(p) = &c.liveness_probe {
        let lp = path.child("livenessProbe");
        probe(p, grace, &lp, errs);
        if p.success_threshold.unwrap_or(0) != 1 {
            errs.push(FieldError::invalid(
                lp.child("successThreshold"),
                p.success_threshold.unwrap_or(0),
                "must be 1",
            ));
        }
    }
    if let Some(p) = &c.readiness_probe {
        let rp = path.child("readinessProbe");
        probe(p, grace, &rp, errs);
        if let Some(t) = p.termination_grace_period_seconds {
            errs.push(FieldError::invalid(
                rp.child("terminationGracePeriodSeconds"),
                t,
                "must not be set for readinessProbes",
            ));
        }
    }
    if let Some(p) = &c.startup_probe {
        let sp = path.child("startupProbe");
        probe(p, grace, &sp, errs);
        if p.success_threshold.unwrap_or(0) != 1 {
            errs.push(FieldError::invalid(
                sp.child("successThreshold"),
                p.success_threshold.unwrap_or(0),
                "must be 1",
            ));
        }
    }
}
