//! Which pods a scale-down deletes first: `ActivePodsWithRanks.Less` (k8s-controllers.md §1.10).

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;

use crate::pods::{self, node_name};

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

/// A time as the ranking compares it: zero first, then by log2 bucket of its age, ties by
/// pod UID.
fn time_key(p: &Pod, t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> (u8, i64, String) {
    match t {
        None => (0, 0, String::new()),
        Some(t) => (1, log_bucket(now, t), uid(p).to_string()),
    }
}

/// The deletion order as a sort key (`ActivePodsWithRanks.Less` made a total order: each
/// rule is one component, compared in turn; smaller goes first).
type RankKey = (
    u8,
    u8,
    bool,
    i32,
    std::cmp::Reverse<usize>,
    Option<(u8, i64, String)>,
    std::cmp::Reverse<i32>,
    std::cmp::Reverse<i32>,
    (u8, i64, String),
);

fn sort_key(p: &Pod, rank: usize, now: DateTime<Utc>) -> RankKey {
    let ready = pods::is_ready(p);
    let ready_time = ready.then(|| time_key(p, pods::ready_since(p).flatten(), now));
    let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (
        u8::from(!node_name(p).is_empty()),
        phase_rank(p),
        ready,
        deletion_cost(p),
        std::cmp::Reverse(rank),
        ready_time,
        std::cmp::Reverse(max_restarts(p, false)),
        std::cmp::Reverse(max_restarts(p, true)),
        time_key(p, created, now),
    )
}

/// `Less(i, j)` as an ordering: `Less` means `a` should be deleted before `b`.
pub fn compare(a: &Pod, ra: usize, b: &Pod, rb: usize, now: DateTime<Utc>) -> Ordering {
    sort_key(a, ra, now).cmp(&sort_key(b, rb, now))
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
    let mut ranked: Vec<(RankKey, &Pod)> = pods
        .iter()
        .map(|p| (sort_key(p, rank(p), now), *p))
        .collect();
    ranked.sort_by(|a, b| a.0.cmp(&b.0));
    ranked.into_iter().take(n).map(|(_, p)| p).collect()
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
