//! Deployment arithmetic and bookkeeping (`pkg/controller/deployment/util`): fence posts,
//! replica maths, revision annotations, template hashing and comparison, conditions.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
pub const HASH_LABEL: &str = "pod-template-hash";
/// ger: roll back by itself when the progress deadline passes.
pub const AUTO_ROLLBACK: &str = "deployment.ger.io/auto-rollback";
/// ger: set on a ReplicaSet once its rollout completed (an auto-rollback target).
pub const BECAME_AVAILABLE: &str = "deployment.ger.io/became-available";

/// Annotations the Deployment does not hand to its ReplicaSets.
pub const SKIP_ANNOTATIONS: [&str; 6] = [
    LAST_APPLIED,
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    ROLLBACK_TO,
];

const HISTORY_LIMIT: usize = 2000;

/// `GetScaledValueFromIntOrPercent`.
pub fn scaled_value(v: Option<&IntOrString>, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        None => Ok(0),
        Some(IntOrString::Int(i)) => Ok(*i),
        Some(IntOrString::String(s)) => {
            let digits = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let p: f64 = digits.parse().map_err(|_| format!("invalid value {s:?}"))?;
            let x = p * f64::from(total) / 100.0;
            Ok(if round_up { x.ceil() } else { x.floor() } as i32)
        }
    }
}

/// `ResolveFenceposts`: (surge, unavailable).
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), String> {
    let surge = scaled_value(max_surge, desired, true)?;
    let unavailable = scaled_value(max_unavailable, desired, false)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub fn is_rolling(d: &Deployment) -> bool {
    strategy_type(d) == "RollingUpdate"
}

pub fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    resolve_fenceposts(
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas(d),
    )
    .unwrap_or((0, 0))
}

/// `MaxSurge(d)`.
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).0
}

/// `MaxUnavailable(d)`.
pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

/// `MinAvailable(d)`.
pub fn min_available(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    replicas(d) - max_unavailable(d)
}

/// `NewRSNewReplicas`.
pub fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    if !is_rolling(d) {
        return replicas(d);
    }
    let surge = max_surge(d);
    let current: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let max_total = replicas(d) + surge;
    if current >= max_total {
        return rs_replicas(new_rs);
    }
    let up = (max_total - current).min(replicas(d) - rs_replicas(new_rs));
    rs_replicas(new_rs) + up
}

pub fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// A replica-count annotation as the readers accept it: a decimal in `[0, 2^31-1]`.
pub fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(&rs.metadata, key)?
        .parse::<i32>()
        .ok()
        .filter(|v| *v >= 0)
}

/// The revision of an RS (0 when absent or unparsable).
pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// `SetNewReplicaSetAnnotations`; whether anything changed.
pub fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = copy_annotations(d, rs);
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let old = ann.get(REVISION).cloned();
    let old_rev: i64 = match old.as_deref() {
        None => 0,
        Some(s) => match s.parse() {
            Ok(v) => v,
            Err(_) => return changed,
        },
    };
    if old_rev < new_revision {
        ann.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let mut history: Vec<String> = ann
                .get(REVISION_HISTORY)
                .filter(|h| !h.is_empty())
                .map(|h| h.split(',').map(String::from).collect())
                .unwrap_or_default();
            let joined_len = |h: &Vec<String>| h.join(",").len();
            while !history.is_empty() && joined_len(&history) + old.len() + 1 > HISTORY_LIMIT {
                history.remove(0);
            }
            if history.is_empty() || joined_len(&history) + old.len() < HISTORY_LIMIT {
                history.push(old);
            }
            ann.insert(REVISION_HISTORY.into(), history.join(","));
        }
    }
    if !exists {
        ann.insert(DESIRED_REPLICAS.into(), replicas(d).to_string());
        ann.insert(
            MAX_REPLICAS.into(),
            (replicas(d) + max_surge(d)).to_string(),
        );
        changed = true;
    }
    changed
}

/// Copy the Deployment's annotations (but the skip list) to the RS; whether any changed.
pub fn copy_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let mut changed = false;
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if SKIP_ANNOTATIONS.contains(&k.as_str()) || k == AUTO_ROLLBACK || k == BECAME_AVAILABLE {
            continue;
        }
        if ann.get(k) != Some(v) {
            ann.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    changed
}

/// `ReplicasAnnotationsNeedUpdate`.
pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    annotation(&rs.metadata, DESIRED_REPLICAS) != Some(desired.to_string().as_str())
        || annotation(&rs.metadata, MAX_REPLICAS) != Some(max.to_string().as_str())
}

/// Recursively drop nulls and empty maps and lists (Go's semantic equality of nil and
/// empty).
fn normalise(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for x in m.values_mut() {
                normalise(x);
            }
            m.retain(|_, x| {
                !(x.is_null()
                    || x.as_object().is_some_and(|o| o.is_empty())
                    || x.as_array().is_some_and(|a| a.is_empty()))
            });
        }
        Value::Array(a) => a.iter_mut().for_each(normalise),
        _ => {}
    }
}

