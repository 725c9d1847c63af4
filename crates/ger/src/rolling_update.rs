//! `ger rolling-update` (and the kubectl plugin `kubectl-rolling_update`): kubectl 1.17's
//! rolling update of a ReplicationController, which kubectl itself no longer ships.
//!
//! The new controller is `<old>-<md5>` (or NEW_NAME) with a `deployment=<md5>` label and
//! selector; it is scaled up one pod at a time while the old one is scaled down, never below
//! the desired number of available pods (maxUnavailable 0, maxSurge 1). Progress lives in
//! annotations, so running the same command again resumes an interrupted update.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Client, ResourceExt};
use md5::{Digest, Md5};
use serde_json::json;

const PREFIX: &str = "kubectl.kubernetes.io/";

fn ann(key: &str) -> String {
    format!("{PREFIX}{key}")
}

#[derive(Debug, clap::Args)]
pub struct RollingUpdateArgs {
    /// The ReplicationController to update.
    pub old: Option<String>,
    /// The name of the new controller (default: `<old>-<hash>`, renamed to `<old>` at the end).
    pub new: Option<String>,
    /// The image for the new controller.
    #[arg(long)]
    pub image: Option<String>,
    /// A file with the new ReplicationController.
    #[arg(short = 'f', long = "filename")]
    pub filename: Option<PathBuf>,
    /// Time to wait between updating pods.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub update_period: Duration,
    /// Time between polls of controller status.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Longest wait for a controller to scale.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The container whose image changes (for multi-container pods).
    #[arg(long)]
    pub container: Option<String>,
    /// Image pull policy for the new image.
    #[arg(long)]
    pub image_pull_policy: Option<String>,
    /// The label key that tells the old and new pods apart.
    #[arg(long, default_value = "deployment")]
    pub deployment_label_key: String,
    /// Abort an update in progress and return to the old controller.
    #[arg(long)]
    pub rollback: bool,
    /// Print what would be rolled, change nothing (`--dry-run`, `--dry-run=client`).
    #[arg(long, num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: Option<String>,
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// Go-style durations: `500ms`, `3s`, `1m`, `1m30s`, `2h`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        num.clear();
        let secs = match unit.as_str() {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(format!("invalid duration {s:?}")),
        };
        total += Duration::from_secs_f64(secs);
    }
    if !num.is_empty() {
        return Err(format!("missing unit in duration {s:?}"));
    }
    Ok(total)
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn replicas(rc: &ReplicationController) -> i32 {
    rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn first_image(rc: &ReplicationController) -> Option<String> {
    rc.spec
        .as_ref()?
        .template
        .as_ref()?
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()
}

struct Updater {
    api: Api<ReplicationController>,
    pods: Api<Pod>,
    args: RollingUpdateArgs,
}

pub async fn run(args: RollingUpdateArgs) -> Result<(), String> {
    let Some(old) = args.old.clone() else {
        return Err("Must specify the controller to update".into());
    };
    if args.deployment_label_key.is_empty() {
        return Err("--deployment-label-key can not be empty".into());
    }
    if args.rollback {
        if args.image.is_some() || args.filename.is_some() {
            return Err("Don't specify --filename or --image on rollback".into());
        }
    } else {
        match (&args.image, &args.filename) {
            (None, None) => {
                return Err("Must specify --filename or --image for new controller".into());
            }
            (Some(_), Some(_)) => {
                return Err("--filename and --image can not both be specified".into());
            }
            _ => {}
        }
    }
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| e.to_string())?
        }
        None => kube::Config::infer().await.map_err(|e| e.to_string())?,
    };
    let ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| e.to_string())?;
    let u = Updater {
        api: Api::namespaced(client.clone(), &ns),
        pods: Api::namespaced(client, &ns),
        args,
    };
    u.update(&old).await
}

fn api_err(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("Error from server ({}): {}", s.reason, s.message),
        other => other.to_string(),
    }
}

