//! Which pods a scale-down deletes first: `ActivePodsWithRanks.Less` (k8s-controllers.md §1.10).

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;

use crate::pods;

fn node_name(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn phase_rank(p: &Pod) -> u8 {
    match pods::phase(p) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn deletion_cost(p: &Pod) -> i32 {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(p: &Pod, sidecars: bool) -> i32 {
    let Some(status) = p.status.as_ref() else {
        return 0;
    };
    if sidecars {
        let restartable: Vec<&str> = p
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten())
            .filter(|c| c.restart_policy.as_deref() == Some("Always"))
            .map(|c| c.name.as_str())
            .collect();
        status
            .init_container_statuses
            .iter()
            .flatten()
            .filter(|c| restartable.contains(&c.name.as_str()))
            .map(|c| c.restart_count)
            .max()
            .unwrap_or(0)
    } else {
        status
            .container_statuses
            .iter()
            .flatten()
            .map(|c| c.restart_count)
            .max()
            .unwrap_or(0)
    }
}

/// `floor(log2(now - t))` in nanoseconds, or -1 when `t` is not in the past.
fn log_bucket(now: DateTime<Utc>, t: DateTime<Utc>) -> i64 {
    let d = (now - t).num_nanoseconds().unwrap_or(i64::MAX);
    if d <= 0 {
        -1
    } else {
        i64::from(63 - d.leading_zeros() as i32)
    }
}

fn uid(p: &Pod) -> &str {
    p.metadata.uid.as_deref().unwrap_or("")
}

/// Compare two times as the ranking does: log buckets with a UID tiebreak (newer first).
fn compare_times(
    a: (&Pod, Option<DateTime<Utc>>),
    b: (&Pod, Option<DateTime<Utc>>),
    now: DateTime<Utc>,
) -> Ordering {
    match (a.1, b.1) {
        (Some(ta), Some(tb)) => {
            let (ba, bb) = (log_bucket(now, ta), log_bucket(now, tb));
            if ba != bb {
                ba.cmp(&bb)
            } else {
                uid(a.0).cmp(uid(b.0))
            }
        }
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// `Less(i, j)` as an ordering: `Less` means `a` should be deleted before `b`.
pub fn compare(a: &Pod, ra: usize, b: &Pod, rb: usize, now: DateTime<Utc>) -> Ordering {
    let (na, nb) = (node_name(a), node_name(b));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    let by = phase_rank(a).cmp(&phase_rank(b));
    if by != Ordering::Equal {
        return by;
    }
    let (ready_a, ready_b) = (pods::is_ready(a), pods::is_ready(b));
    if ready_a != ready_b {
        return if ready_a {
            Ordering::Greater
        } else {
            Ordering::Less
        };
    }
    let by = deletion_cost(a).cmp(&deletion_cost(b));
    if by != Ordering::Equal {
        return by;
    }
    if ra != rb {
        return rb.cmp(&ra);
    }
    if ready_a && ready_b {
        let ta = pods::ready_since(a).flatten();
        let tb = pods::ready_since(b).flatten();
        if ta != tb {
            let by = compare_times((a, ta), (b, tb), now);
            if by != Ordering::Equal {
                return by;
            }
        }
    }
    for sidecars in [false, true] {
        let by = max_restarts(b, sidecars).cmp(&max_restarts(a, sidecars));
        if by != Ordering::Equal {
            return by;
        }
    }
    let ca = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let cb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
    if ca != cb {
        return compare_times((a, ca), (b, cb), now);
    }
    Ordering::Equal
}

/// Pick `n` victims among `pods` (`getPodsToDelete`); `rank` gives each pod's rank.
pub fn pods_to_delete<'a>(
    pods: &[&'a Pod],
    rank: impl Fn(&Pod) -> usize,
    n: usize,
    now: DateTime<Utc>,
) -> Vec<&'a Pod> {
    if n >= pods.len() {
        return pods.to_vec();
    }
    let mut ranked: Vec<(&Pod, usize)> = pods.iter().map(|p| (*p, rank(p))).collect();
    ranked.sort_by(|(a, ra), (b, rb)| compare(a, *ra, b, *rb, now));
    ranked.into_iter().take(n).map(|(p, _)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(name: &str, node: &str, phase: &str, ready: bool, age_s: i64) -> Pod {
        let now = Utc::now();
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(Time(now - chrono::Duration::seconds(age_s))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: Some(Time(now - chrono::Duration::seconds(age_s))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn deletion_order_follows_the_upstream_rules() {
        let now = Utc::now();
        let cases: Vec<(&str, Pod, Pod)> = vec![
            (
                "unscheduled before scheduled",
                pod("a", "", "Pending", false, 10),
                pod("b", "n1", "Pending", false, 10),
            ),
            (
                "pending before running",
                pod("a", "n1", "Pending", false, 10),
                pod("b", "n1", "Running", false, 10),
            ),
            (
                "not ready before ready",
                pod("a", "n1", "Running", false, 10),
                pod("b", "n1", "Running", true, 10),
            ),
            (
                "ready for less time first",
                pod("a", "n1", "Running", true, 10),
                pod("b", "n1", "Running", true, 10_000),
            ),
            (
                "newer before older",
                pod("a", "n1", "Pending", false, 10),
                pod("b", "n1", "Pending", false, 10_000),
            ),
        ];
        for (name, a, b) in cases {
            assert_eq!(compare(&a, 0, &b, 0, now), Ordering::Less, "{name}");
            assert_eq!(compare(&b, 0, &a, 0, now), Ordering::Greater, "{name}");
        }
        let (a, b) = (
            pod("a", "n1", "Running", true, 10),
            pod("b", "n2", "Running", true, 10),
        );
        assert_eq!(
            compare(&a, 3, &b, 1, now),
            Ordering::Less,
            "higher rank first"
        );
        let pods = [
            pod("x", "n", "Running", true, 50),
            pod("y", "", "Pending", false, 5),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let victims = pods_to_delete(&refs, |_| 0, 1, now);
        assert_eq!(victims[0].metadata.name.as_deref(), Some("y"));
    }
}
