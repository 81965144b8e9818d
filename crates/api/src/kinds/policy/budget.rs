//! The PodDisruptionBudget arithmetic, pure and shared: the disruption controller fills a
//! budget's status with it, and the Eviction API can decide with the same functions (upstream
//! keeps this in the disruption controller and reads `status.disruptionsAllowed` at eviction
//! time; both read the numbers the way these functions compute them).

use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Upstream's `intstr.GetScaledValueFromIntOrPercent`: an int as is, `"N%"` of `total`
/// rounded up or down. The error text is upstream's.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(digits) = s.strip_suffix('%') else {
                return Err(
                    "invalid value for IntOrString: invalid type: string is not a percentage"
                        .to_string(),
                );
            };
            let percent: i64 = digits.parse().map_err(|_| {
                format!(
                    "invalid value for IntOrString: invalid value \"{s}\": strconv.Atoi: parsing {digits:?}: invalid syntax"
                )
            })?;
            let scaled = percent * i64::from(total);
            let value = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            Ok(i32::try_from(value).unwrap_or(i32::MAX))
        }
    }
}

/// Whether the budget is measured against the pods' controllers' total scale (maxUnavailable,
/// or minAvailable as a percentage) rather than the number of pods it selects.
pub fn needs_scale(spec: &PodDisruptionBudgetSpec) -> bool {
    spec.max_unavailable.is_some() || matches!(spec.min_available, Some(IntOrString::String(_)))
}

/// `(expectedPods, desiredHealthy)` as upstream's `getExpectedPodCount` computes them:
/// `pods` is the number of pods the budget selects, `scale` the sum of their controllers'
/// scale (needed when [`needs_scale`]).
pub fn expected_and_desired(
    spec: &PodDisruptionBudgetSpec,
    pods: i32,
    scale: i32,
) -> Result<(i32, i32), String> {
    if let Some(max) = &spec.max_unavailable {
        let unavailable = scaled_value(max, scale, true)?;
        return Ok((scale, (scale - unavailable).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(min)) => Ok((pods, *min)),
        Some(pct @ IntOrString::String(_)) => Ok((scale, scaled_value(pct, scale, true)?)),
        None => Ok((0, 0)),
    }
}

/// How many pods may be disrupted now: healthy beyond desired, and none while the budget
/// expects no pods (its first pods may appear before its status catches up).
pub fn disruptions_allowed(current_healthy: i32, desired_healthy: i32, expected_pods: i32) -> i32 {
    let allowed = current_healthy - desired_healthy;
    if expected_pods <= 0 || allowed <= 0 {
        0
    } else {
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudgetSpec {
        PodDisruptionBudgetSpec {
            min_available: min,
            max_unavailable: max,
            ..Default::default()
        }
    }

    #[test]
    fn percentages_round_up_like_upstream() {
        let p = |s: &str| IntOrString::String(s.into());
        assert_eq!(scaled_value(&p("50%"), 3, true), Ok(2));
        assert_eq!(scaled_value(&p("50%"), 3, false), Ok(1));
        assert_eq!(scaled_value(&IntOrString::Int(4), 3, true), Ok(4));
        assert!(scaled_value(&p("5"), 3, true)
            .expect_err("not a percentage")
            .contains("string is not a percentage"));
    }

    #[test]
    fn min_available_counts_pods_and_max_unavailable_counts_scale() {
        let s = spec(Some(IntOrString::Int(2)), None);
        assert!(!needs_scale(&s));
        let (expected, desired) = expected_and_desired(&s, 3, 0).expect("ok");
        assert_eq!((expected, desired), (3, 2));
        assert_eq!(disruptions_allowed(3, desired, expected), 1);
        assert_eq!(disruptions_allowed(2, desired, expected), 0);

        let s = spec(None, Some(IntOrString::String("50%".into())));
        assert!(needs_scale(&s));
        let (expected, desired) = expected_and_desired(&s, 3, 3).expect("ok");
        assert_eq!((expected, desired), (3, 1));
        assert_eq!(disruptions_allowed(3, desired, expected), 2);

        let s = spec(Some(IntOrString::String("100%".into())), None);
        assert_eq!(expected_and_desired(&s, 2, 4), Ok((4, 4)));
        assert_eq!(
            disruptions_allowed(5, 0, 0),
            0,
            "no expected pods: nothing allowed"
        );
    }
}