/// A template as compared: JSON without the hash label, nils and empties dropped.
pub fn template_key(t: Option<&PodTemplateSpec>) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Some(labels) = v
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    normalise(&mut v);
    v
}

/// `EqualIgnoreHash`.
pub fn equal_ignore_hash(a: Option<&PodTemplateSpec>, b: Option<&PodTemplateSpec>) -> bool {
    template_key(a) == template_key(b)
}

const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `ComputeHash`: FNV-1a-32 over the template (canonical JSON) and the collision count,
/// in upstream's safe encoding.
pub fn compute_hash(t: Option<&PodTemplateSpec>, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(template_key(t).to_string().as_bytes());
    if let Some(c) = collision_count {
        let mut buf = [0u8; 8];
        buf[..4].copy_from_slice(&(c as u32).to_le_bytes());
        feed(&buf);
    }
    h.to_string()
        .bytes()
        .map(|c| SAFE_ALPHABET[usize::from(c) % SAFE_ALPHABET.len()] as char)
        .collect()
}

pub fn condition<'a>(status: &'a DeploymentStatus, ty: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == ty)
}

pub fn new_condition(
    ty: &str,
    status: &str,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: ty.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// `SetDeploymentCondition`.
pub fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conds.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

pub fn remove_condition(status: &mut DeploymentStatus, ty: &str) {
    if let Some(c) = status.conditions.as_mut() {
        c.retain(|x| x.type_ != ty);
    }
}

pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|p| *p != i32::MAX)
}

/// `DeploymentComplete`.
pub fn deployment_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = replicas(d);
    s.updated_replicas.unwrap_or(0) == want
        && s.replicas.unwrap_or(0) == want
        && s.available_replicas.unwrap_or(0) == want
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// `DeploymentProgressing`.
pub fn deployment_progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let g = |s: &DeploymentStatus| {
        (
            s.replicas.unwrap_or(0),
            s.updated_replicas.unwrap_or(0),
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0),
        )
    };
    let (or, ou, ord, oa) = g(old);
    let (nr, nu, nrd, na) = g(new);
    nu > ou || (nr - nu) < (or - ou) || nrd > ord || na > oa
}

