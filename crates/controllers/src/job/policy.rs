//! A Job's podFailurePolicy and successPolicy, matched as upstream's `pod_failure_policy.go`
//! and `success_policy.go`: the first failure rule that matches a failed pod decides its
//! action; the first success rule met by the succeeded indexes ends the Job.

use k8s_openapi::api::batch::v1::{
    PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, SuccessPolicy,
};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::indexes::IndexSet;

/// What a matched failure rule asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureAction {
    /// Fail the whole Job at once, with this message.
    FailJob(String),
    /// Fail only the pod's index (needs backoffLimitPerIndex).
    FailIndex,
    /// Do not count the failure against backoffLimit.
    Ignore,
    /// Count it as usual (also what no matching rule means).
    Count,
}

fn exit_codes_match(req: &PodFailurePolicyOnExitCodesRequirement, code: i32) -> bool {
    let listed = req.values.contains(&code);
    match req.operator.as_str() {
        "In" => listed,
        "NotIn" => !listed,
        _ => false,
    }
}

/// The first container (init containers first) terminated with a non-zero code matching.
fn matching_container<'a>(
    pod: &'a Pod,
    req: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<(&'a ContainerStatus, i32)> {
    let st = pod.status.as_ref()?;
    st.init_container_statuses
        .iter()
        .flatten()
        .chain(st.container_statuses.iter().flatten())
        .filter(|c| req.container_name.as_ref().is_none_or(|n| *n == c.name))
        .find_map(|c| {
            let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
            (code != 0 && exit_codes_match(req, code)).then_some((c, code))
        })
}

fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// The action for a failed pod under `policy` (upstream's `matchPodFailurePolicy`).
pub fn match_failure(policy: Option<&PodFailurePolicy>, pod: &Pod) -> FailureAction {
    let Some(policy) = policy else {
        return FailureAction::Count;
    };
    for (i, rule) in policy.rules.iter().enumerate() {
        let described = if let Some(req) = &rule.on_exit_codes {
            matching_container(pod, req).map(|(c, code)| {
                format!(
                    "Container {} for pod {} failed with exit code {code} matching {} rule at index {i}",
                    c.name,
                    pod_name(pod),
                    rule.action
                )
            })
        } else {
            let conds = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_deref())
                .unwrap_or(&[]);
            rule.on_pod_conditions.iter().flatten().find_map(|pat| {
                let want = if pat.status.is_empty() {
                    "True"
                } else {
                    pat.status.as_str()
                };
                conds
                    .iter()
                    .any(|c| c.type_ == pat.type_ && c.status == want)
                    .then(|| {
                        format!(
                            "Pod {} has condition {} matching {} rule at index {i}",
                            pod_name(pod),
                            pat.type_,
                            rule.action
                        )
                    })
            })
        };
        if let Some(message) = described {
            return match rule.action.as_str() {
                "FailJob" => FailureAction::FailJob(message),
                "FailIndex" => FailureAction::FailIndex,
                "Ignore" => FailureAction::Ignore,
                _ => FailureAction::Count,
            };
        }
    }
    FailureAction::Count
}

/// The message of the first success rule met (upstream's `matchSuccessPolicy`).
pub fn match_success(
    policy: Option<&SuccessPolicy>,
    completions: i32,
    succeeded: &IndexSet,
) -> Option<String> {
    let policy = policy?;
    for (i, rule) in policy.rules.iter().enumerate() {
        let met = match (&rule.succeeded_indexes, rule.succeeded_count) {
            (Some(idx), count) => {
                let wanted = IndexSet::parse(Some(idx), completions);
                let have = wanted.iter().filter(|i| succeeded.contains(*i)).count();
                match count {
                    Some(c) => have >= c.max(0) as usize,
                    None => wanted.total() > 0 && have == wanted.total(),
                }
            }
            (None, Some(c)) => succeeded.total() >= c.max(0) as usize,
            (None, None) => false,
        };
        if met {
            return Some(format!("Matched rules at index {i}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failed_pod(code: i32, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "conditions": conditions,
                "containerStatuses": [
                    {"name": "ok", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                     "state": {"terminated": {"exitCode": 0}}},
                    {"name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                     "state": {"terminated": {"exitCode": code}}}]}
        }))
        .expect("pod")
    }

    fn policy(v: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(json!({ "rules": v })).expect("policy")
    }

    #[test]
    fn the_first_matching_rule_decides_and_zero_never_matches() {
        let p = policy(json!([
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [42, 3]}},
        ]));
        assert_eq!(
            match_failure(Some(&p), &failed_pod(3, json!([]))),
            FailureAction::Ignore
        );
        assert_eq!(
            match_failure(Some(&p), &failed_pod(42, json!([]))),
            FailureAction::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
                    .into()
            )
        );
        assert_eq!(
            match_failure(Some(&p), &failed_pod(7, json!([]))),
            FailureAction::Count
        );
        assert_eq!(
            match_failure(None, &failed_pod(42, json!([]))),
            FailureAction::Count
        );
    }

    #[test]
    fn pod_conditions_match_on_type_and_status() {
        let p = policy(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [5]}},
        ]));
        let disrupted = failed_pod(137, json!([{"type": "DisruptionTarget", "status": "True"}]));
        assert_eq!(match_failure(Some(&p), &disrupted), FailureAction::Ignore);
        let not = failed_pod(
            137,
            json!([{"type": "DisruptionTarget", "status": "False"}]),
        );
        assert_eq!(match_failure(Some(&p), &not), FailureAction::Count);
        assert_eq!(
            match_failure(Some(&p), &failed_pod(5, json!([]))),
            FailureAction::FailIndex
        );
    }

    #[test]
    fn success_rules_on_indexes_and_counts() {
        let sp: SuccessPolicy = serde_json::from_value(json!({"rules": [
            {"succeededIndexes": "0-2", "succeededCount": 2},
            {"succeededIndexes": "4"},
            {"succeededCount": 4},
        ]}))
        .expect("sp");
        let set = |v: &[i32]| {
            let mut s = IndexSet::default();
            for i in v {
                s.insert(*i);
            }
            s
        };
        assert_eq!(match_success(Some(&sp), 6, &set(&[0, 3])), None);
        assert_eq!(
            match_success(Some(&sp), 6, &set(&[0, 2])).as_deref(),
            Some("Matched rules at index 0")
        );
        assert_eq!(
            match_success(Some(&sp), 6, &set(&[4])).as_deref(),
            Some("Matched rules at index 1")
        );
        assert_eq!(
            match_success(Some(&sp), 6, &set(&[0, 3, 5, 1])).as_deref(),
            Some("Matched rules at index 0")
        );
        assert_eq!(
            match_success(Some(&sp), 6, &set(&[3, 5, 1])).as_deref(),
            None
        );
        assert_eq!(match_success(None, 6, &set(&[0, 1, 2, 3, 4, 5])), None);
    }
}