impl Updater {
    async fn update(&self, old_name: &str) -> Result<(), String> {
        let mut old = self.api.get(old_name).await.map_err(api_err)?;
        let key = self.args.deployment_label_key.clone();
        // The new controller: named, or the one an earlier run started.
        let next_id = old.annotations().get(&ann("next-controller-id")).cloned();
        let existing_name = self.args.new.clone().or(next_id);
        if self.args.rollback {
            return self.rollback(old, existing_name).await;
        }
        let (new, resumed) = self.target(&old, existing_name.as_deref(), &key).await?;
        let dry_run = self
            .args
            .dry_run
            .as_deref()
            .is_some_and(|d| d != "none" && d != "false");
        if dry_run {
            println!("Rolling from:\n{old_name}\nTo:\n{}\n", new.name_any());
            return Ok(());
        }
        if resumed {
            println!(
                "Found existing update in progress ({}), resuming.",
                new.name_any()
            );
        }
        old = self.stamp(old, &new.name_any(), &key).await?;
        let new = self.roll(&mut old, new).await?;
        let cleanup = json!({"metadata": {"annotations": {
            ann("update-source-id"): null, ann("desired-replicas"): null}}});
        let new = self.merge(&new.name_any(), &cleanup).await?;
        if self.args.filename.is_some() {
            println!("Update succeeded. Deleting old controller: {old_name}");
            self.delete(old_name, PropagationPolicy::Background).await?;
            println!(
                "replicationcontroller \"{}\" rolling updated",
                new.name_any()
            );
        } else if self.args.new.is_none() {
            // One name given: the new controller takes the old one's name.
            println!("Update succeeded. Deleting old controller: {old_name}");
            self.delete(old_name, PropagationPolicy::Background).await?;
            println!("Renaming {} to {old_name}", new.name_any());
            self.rename(new, old_name).await?;
            println!("replicationcontroller \"{old_name}\" rolling updated");
        } else {
            println!("Update succeeded. Deleting {old_name}");
            self.delete(old_name, PropagationPolicy::Background).await?;
            println!(
                "replicationcontroller \"{old_name}\" rolling updated to \"{}\"",
                new.name_any()
            );
        }
        Ok(())
    }