/// `DeploymentTimedOut`.
pub fn deployment_timed_out(d: &Deployment, s: &DeploymentStatus, now: DateTime<Utc>) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = condition(s, "Progressing") else {
        return false;
    };
    match c.reason.as_deref() {
        Some("NewReplicaSetAvailable") => false,
        Some("ProgressDeadlineExceeded") => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0 + chrono::Duration::seconds(i64::from(deadline)) < now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ios(s: &str) -> IntOrString {
        match s.parse::<i32>() {
            Ok(i) => IntOrString::Int(i),
            Err(_) => IntOrString::String(s.into()),
        }
    }

    #[test]
    fn fenceposts_table() {
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            i32,
            Result<(i32, i32), ()>,
        );
        let cases: [Case; 7] = [
            (Some("0%"), Some("0%"), 0, Ok((0, 1))),
            (Some("39%"), Some("39%"), 10, Ok((4, 3))),
            (Some("oops"), Some("39%"), 10, Err(())),
            (Some("55%"), Some("urg"), 10, Err(())),
            (None, Some("39%"), 10, Ok((0, 3))),
            (Some("39%"), None, 10, Ok((4, 0))),
            (None, None, 10, Ok((0, 1))),
        ];
        for (s, u, d, want) in cases {
            let got =
                resolve_fenceposts(s.map(ios).as_ref(), u.map(ios).as_ref(), d).map_err(|_| ());
            assert_eq!(got, want, "{s:?} {u:?} {d}");
        }
    }

    pub fn deployment(replicas: i32, strategy: &str, surge: &str, unavailable: &str) -> Deployment {
        let strategy = if strategy == "Recreate" {
            json!({"type": "Recreate"})
        } else {
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": ios_json(surge), "maxUnavailable": ios_json(unavailable)}})
        };
        serde_json::from_value(
            json!({"metadata": {"name": "d"}, "spec": {"replicas": replicas,
            "selector": {"matchLabels": {"a": "b"}}, "strategy": strategy,
            "template": {"metadata": {"labels": {"a": "b"}}}}}),
        )
        .unwrap()
    }

    fn ios_json(s: &str) -> Value {
        match s.parse::<i64>() {
            Ok(i) => json!(i),
            Err(_) => json!(s),
        }
    }

    fn rs(replicas: i32) -> ReplicaSet {
        serde_json::from_value(
            json!({"metadata": {"name": "r"}, "spec": {"replicas": replicas,
            "selector": {}}}),
        )
        .unwrap()
    }

    #[test]
    fn new_rs_new_replicas_table() {
        let other = rs(5);
        for (strategy, d, new, surge, want) in [
            ("RollingUpdate", 1, 5, "1", 5),
            ("RollingUpdate", 6, 2, "10", 6),
            ("Recreate", 3, 1, "1", 3),
        ] {
            let dep = deployment(d, strategy, surge, "1");
            let new_rs = rs(new);
            assert_eq!(new_rs_new_replicas(&dep, &[&other, &new_rs], &new_rs), want);
        }
    }

    #[test]
    fn max_unavailable_and_min_available() {
        for (r, mu, want_max, want_min) in [
            (10, "5", 5, 5),
            (10, "10", 10, 0),
            (5, "10", 5, 0),
            (0, "10", 0, 0),
            (10, "50%", 5, 5),
            (10, "60%", 6, 4),
            (10, "100%", 10, 0),
            (5, "100%", 5, 0),
        ] {
            let d = deployment(r, "RollingUpdate", "1", mu);
            assert_eq!(max_unavailable(&d), want_max, "{r} {mu}");
            assert_eq!(min_available(&d), want_min, "{r} {mu}");
        }
        let d = deployment(10, "Recreate", "0", "0");
        assert_eq!((max_unavailable(&d), min_available(&d)), (0, 0));
    }

    #[test]
    fn complete_progressing_timed_out() {
        let status = |r, u, rd, a| DeploymentStatus {
            replicas: Some(r),
            updated_replicas: Some(u),
            ready_replicas: Some(rd),
            available_replicas: Some(a),
            ..Default::default()
        };
        for (desired, r, u, a, want) in [
            (5, 5, 5, 4, false),
            (5, 5, 5, 3, false),
            (5, 5, 5, 5, true),
            (5, 5, 4, 5, false),
            (1, 2, 1, 1, false),
            (1, 1, 1, 0, false),
        ] {
            let d = deployment(desired, "RollingUpdate", "0", "1");
            assert_eq!(deployment_complete(&d, &status(r, u, 0, a)), want);
        }
        for (old, new, want) in [
            ((10, 4, 4, 4), (10, 6, 4, 4), true),
            ((10, 4, 4, 4), (10, 4, 4, 4), false),
            ((10, 4, 6, 6), (8, 4, 6, 6), true),
            ((10, 7, 3, 3), (10, 6, 3, 3), false),
            ((10, 4, 7, 7), (8, 8, 5, 5), true),
            ((10, 10, 9, 8), (10, 10, 10, 8), true),
            ((10, 10, 10, 9), (10, 10, 10, 10), true),
        ] {
            assert_eq!(
                deployment_progressing(
                    &status(old.0, old.1, old.2, old.3),
                    &status(new.0, new.1, new.2, new.3)
                ),
                want
            );
        }
        let now = Utc::now();
        let mut d = deployment(1, "RollingUpdate", "0", "1");
        let mut s = DeploymentStatus::default();
        set_condition(
            &mut s,
            new_condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                String::new(),
                now - chrono::Duration::seconds(11),
            ),
        );
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(10);
        assert!(deployment_timed_out(&d, &s, now));
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(12);
        assert!(!deployment_timed_out(&d, &s, now));
        d.spec.as_mut().unwrap().progress_deadline_seconds = None;
        assert!(!deployment_timed_out(&d, &s, now));
    }

    #[test]
    fn hashes_and_template_equality() {
        let t1: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"a": "b", "pod-template-hash": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).unwrap();
        let t2: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"a": "b"}, "annotations": {}}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).unwrap();
        let t3: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "j"}]}})).unwrap();
        assert!(equal_ignore_hash(Some(&t1), Some(&t2)));
        assert!(!equal_ignore_hash(Some(&t1), Some(&t3)));
        let h = compute_hash(Some(&t2), None);
        assert_eq!(
            h,
            compute_hash(Some(&t1), None),
            "the hash label does not count"
        );
        assert_ne!(h, compute_hash(Some(&t2), Some(1)));
        assert_ne!(h, compute_hash(Some(&t3), None));
        assert!(h.bytes().all(|b| b"456789bcdf".contains(&b)), "{h}");
    }

    #[test]
    fn revision_history_is_bounded() {
        let d = deployment(1, "RollingUpdate", "1", "0");
        let mut r = rs(1);
        for rev in 1..=3 {
            set_new_rs_annotations(&d, &mut r, rev, true);
        }
        assert_eq!(annotation(&r.metadata, REVISION), Some("3"));
        assert_eq!(annotation(&r.metadata, REVISION_HISTORY), Some("1,2"));
        assert!(replicas_annotations_need_update(&r, 1, 2));
        set_new_rs_annotations(&d, &mut r, 4, false);
        assert!(!replicas_annotations_need_update(&r, 1, 2));
    }
}