    /// A merge patch of the controller `name`.
    async fn merge(
        &self,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<ReplicationController, String> {
        self.api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(api_err)
    }

    /// The controller to roll to, and whether it is one an earlier run left in progress.
    async fn target(
        &self,
        old: &ReplicationController,
        existing_name: Option<&str>,
        key: &str,
    ) -> Result<(ReplicationController, bool), String> {
        if let Some(path) = &self.args.filename {
            return Ok((self.new_from_file(old, path)?, false));
        }
        let existing = match existing_name {
            Some(n) => self.api.get_opt(n).await.map_err(api_err)?,
            None => None,
        };
        let Some(rc) = existing else {
            return Ok((self.new_from_image(old, key)?, false));
        };
        let image = first_image(&rc).unwrap_or_default();
        if self.args.image.as_deref().is_some_and(|i| i != image) {
            return Err(format!(
                "Found existing in-progress update to image ({image}).\nEither continue in-progress update with --image={image} or rollback with --rollback"
            ));
        }
        Ok((rc, true))
    }

    /// Point the old controller at the new one and, if its selector lacks the deployment
    /// key, give it (and its pods) `<key>=<hash>-orig`.
    async fn stamp(
        &self,
        old: ReplicationController,
        new_name: &str,
        key: &str,
    ) -> Result<ReplicationController, String> {
        let old_name = old.name_any();
        let old_selector = old
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        if old_selector.contains_key(key) {
            if old
                .annotations()
                .get(&ann("next-controller-id"))
                .map(String::as_str)
                == Some(new_name)
            {
                return Ok(old);
            }
            let patch = json!({"metadata": {"annotations": {ann("next-controller-id"): new_name}}});
            return self.merge(&old_name, &patch).await;
        }
        let orig = format!(
            "{}-orig",
            md5_hex(&serde_json::to_vec(&old).unwrap_or_default())
        );
        let list = self
            .pods
            .list(&ListParams::default().labels(&selector_string(&old_selector)))
            .await
            .map_err(api_err)?;
        for pod in list.items {
            let patch = json!({"metadata": {"labels": {key: orig.clone()}}});
            let _ = self
                .pods
                .patch(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await;
        }
        let mut selector = old_selector;
        selector.insert(key.to_string(), orig.clone());
        let patch = json!({"metadata": {"annotations": {ann("next-controller-id"): new_name}},
            "spec": {"selector": selector, "template": {"metadata": {"labels": {key: orig}}}}});
        self.merge(&old_name, &patch).await
    }

    /// The new controller from `-f FILE`: one ReplicationController, another name, a selector
    /// that differs from the old one's on a shared key.
    fn new_from_file(
        &self,
        old: &ReplicationController,
        path: &std::path::Path,
    ) -> Result<ReplicationController, String> {
        let file = path.display().to_string();
        let text = if file == "-" {
            std::io::read_to_string(std::io::stdin()).map_err(|e| e.to_string())?
        } else {
            std::fs::read_to_string(path)
                .map_err(|_| format!("please make sure {file} exists and is not empty"))?
        };
        let value: serde_json::Value =
            serde_yaml::from_str(&text).map_err(|e| format!("error parsing {file}: {e}"))?;
        if value.get("items").is_some() {
            return Err(format!("{file} specifies multiple items"));
        }
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        if kind != "ReplicationController" {
            let api = value
                .get("apiVersion")
                .and_then(|k| k.as_str())
                .unwrap_or("");
            return Err(format!(
                "{file} contains a {api}, Kind={kind} not a ReplicationController"
            ));
        }
        let mut new: ReplicationController =
            serde_json::from_value(value).map_err(|e| format!("error parsing {file}: {e}"))?;
        if new.name_any() == old.name_any() {
            return Err(format!(
                "{file} cannot have the same name as the existing ReplicationController {}",
                old.name_any()
            ));
        }
        let old_sel = old
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let new_sel = new
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        if !new_sel
            .iter()
            .any(|(k, v)| old_sel.get(k).is_some_and(|o| o != v))
        {
            return Err(format!(
                "{file} must specify a matching key with non-equal value in Selector for {}",
                old.name_any()
            ));
        }
        let spec = new.spec.get_or_insert_with(Default::default);
        if spec.replicas.is_none() {
            spec.replicas = Some(replicas(old));
        }
        new.metadata.namespace = old.metadata.namespace.clone();
        Ok(new)
    }

    fn new_from_image(
        &self,
        old: &ReplicationController,
        key: &str,
    ) -> Result<ReplicationController, String> {
        let image = self.args.image.clone().unwrap_or_default();
        let mut new = old.clone();
        let spec = new.spec.get_or_insert_with(Default::default);
        let template = spec.template.get_or_insert_with(Default::default);
        let pod_spec = template.spec.get_or_insert_with(Default::default);
        let idx = match (&self.args.container, pod_spec.containers.len()) {
            (_, 0) => return Err(format!("pod has no containers! ({})", old.name_any())),
            (Some(c), _) => pod_spec
                .containers
                .iter()
                .position(|x| &x.name == c)
                .ok_or_else(|| format!("container {c} not found in pod"))?,
            (None, 1) => 0,
            (None, _) => {
                return Err(
                    "must specify container to update when updating a multi-container pod".into(),
                );
            }
        };
        let c = &mut pod_spec.containers[idx];
        if c.image.as_deref() == Some(image.as_str()) && self.args.image_pull_policy.is_none() {
            return Err("--image-pull-policy (Always|Never|IfNotPresent) must be provided when --image is the same as existing container image".into());
        }
        c.image = Some(image);
        if let Some(p) = &self.args.image_pull_policy {
            c.image_pull_policy = Some(p.clone());
        }
        new.metadata = Default::default();
        let hash = md5_hex(&serde_json::to_vec(&new).unwrap_or_default());
        let name = self
            .args
            .new
            .clone()
            .unwrap_or_else(|| format!("{}-{hash}", old.name_any()));
        let spec = new.spec.get_or_insert_with(Default::default);
        spec.selector
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_string(), hash.clone());
        if let Some(t) = spec.template.as_mut() {
            t.metadata
                .get_or_insert_with(Default::default)
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert(key.to_string(), hash);
        }
        new.metadata.name = Some(name);
        new.metadata.namespace = old.metadata.namespace.clone();
        new.metadata.labels = old.metadata.labels.clone();
        new.status = None;
        Ok(new)
    }

    /// `RollingUpdater.Update`: scale the new controller up and the old one down.
    async fn roll(
        &self,
        old: &mut ReplicationController,
        new: ReplicationController,
    ) -> Result<ReplicationController, String> {
        let source_id = format!("{}:{}", old.name_any(), old.uid().unwrap_or_default());
        let mut new = match self.api.get_opt(&new.name_any()).await.map_err(api_err)? {
            Some(rc) => {
                let a = rc.annotations();
                if a.get(&ann("update-source-id")) != Some(&source_id)
                    || !a.contains_key(&ann("desired-replicas"))
                {
                    return Err(format!(
                        "Missing/unexpected annotations for controller {}, expected {source_id} : {:?}",
                        rc.name_any(),
                        a
                    ));
                }
                println!(
                    "Continuing update with existing controller {}.",
                    rc.name_any()
                );
                rc
            }
            None => {
                let mut rc = new;
                let want = replicas(&rc);
                if want <= 0 {
                    return Err(format!(
                        "Invalid controller spec for {}; required: > 0 replicas, actual: {want}",
                        rc.name_any()
                    ));
                }
                let a = rc.metadata.annotations.get_or_insert_with(BTreeMap::new);
                a.insert(ann("desired-replicas"), want.to_string());
                a.insert(ann("update-source-id"), source_id.clone());
                if let Some(s) = rc.spec.as_mut() {
                    s.replicas = Some(0);
                }
                let created = self
                    .api
                    .create(&PostParams::default(), &rc)
                    .await
                    .map_err(api_err)?;
                println!("Created {}", created.name_any());
                created
            }
        };
        let desired: i32 = new
            .annotations()
            .get(&ann("desired-replicas"))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                format!(
                    "Unable to parse annotation for {}: desired-replicas",
                    new.name_any()
                )
            })?;
        if !old.annotations().contains_key(&ann("original-replicas")) {
            let patch = json!({"metadata": {"annotations": {ann("original-replicas"): replicas(old).to_string()}}});
            *old = self.merge(&old.name_any(), &patch).await?;
        }
        let (max_surge, min_available) = (1, desired);
        println!(
            "Scaling up {} from {} to {desired}, scaling down {} from {} to 0 (keep {min_available} pods available, don't exceed {} pods)",
            new.name_any(),
            replicas(&new),
            old.name_any(),
            replicas(old),
            desired + max_surge
        );
        let mut deadline = Instant::now() + self.args.timeout;
        while replicas(&new) != desired || replicas(old) != 0 {
            let (before_new, before_old) = (replicas(&new), replicas(old));
            // Scale up.
            if replicas(&new) != desired {
                let mut inc = desired + max_surge - (replicas(old) + replicas(&new));
                if replicas(old) == 0 {
                    inc = desired - replicas(&new);
                }
                if inc > 0 {
                    let n = (replicas(&new) + inc).min(desired);
                    println!("Scaling {} up to {n}", new.name_any());
                    new = self.scale_and_wait(&new.name_any(), n).await?;
                }
            }
            tokio::time::sleep(self.args.update_period).await;
            // Scale down, keeping min_available pods available.
            if replicas(old) != 0 {
                let available = self.available(&new).await?;
                let decrement =
                    replicas(old) + replicas(&new) - min_available - (replicas(&new) - available);
                if decrement > 0 {
                    let mut n = (replicas(old) - decrement).max(0);
                    if replicas(&new) == desired && available == desired {
                        n = 0;
                    }
                    println!("Scaling {} down to {n}", old.name_any());
                    *old = self.scale_and_wait(&old.name_any(), n).await?;
                }
            }
            if replicas(&new) != before_new || replicas(old) != before_old {
                deadline = Instant::now() + self.args.timeout;
            } else if Instant::now() > deadline {
                return Err("timed out waiting for any update progress to be made".into());
            }
        }
        Ok(new)
    }

    /// Available pods of `rc` (ready, not being deleted).
    async fn available(&self, rc: &ReplicationController) -> Result<i32, String> {
        let selector = rc
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let list = self
            .pods
            .list(&ListParams::default().labels(&selector_string(&selector)))
            .await
            .map_err(api_err)?;
        Ok(list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count() as i32)
    }

    /// Scale through /scale, then wait until the controller reports that many pods.
    async fn scale_and_wait(&self, name: &str, n: i32) -> Result<ReplicationController, String> {
        let patch = json!({"spec": {"replicas": n}});
        self.api
            .patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err)?;
        let deadline = Instant::now() + self.args.timeout;
        loop {
            let rc = self.api.get(name).await.map_err(api_err)?;
            if rc.status.as_ref().map(|s| s.replicas) == Some(n) {
                return Ok(rc);
            }
            if Instant::now() > deadline {
                return Err(format!("timed out waiting for {name} to have {n} replicas"));
            }
            tokio::time::sleep(self.args.poll_interval.min(Duration::from_millis(500))).await;
        }
    }

    async fn delete(&self, name: &str, policy: PropagationPolicy) -> Result<(), String> {
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            ..Default::default()
        };
        match self.api.delete(name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_err(e)),
        }
    }

    /// Re-create `rc` under `name`, its pods orphaned in between and adopted again.
    async fn rename(&self, rc: ReplicationController, name: &str) -> Result<(), String> {
        let old_name = rc.name_any();
        self.delete(&old_name, PropagationPolicy::Orphan).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .api
            .get_opt(&old_name)
            .await
            .map_err(api_err)?
            .is_some()
        {
            if Instant::now() > deadline {
                return Err(format!("timed out waiting for {old_name} to be deleted"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The old controller may still be going too.
        while self.api.get_opt(name).await.map_err(api_err)?.is_some() {
            if Instant::now() > deadline {
                return Err(format!("timed out waiting for {name} to be deleted"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut next = rc;
        next.metadata = kube::api::ObjectMeta {
            name: Some(name.to_string()),
            namespace: next.metadata.namespace.clone(),
            labels: next.metadata.labels.clone(),
            annotations: next.metadata.annotations.clone(),
            ..Default::default()
        };
        next.status = None;
        self.api
            .create(&PostParams::default(), &next)
            .await
            .map_err(api_err)?;
        Ok(())
    }

    /// `--rollback`: scale the old controller back and remove the new one.
    async fn rollback(
        &self,
        mut old: ReplicationController,
        new_name: Option<String>,
    ) -> Result<(), String> {
        let name = new_name.unwrap_or_default();
        let Some(new) = self.api.get_opt(&name).await.map_err(api_err)? else {
            return Err(format!("Could not find {name} to rollback."));
        };
        let original: i32 = old
            .annotations()
            .get(&ann("original-replicas"))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                format!(
                    "couldn't find original replica count of \"{}\"",
                    old.name_any()
                )
            })?;
        println!("Setting \"{}\" replicas to {original}", old.name_any());
        // The old controller is the target now; the abandoned one goes.
        let target = self.scale_and_wait(&old.name_any(), original).await?;
        old = target;
        let _ = self.scale_and_wait(&new.name_any(), 0).await?;
        self.delete(&new.name_any(), PropagationPolicy::Background)
            .await?;
        let patch = json!({"metadata": {"annotations": {ann("next-controller-id"): null, ann("original-replicas"): null}}});
        self.merge(&old.name_any(), &patch).await?;
        println!("replicationcontroller \"{}\" rolled back", old.name_any());
        Ok(())
    }
}

fn selector_string(sel: &BTreeMap<String, String>) -> String {
    sel.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for (s, want) in [
            ("1m", 60.0),
            ("3s", 3.0),
            ("500ms", 0.5),
            ("1m30s", 90.0),
            ("2h", 7200.0),
        ] {
            assert_eq!(parse_duration(s).unwrap().as_secs_f64(), want, "{s}");
        }
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
    }
}
