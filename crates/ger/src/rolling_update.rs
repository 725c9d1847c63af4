//! `ger rolling-update` (and the kubectl plugin `kubectl-rolling_update`): kubectl 1.17's
//! rolling update of a ReplicationController, which kubectl itself no longer ships.
//!
//! The new controller is `<old>-<md5>` (or NEW_NAME) with a `deployment=<md5>` label and
//! selector; it is scaled up one pod at a time while the old one is scaled down, never below
//! the desired number of available pods (maxUnavailable 0, maxSurge 1). Progress lives in
//! annotations, so running the same command again resumes an interrupted update.
//!
//! The scaling loop ([`roll`]) talks to the cluster through [`Controllers`], so it runs the
//! same against the API server ([`Kube`]) and against an in-memory fake with a fake clock.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ger_controllers::deployment::util::resolve_fenceposts;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Client, ResourceExt};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::json;

const SOURCE_ID: &str = "kubectl.kubernetes.io/update-source-id";
const DESIRED: &str = "kubectl.kubernetes.io/desired-replicas";
const ORIGINAL: &str = "kubectl.kubernetes.io/original-replicas";
const NEXT: &str = "kubectl.kubernetes.io/next-controller-id";

/// `writeln!` to the progress output, a failed write being an error of the command.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        writeln!($out, $($arg)*).map_err(|e| e.to_string())?
    };
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
    /// A file with the new ReplicationController (`-` for standard input).
    #[arg(short = 'f', long = "filename", value_delimiter = ',')]
    pub filename: Vec<PathBuf>,
    /// Time to wait between updating pods.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub update_period: Duration,
    /// Time between polls of controller status.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Longest wait for a controller to scale, and for any progress of the update.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The container whose image changes (for multi-container pods).
    #[arg(long)]
    pub container: Option<String>,
    /// Image pull policy, required (and only used) when --image is the current image.
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
    /// Output format of the result: `name`, `json` or `yaml`.
    #[arg(short = 'o', long = "output")]
    pub output: Option<String>,
    /// Accepted for compatibility; the file is checked by parsing it.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub validate: Option<String>,
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

impl RollingUpdateArgs {
    /// `--image`, an empty value counting as none (as in kubectl).
    fn image(&self) -> Option<&str> {
        self.image.as_deref().filter(|i| !i.is_empty())
    }

    fn dry_run(&self) -> bool {
        self.dry_run
            .as_deref()
            .is_some_and(|d| d != "none" && d != "false")
    }
}

/// Go-style durations: `0`, `300ms`, `3s`, `1m`, `1m30s`, `2h`, `1.5s`, `10us`, `10ns`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("time: invalid duration {s:?}");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            _ => return Err(format!("time: unknown unit in duration {s:?}")),
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(n * per_unit);
    }
    Ok(total)
}

/// kubectl 1.17's argument checks, all of them, in its order.
fn usage_errors(args: &RollingUpdateArgs) -> Vec<&'static str> {
    let mut errors = Vec::new();
    if args.deployment_label_key.is_empty() {
        errors.push("--deployment-label-key can not be empty");
    }
    if args.filename.len() > 1 {
        errors.push("May only specify a single filename for new controller");
    }
    let (file, image) = (!args.filename.is_empty(), args.image().is_some());
    if !args.rollback {
        if !file && !image {
            errors.push("Must specify --filename or --image for new controller");
        } else if file && image {
            errors.push("--filename and --image can not both be specified");
        }
    } else if file || image {
        errors.push("Don't specify --filename or --image on rollback");
    }
    if args.old.is_none() {
        errors.push("Must specify the controller to update");
    }
    errors
}

/// How kubectl reports usage errors: one as `error: <msg>` (the caller adds the prefix),
/// several one after another without it; each says where to find help.
#[derive(Debug, PartialEq)]
enum Usage {
    Fine,
    One(String),
    Many(String),
}

fn usage(args: &RollingUpdateArgs, command: &str) -> Usage {
    let errors = usage_errors(args);
    let text = |e: &str| format!("{e}\nSee '{command} -h' for help and examples");
    match errors.as_slice() {
        [] => Usage::Fine,
        [one] => Usage::One(text(one)),
        many => Usage::Many(many.iter().map(|e| text(e) + "\n").collect()),
    }
}

/// The name kubectl's help refers to: the plugin's, or ger's subcommand.
fn command_path() -> &'static str {
    let argv0 = std::env::args().next().unwrap_or_default();
    let plugin = Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("kubectl-rolling_update"));
    if plugin {
        "kubectl rolling-update"
    } else {
        "ger rolling-update"
    }
}

/// `-o`: how the result is printed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    /// `replicationcontroller "<name>" rolling updated`.
    Default,
    Name,
    Json,
    Yaml,
}

impl Format {
    fn parse(output: Option<&str>) -> Result<Format, String> {
        match output.unwrap_or("").to_ascii_lowercase().as_str() {
            "" => Ok(Format::Default),
            "name" => Ok(Format::Name),
            "json" => Ok(Format::Json),
            "yaml" => Ok(Format::Yaml),
            _ => Err(format!(
                "unable to match a printer suitable for the output format {:?}, allowed formats are: json,name,yaml",
                output.unwrap_or("")
            )),
        }
    }

    /// The controller as kubectl's printer shows it: `replicationcontroller/<name>` (kind
    /// and name only), or the whole object (JSON indented by four spaces, as kubectl does).
    fn object(self, rc: &ReplicationController) -> Result<String, String> {
        match self {
            Format::Default | Format::Name => {
                Ok(format!("replicationcontroller/{}\n", rc.name_any()))
            }
            Format::Json => {
                let mut buf = Vec::new();
                let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
                let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
                serde::Serialize::serialize(rc, &mut ser).map_err(|e| e.to_string())?;
                buf.push(b'\n');
                String::from_utf8(buf).map_err(|e| e.to_string())
            }
            Format::Yaml => {
                let value = serde_json::to_value(rc).map_err(|e| e.to_string())?;
                serde_yaml::to_string(&value).map_err(|e| e.to_string())
            }
        }
    }

    /// `--dry-run`: `Rolling from:\n<old>\nTo:\n<new>\n`, names alone without `-o`.
    fn dry_run(
        self,
        old: &ReplicationController,
        new: &ReplicationController,
    ) -> Result<String, String> {
        let (from, to) = match self {
            Format::Default => (old.name_any(), new.name_any()),
            _ => (self.object(old)?, self.object(new)?),
        };
        Ok(format!("Rolling from:\n{from}\nTo:\n{to}\n"))
    }

    /// The last line: `default` (seed 003's wording) without `-o`, else `rc` printed.
    fn result(self, default: &str, rc: &ReplicationController) -> Result<String, String> {
        match self {
            Format::Default => Ok(format!("{default}\n")),
            _ => self.object(rc),
        }
    }
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

fn selector(rc: &ReplicationController) -> BTreeMap<String, String> {
    rc.spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default()
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

/// A map as Go's `%s` prints it: `map[k1:v1 k2:v2]`.
fn go_map(m: &BTreeMap<String, String>) -> String {
    let items: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("map[{}]", items.join(" "))
}

fn selector_string(sel: &BTreeMap<String, String>) -> String {
    sel.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// What the update loop needs from the cluster. [`Kube`] is the API server; the tests'
/// fake keeps controllers in memory, scripts readiness and keeps its own clock.
trait Controllers {
    async fn get(&self, name: &str) -> Result<Option<ReplicationController>, String>;
    async fn create(&self, rc: &ReplicationController) -> Result<ReplicationController, String>;
    /// Set (`Some`) or remove (`None`) annotations of the controller `name`.
    async fn annotate(
        &self,
        name: &str,
        changes: &[(&str, Option<&str>)],
    ) -> Result<ReplicationController, String>;
    /// Scale `name` to `replicas` and wait until it has that many pods.
    async fn scale_and_wait(
        &self,
        name: &str,
        replicas: i32,
    ) -> Result<ReplicationController, String>;
    /// Available pods (ready, not being deleted) selected by `rc`.
    async fn available(&self, rc: &ReplicationController) -> Result<i32, String>;
    async fn sleep(&self, period: Duration);
    fn now(&self) -> Instant;
}

/// How fast and how far apart the two controllers may move.
struct Plan {
    update_period: Duration,
    /// Without any scaling for this long, the update fails.
    timeout: Duration,
    max_surge: IntOrString,
    max_unavailable: IntOrString,
}

/// Step 1 of `RollingUpdater.Update`: the controller to roll to, and whether it existed.
/// An existing one must have been started from `source_id`; a new one is created with 0
/// replicas and its replica count kept in the `desired-replicas` annotation.
async fn target<C: Controllers>(
    c: &C,
    mut new: ReplicationController,
    source_id: &str,
) -> Result<(ReplicationController, bool), String> {
    let name = new.name_any();
    if let Some(rc) = c.get(&name).await? {
        let a = rc.annotations();
        if a.get(SOURCE_ID).map(String::as_str) != Some(source_id) || !a.contains_key(DESIRED) {
            return Err(format!(
                "Missing/unexpected annotations for controller {name}, expected {source_id} : {}",
                go_map(a)
            ));
        }
        return Ok((rc, true));
    }
    let want = replicas(&new);
    if want <= 0 {
        return Err(format!(
            "Invalid controller spec for {name}; required: > 0 replicas, actual: {want}"
        ));
    }
    let a = new.metadata.annotations.get_or_insert_with(BTreeMap::new);
    a.insert(DESIRED.into(), want.to_string());
    a.insert(SOURCE_ID.into(), source_id.into());
    new.spec.get_or_insert_with(Default::default).replicas = Some(0);
    Ok((c.create(&new).await?, false))
}

/// Steps 2–5 of `RollingUpdater.Update`: scale `new` up to its desired count and `old`
/// down to 0, within the plan's surge and availability limits. Returns both, scaled.
async fn roll<C: Controllers>(
    c: &C,
    out: &mut dyn Write,
    plan: &Plan,
    mut old: ReplicationController,
    (mut new, existed): (ReplicationController, bool),
) -> Result<(ReplicationController, ReplicationController), String> {
    let (old_name, new_name) = (old.name_any(), new.name_any());
    if existed {
        say!(
            out,
            "Continuing update with existing controller {new_name}."
        );
    } else {
        say!(out, "Created {new_name}");
    }
    let raw = new.annotations().get(DESIRED).cloned().unwrap_or_default();
    let desired: i32 = raw
        .parse()
        .map_err(|_| format!("Unable to parse annotation for {new_name}: {DESIRED}={raw}"))?;
    // What to go back to on --rollback: the old controller's size before anything moved.
    if !old.annotations().contains_key(ORIGINAL) {
        let current = c
            .get(&old_name)
            .await?
            .ok_or_else(|| format!("replicationcontrollers \"{old_name}\" not found"))?;
        let original = replicas(&current).to_string();
        old = c
            .annotate(&old_name, &[(ORIGINAL, Some(&original))])
            .await?;
    }
    let (max_surge, max_unavailable) =
        resolve_fenceposts(Some(&plan.max_surge), Some(&plan.max_unavailable), desired)?;
    // Scaling to nothing: nothing has to stay available.
    let min_available = if desired == 0 {
        0
    } else {
        (desired - max_unavailable).max(0)
    };
    say!(
        out,
        "Scaling up {new_name} from {} to {desired}, scaling down {old_name} from {} to 0 (keep {min_available} pods available, don't exceed {} pods)",
        replicas(&new),
        replicas(&old),
        desired + max_surge
    );
    let mut deadline = c.now() + plan.timeout;
    while replicas(&new) != desired || replicas(&old) != 0 {
        let (was_new, was_old) = (replicas(&new), replicas(&old));
        // Scale up as far as the surge allows (all the way once the old one is gone).
        if replicas(&new) != desired {
            let increment = if replicas(&old) == 0 {
                desired - replicas(&new)
            } else {
                desired + max_surge - (replicas(&old) + replicas(&new))
            };
            if increment > 0 {
                let n = (replicas(&new) + increment).min(desired);
                say!(out, "Scaling {new_name} up to {n}");
                new = c.scale_and_wait(&new_name, n).await?;
            }
        }
        c.sleep(plan.update_period).await;
        // Scale down as far as the available new pods allow.
        if replicas(&old) != 0 {
            let available = c.available(&new).await?;
            let unavailable = replicas(&new) - available;
            let decrement = replicas(&old) + replicas(&new) - min_available - unavailable;
            if decrement > 0 {
                let mut n = (replicas(&old) - decrement).max(0);
                if replicas(&new) == desired && available == desired {
                    n = 0;
                }
                say!(out, "Scaling {old_name} down to {n}");
                old = c.scale_and_wait(&old_name, n).await?;
            }
        }
        if replicas(&new) != was_new || replicas(&old) != was_old {
            deadline = c.now() + plan.timeout;
        } else if c.now() > deadline {
            return Err("timed out waiting for any update progress to be made".into());
        }
    }
    Ok((old, new))
}

/// The controllers of one namespace on the API server.
struct Kube {
    rcs: Api<ReplicationController>,
    pods: Api<Pod>,
    namespace: String,
    /// Between polls of a controller's status.
    interval: Duration,
    /// Longest wait for a controller to scale or settle.
    timeout: Duration,
}

fn api_err(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("Error from server ({}): {}", s.reason, s.message),
        other => other.to_string(),
    }
}

impl Controllers for Kube {
    async fn get(&self, name: &str) -> Result<Option<ReplicationController>, String> {
        if name.is_empty() {
            return Ok(None);
        }
        self.rcs.get_opt(name).await.map_err(api_err)
    }

    async fn create(&self, rc: &ReplicationController) -> Result<ReplicationController, String> {
        self.rcs
            .create(&PostParams::default(), rc)
            .await
            .map_err(api_err)
    }

    async fn annotate(
        &self,
        name: &str,
        changes: &[(&str, Option<&str>)],
    ) -> Result<ReplicationController, String> {
        let annotations: serde_json::Map<String, serde_json::Value> = changes
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        self.merge(name, &json!({"metadata": {"annotations": annotations}}))
            .await
    }

    async fn scale_and_wait(
        &self,
        name: &str,
        replicas: i32,
    ) -> Result<ReplicationController, String> {
        let patch = json!({"spec": {"replicas": replicas}});
        self.rcs
            .patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let rc = self.rcs.get(name).await.map_err(api_err)?;
            if rc.status.as_ref().map(|s| s.replicas) == Some(replicas) {
                return Ok(rc);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out waiting for {name} to have {replicas} replicas"
                ));
            }
            tokio::time::sleep(self.interval.min(Duration::from_millis(500))).await;
        }
    }

    async fn available(&self, rc: &ReplicationController) -> Result<i32, String> {
        let list = self
            .pods
            .list(&ListParams::default().labels(&selector_string(&selector(rc))))
            .await
            .map_err(api_err)?;
        let available = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        Ok(i32::try_from(available).unwrap_or(i32::MAX))
    }

    async fn sleep(&self, period: Duration) {
        tokio::time::sleep(period).await;
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

pub async fn run(args: RollingUpdateArgs) -> Result<(), String> {
    match usage(&args, command_path()) {
        Usage::Fine => {}
        Usage::One(message) => return Err(message),
        Usage::Many(text) => {
            // kubectl prints a list of usage errors as it is, without `error: `.
            eprint!("{text}");
            std::process::exit(1);
        }
    }
    let format = Format::parse(args.output.as_deref())?;
    let config = crate::cluster::config_for(args.kubeconfig.as_deref()).await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| e.to_string())?;
    let k = Kube {
        rcs: Api::namespaced(client.clone(), &namespace),
        pods: Api::namespaced(client, &namespace),
        namespace,
        interval: args.poll_interval,
        timeout: args.timeout,
    };
    k.update(&args, format, &mut std::io::stdout()).await
}

/// What happens to the old controller once the new one is in place.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cleanup {
    /// Delete it (two names, `--rollback`).
    Delete,
    /// Delete it and give the new controller its name (one name and `--image`).
    Rename,
    /// Delete it, keeping the file's name (one name and `-f`, as seed 003 shows).
    DeleteKeepFileName,
}

impl Kube {
    async fn update(
        &self,
        args: &RollingUpdateArgs,
        format: Format,
        out: &mut dyn Write,
    ) -> Result<(), String> {
        let old_name = args.old.clone().unwrap_or_default();
        let old = match self.rcs.get(&old_name).await {
            Ok(rc) => rc,
            // Interrupted while renaming: the new controller is all there is.
            Err(kube::Error::Api(s))
                if s.code == 404 && args.image().is_some() && args.new.is_none() =>
            {
                return self.finish_rename(&old_name).await;
            }
            Err(e) => return Err(api_err(e)),
        };
        let key = args.deployment_label_key.as_str();
        let next = args
            .new
            .clone()
            .or_else(|| old.annotations().get(NEXT).cloned())
            .unwrap_or_default();
        let file = args
            .filename
            .first()
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        if args.rollback {
            let Some(abandoned) = self.get(&next).await? else {
                return Err(format!("Could not find {next} to rollback."));
            };
            check_pair(&old, &abandoned, &file)?;
            if args.dry_run() {
                write!(out, "{}", format.dry_run(&old, &abandoned)?).map_err(|e| e.to_string())?;
                return Ok(());
            }
            return self.rollback(args, format, out, old, abandoned).await;
        }
        let (new, cleanup) = if let Some(path) = args.filename.first() {
            let new = new_from_file(&old, path)?;
            let cleanup = if args.new.is_some() {
                Cleanup::Delete
            } else {
                Cleanup::DeleteKeepFileName
            };
            (new, cleanup)
        } else {
            let image = args.image().unwrap_or_default();
            let new = match self.get(&next).await? {
                Some(rc) => {
                    let running = first_image(&rc).unwrap_or_default();
                    if running != image {
                        return Err(format!(
                            "Found existing in-progress update to image ({running}).\nEither continue in-progress update with --image={running} or rollback with --rollback"
                        ));
                    }
                    say!(
                        out,
                        "Found existing update in progress ({}), resuming.",
                        rc.name_any()
                    );
                    rc
                }
                None => new_from_image(&old, args, image, &next, key)?,
            };
            let cleanup = if args.new.is_some() {
                Cleanup::Delete
            } else {
                Cleanup::Rename
            };
            (new, cleanup)
        };
        if new.name_any() == old_name {
            return Err(format!(
                "{file} cannot have the same name as the existing ReplicationController {old_name}"
            ));
        }
        if args.image().is_none() {
            // With --image the old controller gets its own `<key>` value below.
            check_pair(&old, &new, &file)?;
        }
        if args.dry_run() {
            write!(out, "{}", format.dry_run(&old, &new)?).map_err(|e| e.to_string())?;
            return Ok(());
        }
        let old = self.stamp(old, &new.name_any(), key).await?;
        let source_id = format!("{old_name}:{}", old.uid().unwrap_or_default());
        let pair = target(self, new, &source_id).await?;
        let (_, new) = roll(self, out, &self.plan(args), old, pair).await?;
        let new_name = new.name_any();
        self.settle(&new_name, cleanup).await?;
        let (final_name, default) = match cleanup {
            Cleanup::Delete => {
                say!(out, "Update succeeded. Deleting {old_name}");
                self.delete(&old_name, PropagationPolicy::Background)
                    .await?;
                (
                    new_name.clone(),
                    format!(
                        "replicationcontroller \"{old_name}\" rolling updated to \"{new_name}\""
                    ),
                )
            }
            Cleanup::DeleteKeepFileName => {
                say!(out, "Update succeeded. Deleting old controller: {old_name}");
                self.delete(&old_name, PropagationPolicy::Background)
                    .await?;
                (
                    new_name.clone(),
                    format!("replicationcontroller \"{new_name}\" rolling updated"),
                )
            }
            Cleanup::Rename => {
                say!(out, "Update succeeded. Deleting old controller: {old_name}");
                self.delete(&old_name, PropagationPolicy::Background)
                    .await?;
                say!(out, "Renaming {new_name} to {old_name}");
                let current = self.rcs.get(&new_name).await.map_err(api_err)?;
                self.rename(current, &old_name).await?;
                (
                    old_name.clone(),
                    format!("replicationcontroller \"{old_name}\" rolling updated"),
                )
            }
        };
        let rc = self.rcs.get(&final_name).await.map_err(api_err)?;
        write!(out, "{}", format.result(&default, &rc)?).map_err(|e| e.to_string())
    }

    /// kubectl 1.17 always rolled with maxUnavailable 0 and maxSurge 1.
    fn plan(&self, args: &RollingUpdateArgs) -> Plan {
        Plan {
            update_period: args.update_period,
            timeout: args.timeout,
            max_surge: IntOrString::Int(1),
            max_unavailable: IntOrString::Int(0),
        }
    }

    /// `--rollback` (`AbortRollingUpdate`): the roles swap, the old controller is rolled
    /// back to its original size and the abandoned one is deleted.
    async fn rollback(
        &self,
        args: &RollingUpdateArgs,
        format: Format,
        out: &mut dyn Write,
        old: ReplicationController,
        abandoned: ReplicationController,
    ) -> Result<(), String> {
        let (old_name, abandoned_name) = (old.name_any(), abandoned.name_any());
        let Some(original) = old.annotations().get(ORIGINAL).cloned() else {
            return Err(format!(
                "couldn't find original replica count of {old_name:?}"
            ));
        };
        say!(out, "Setting {old_name:?} replicas to {original}");
        let source_id = format!("{abandoned_name}:{}", abandoned.uid().unwrap_or_default());
        let old = self
            .annotate(
                &old_name,
                &[(SOURCE_ID, Some(&source_id)), (DESIRED, Some(&original))],
            )
            .await?;
        let pair = target(self, old, &source_id).await?;
        let (_, old) = roll(self, out, &self.plan(args), abandoned, pair).await?;
        self.settle(&old_name, Cleanup::Delete).await?;
        say!(out, "Update succeeded. Deleting {abandoned_name}");
        self.delete(&abandoned_name, PropagationPolicy::Background)
            .await?;
        // Nothing is in progress any more.
        let old = self
            .annotate(&old.name_any(), &[(NEXT, None), (ORIGINAL, None)])
            .await?;
        let default = format!("replicationcontroller \"{old_name}\" rolling updated");
        write!(out, "{}", format.result(&default, &old)?).map_err(|e| e.to_string())
    }

    async fn merge(
        &self,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<ReplicationController, String> {
        self.rcs
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(api_err)
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
        let old_selector = selector(&old);
        if old_selector.contains_key(key) {
            if old.annotations().get(NEXT).map(String::as_str) == Some(new_name) {
                return Ok(old);
            }
            return self.annotate(&old_name, &[(NEXT, Some(new_name))]).await;
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
        let patch = json!({"metadata": {"annotations": {NEXT: new_name}},
            "spec": {"selector": selector, "template": {"metadata": {"labels": {key: orig}}}}});
        self.merge(&old_name, &patch).await
    }

    /// Step 6's start: the new controller is no longer in progress, and has seen its spec
    /// and has as many pods as it wants. One about to be renamed keeps its marks until the
    /// copy under the old name exists: if the rename is interrupted after the old controller
    /// went, they say which controller takes the name (see [`Kube::finish_rename`]).
    async fn settle(&self, name: &str, cleanup: Cleanup) -> Result<(), String> {
        if cleanup != Cleanup::Rename {
            self.annotate(name, &[(SOURCE_ID, None), (DESIRED, None)])
                .await?;
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let rc = self.rcs.get(name).await.map_err(api_err)?;
            let generation = rc.metadata.generation.unwrap_or(0);
            let status = rc.status.clone().unwrap_or_default();
            let want = rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            if status.observed_generation.unwrap_or(0) >= generation && status.replicas == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("timed out waiting for the condition".into());
            }
            tokio::time::sleep(self.interval.min(Duration::from_millis(500))).await;
        }
    }

    async fn delete(&self, name: &str, policy: PropagationPolicy) -> Result<(), String> {
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            ..Default::default()
        };
        match self.rcs.delete(name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_err(e)),
        }
    }

    /// Re-create `rc` under `name`, its pods orphaned in between and adopted again; the
    /// copy is no longer in progress.
    async fn rename(&self, rc: ReplicationController, name: &str) -> Result<(), String> {
        let old_name = rc.name_any();
        self.delete(&old_name, PropagationPolicy::Orphan).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        // The old controller may still be going too.
        for gone in [old_name.as_str(), name] {
            while self.get(gone).await?.is_some() {
                if Instant::now() > deadline {
                    return Err(format!("timed out waiting for {gone} to be deleted"));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let mut next = rc;
        let mut annotations = next.metadata.annotations.clone();
        if let Some(a) = annotations.as_mut() {
            a.remove(SOURCE_ID);
            a.remove(DESIRED);
        }
        next.metadata = kube::api::ObjectMeta {
            name: Some(name.to_string()),
            namespace: next.metadata.namespace.clone(),
            labels: next.metadata.labels.clone(),
            annotations,
            ..Default::default()
        };
        next.status = None;
        self.create(&next).await?;
        Ok(())
    }

    /// The old controller is gone (an update was interrupted while renaming): give its name
    /// to the controller that was updating it, found by its `update-source-id`. kubectl 1.17
    /// printed nothing for this.
    async fn finish_rename(&self, old_name: &str) -> Result<(), String> {
        let list = self
            .rcs
            .list(&ListParams::default())
            .await
            .map_err(api_err)?;
        let prefix = format!("{old_name}:");
        let Some(source) = list.items.into_iter().find(|rc| {
            rc.annotations()
                .get(SOURCE_ID)
                .is_some_and(|s| s.starts_with(&prefix))
        }) else {
            return Err(format!(
                "couldn't find a replication controller with source id == {}/{old_name}",
                self.namespace
            ));
        };
        self.rename(source, old_name).await
    }
}

/// The two controllers must differ on a selector key they share (kubectl's check, which
/// names the file, empty without `-f`).
fn check_pair(
    old: &ReplicationController,
    new: &ReplicationController,
    file: &str,
) -> Result<(), String> {
    let (old_sel, new_sel) = (selector(old), selector(new));
    if old_sel
        .iter()
        .any(|(k, v)| new_sel.get(k).is_some_and(|n| n != v))
    {
        return Ok(());
    }
    Err(format!(
        "{file} must specify a matching key with non-equal value in Selector for {}",
        old.name_any()
    ))
}

/// `-f FILE`: exactly one ReplicationController (a List is flattened); without `replicas`
/// it takes the old controller's.
fn new_from_file(
    old: &ReplicationController,
    path: &Path,
) -> Result<ReplicationController, String> {
    let file = path.display().to_string();
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| e.to_string())?
    } else {
        if !path.exists() {
            return Err(format!("the path {file:?} does not exist"));
        }
        std::fs::read_to_string(path).map_err(|e| format!("error reading {file:?}: {e}"))?
    };
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_json::Value::deserialize(doc)
            .map_err(|e| format!("error parsing {file}: {e}"))?;
        let is_list = value
            .get("kind")
            .and_then(|k| k.as_str())
            .is_some_and(|k| k.ends_with("List"));
        match value.get("items").and_then(|i| i.as_array()) {
            Some(items) if is_list => objects.extend(items.iter().cloned()),
            _ if value.is_null() => {}
            _ => objects.push(value),
        }
    }
    let value = match objects.len() {
        0 => return Err(format!("please make sure {file} exists and is not empty")),
        1 => objects.remove(0),
        _ => return Err(format!("{file} specifies multiple items")),
    };
    let field = |f: &str| {
        value
            .get(f)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    if kind != "ReplicationController" || api_version != "v1" {
        // Go's GroupVersionKind: `<group>/<version>, Kind=<kind>`, the core group empty.
        let gv = if api_version.contains('/') {
            api_version
        } else {
            format!("/{api_version}")
        };
        return Err(format!(
            "{file} contains a {gv}, Kind={kind} not a ReplicationController"
        ));
    }
    let mut new: ReplicationController =
        serde_json::from_value(value).map_err(|e| format!("error parsing {file}: {e}"))?;
    let spec = new.spec.get_or_insert_with(Default::default);
    if spec.replicas.is_none() {
        spec.replicas = Some(replicas(old));
    }
    new.metadata.namespace = old.metadata.namespace.clone();
    Ok(new)
}

/// `--image`: the old controller with another image in one container, named `name` (else
/// `<old>-<hash>`), its selector and pod labels extended with `<key>=<hash>`.
fn new_from_image(
    old: &ReplicationController,
    args: &RollingUpdateArgs,
    image: &str,
    name: &str,
    key: &str,
) -> Result<ReplicationController, String> {
    // kubectl compares the first container's image, whichever container changes.
    let same = first_image(old).as_deref() == Some(image);
    if same && args.image_pull_policy.is_none() {
        return Err("--image-pull-policy (Always|Never|IfNotPresent) must be provided when --image is the same as existing container image".into());
    }
    let mut new = old.clone();
    let containers = &mut new
        .spec
        .get_or_insert_with(Default::default)
        .template
        .get_or_insert_with(Default::default)
        .spec
        .get_or_insert_with(Default::default)
        .containers;
    let mut index = 0;
    if let Some(c) = &args.container {
        index = containers
            .iter()
            .position(|x| &x.name == c)
            .ok_or_else(|| format!("container {c} not found in pod"))?;
    }
    if containers.len() > 1 && args.container.is_none() {
        return Err("must specify container to update when updating a multi-container pod".into());
    }
    let Some(container) = containers.get_mut(index) else {
        return Err(format!("pod has no containers! ({})", old.name_any()));
    };
    container.image = Some(image.to_string());
    if same {
        container.image_pull_policy = args.image_pull_policy.clone();
    }
    new.metadata = Default::default();
    new.status = None;
    let hash = md5_hex(&serde_json::to_vec(&new).unwrap_or_default());
    let spec = new.spec.get_or_insert_with(Default::default);
    spec.selector
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_string(), hash.clone());
    spec.template
        .get_or_insert_with(Default::default)
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_string(), hash.clone());
    new.metadata.name = Some(if name.is_empty() {
        format!("{}-{hash}", old.name_any())
    } else {
        name.to_string()
    });
    new.metadata.namespace = old.metadata.namespace.clone();
    new.metadata.labels = old.metadata.labels.clone();
    Ok(new)
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;

    use clap::Parser;
    use k8s_openapi::api::core::v1::{
        Container, PodSpec, PodTemplateSpec, ReplicationControllerSpec, ReplicationControllerStatus,
    };
    use kube::api::ObjectMeta;

    use super::*;

    #[test]
    fn go_durations() {
        for (s, want) in [
            ("0", 0.0),
            ("1m", 60.0),
            ("3s", 3.0),
            ("500ms", 0.5),
            ("1m30s", 90.0),
            ("2h", 7200.0),
            ("1.5s", 1.5),
            ("250us", 0.000_25),
            ("1000ns", 0.000_001),
        ] {
            assert_eq!(parse_duration(s).unwrap().as_secs_f64(), want, "{s}");
        }
        for bad in ["", "5", "5x", "s", "1m5"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: RollingUpdateArgs,
    }

    fn args(argv: &[&str]) -> RollingUpdateArgs {
        Cli::try_parse_from(std::iter::once("kubectl rolling-update").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn usage_errors_as_kubectl_1_17_reported_them() {
        let see = "See 'kubectl rolling-update -h' for help and examples";
        let one = |m: &str| Usage::One(format!("{m}\n{see}"));
        for (argv, want) in [
            (&["foo", "--image=x"][..], Usage::Fine),
            (&["foo", "-f", "a.yaml"], Usage::Fine),
            (&["foo", "--rollback"], Usage::Fine),
            (
                &["foo", "--image="],
                one("Must specify --filename or --image for new controller"),
            ),
            (
                &["foo"],
                one("Must specify --filename or --image for new controller"),
            ),
            (
                &["foo", "--image=x", "-f", "a.yaml"],
                one("--filename and --image can not both be specified"),
            ),
            (
                &["foo", "-f", "a.yaml", "-f", "b.yaml"],
                one("May only specify a single filename for new controller"),
            ),
            (
                &["foo", "-f", "a.yaml,b.yaml"],
                one("May only specify a single filename for new controller"),
            ),
            (
                &["foo", "--rollback", "--image=x"],
                one("Don't specify --filename or --image on rollback"),
            ),
            (
                &["foo", "--rollback", "-f", "a.yaml"],
                one("Don't specify --filename or --image on rollback"),
            ),
            (
                &["foo", "--image=x", "--deployment-label-key="],
                one("--deployment-label-key can not be empty"),
            ),
            (&["--image=x"], one("Must specify the controller to update")),
            (
                &["--rollback"],
                one("Must specify the controller to update"),
            ),
            (
                &[],
                Usage::Many(format!(
                    "Must specify --filename or --image for new controller\n{see}\nMust specify the controller to update\n{see}\n"
                )),
            ),
            (
                &["--deployment-label-key=", "-f", "a,b", "--image=x"],
                Usage::Many(format!(
                    "--deployment-label-key can not be empty\n{see}\nMay only specify a single filename for new controller\n{see}\n--filename and --image can not both be specified\n{see}\nMust specify the controller to update\n{see}\n"
                )),
            ),
        ] {
            assert_eq!(
                usage(&args(argv), "kubectl rolling-update"),
                want,
                "{argv:?}"
            );
        }
    }

    #[test]
    fn kubectl_flags_are_accepted() {
        let a = args(&[
            "foo",
            "bar",
            "--image=x",
            "--update-period=1s",
            "--poll-interval=10ms",
            "--timeout=2m",
            "--validate=false",
            "--dry-run",
            "-o",
            "name",
        ]);
        assert_eq!(a.update_period, Duration::from_secs(1));
        assert_eq!(a.poll_interval, Duration::from_millis(10));
        assert_eq!(a.timeout, Duration::from_secs(120));
        assert!(a.dry_run());
        assert_eq!(a.output.as_deref(), Some("name"));
        assert!(!args(&["foo", "--image=x", "--dry-run=false"]).dry_run());
        assert!(args(&["foo", "--image=x", "--dry-run=client"]).dry_run());
        assert!(args(&["foo", "--image=x", "--validate"]).validate.is_some());
    }

    fn rc(name: &str, replicas: i32, selector: &[(&str, &str)]) -> ReplicationController {
        let labels: BTreeMap<String, String> = selector
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ReplicationController {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(ReplicationControllerSpec {
                replicas: Some(replicas),
                selector: Some(labels.clone()),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "web".into(),
                            image: Some("nginx:1".into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            status: Some(ReplicationControllerStatus {
                replicas,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn output_formats() {
        let mut c = rc("web", 1, &[("app", "web")]);
        c.metadata.namespace = None;
        assert_eq!(Format::parse(None).unwrap(), Format::Default);
        assert_eq!(Format::parse(Some("NAME")).unwrap(), Format::Name);
        assert_eq!(
            Format::parse(Some("wide")).unwrap_err(),
            "unable to match a printer suitable for the output format \"wide\", allowed formats are: json,name,yaml"
        );
        let done = "replicationcontroller \"web\" rolling updated";
        assert_eq!(
            Format::Default.result(done, &c).unwrap(),
            format!("{done}\n")
        );
        assert_eq!(
            Format::Name.result(done, &c).unwrap(),
            "replicationcontroller/web\n"
        );
        let json = Format::Json.result(done, &c).unwrap();
        assert!(
            json.starts_with("{\n    \"apiVersion\": \"v1\",\n    \"kind\": \"ReplicationController\",\n    \"metadata\": {\n        \"name\": \"web\"\n    },"),
            "{json}"
        );
        assert!(json.ends_with("}\n"), "{json}");
        let yaml = Format::Yaml.result(done, &c).unwrap();
        assert!(
            yaml.starts_with(
                "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: web\nspec:\n"
            ),
            "{yaml}"
        );
        let back: ReplicationController = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back, c);
        let new = rc("web-2", 1, &[("app", "web")]);
        assert_eq!(
            Format::Default.dry_run(&c, &new).unwrap(),
            "Rolling from:\nweb\nTo:\nweb-2\n"
        );
        assert_eq!(
            Format::Name.dry_run(&c, &new).unwrap(),
            "Rolling from:\nreplicationcontroller/web\n\nTo:\nreplicationcontroller/web-2\n\n"
        );
    }

    #[test]
    fn go_maps() {
        let m: BTreeMap<String, String> = [("b", "2"), ("a", "1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(go_map(&m), "map[a:1 b:2]");
        assert_eq!(go_map(&BTreeMap::new()), "map[]");
    }

    /// Controllers in memory, readiness from a script, a clock that only sleeps move.
    struct Fake {
        rcs: RefCell<BTreeMap<String, ReplicationController>>,
        /// Available new pods, one sample per scale-down attempt.
        ready: RefCell<VecDeque<i32>>,
        /// Once the script is used up: this, or a failure of the test.
        then: Option<i32>,
        start: Instant,
        elapsed: Cell<Duration>,
    }

    impl Fake {
        fn new(rcs: &[&ReplicationController], ready: &[i32], then: Option<i32>) -> Fake {
            Fake {
                rcs: RefCell::new(rcs.iter().map(|r| (r.name_any(), (*r).clone())).collect()),
                ready: RefCell::new(ready.iter().copied().collect()),
                then,
                start: Instant::now(),
                elapsed: Cell::new(Duration::ZERO),
            }
        }

        fn stored(&self, name: &str) -> ReplicationController {
            self.rcs.borrow()[name].clone()
        }
    }

    impl Controllers for Fake {
        async fn get(&self, name: &str) -> Result<Option<ReplicationController>, String> {
            Ok(self.rcs.borrow().get(name).cloned())
        }

        async fn create(
            &self,
            rc: &ReplicationController,
        ) -> Result<ReplicationController, String> {
            let mut rcs = self.rcs.borrow_mut();
            if rcs.contains_key(&rc.name_any()) {
                return Err(format!("{} already exists", rc.name_any()));
            }
            rcs.insert(rc.name_any(), rc.clone());
            Ok(rc.clone())
        }

        async fn annotate(
            &self,
            name: &str,
            changes: &[(&str, Option<&str>)],
        ) -> Result<ReplicationController, String> {
            let mut rcs = self.rcs.borrow_mut();
            let rc = rcs.get_mut(name).ok_or("not found")?;
            let a = rc.metadata.annotations.get_or_insert_with(BTreeMap::new);
            for (k, v) in changes {
                match v {
                    Some(v) => a.insert(k.to_string(), v.to_string()),
                    None => a.remove(*k),
                };
            }
            Ok(rc.clone())
        }

        async fn scale_and_wait(
            &self,
            name: &str,
            replicas: i32,
        ) -> Result<ReplicationController, String> {
            let mut rcs = self.rcs.borrow_mut();
            let rc = rcs.get_mut(name).ok_or("not found")?;
            rc.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
            rc.status.get_or_insert_with(Default::default).replicas = replicas;
            Ok(rc.clone())
        }

        async fn available(&self, rc: &ReplicationController) -> Result<i32, String> {
            let sample = self.ready.borrow_mut().pop_front().or(self.then);
            sample.ok_or_else(|| format!("unexpected readiness check of {}", rc.name_any()))
        }

        async fn sleep(&self, period: Duration) {
            self.elapsed.set(self.elapsed.get() + period);
        }

        fn now(&self) -> Instant {
            self.start + self.elapsed.get()
        }
    }

    const UID: &str = "7764ae47-9092-11e4-8393-42010af018ff";

    /// Upstream's `oldRc(replicas, original)`: foo-v1, selector version=v1.
    fn foo_v1(replicas: i32, original: Option<i32>) -> ReplicationController {
        let mut r = rc("foo-v1", replicas, &[("version", "v1")]);
        r.metadata.uid = Some(UID.into());
        if let Some(o) = original {
            r.metadata.annotations = Some([(ORIGINAL.to_string(), o.to_string())].into());
        }
        r
    }

    /// foo-v2 as kubectl left it: `replicas` pods, `desired` wanted, started from foo-v1.
    fn foo_v2(replicas: i32, desired: i32) -> ReplicationController {
        let mut r = rc("foo-v2", replicas, &[("version", "v2")]);
        r.metadata.annotations = Some(
            [
                (DESIRED.to_string(), desired.to_string()),
                (SOURCE_ID.to_string(), format!("foo-v1:{UID}")),
            ]
            .into(),
        );
        r
    }

    fn ios(s: &str) -> IntOrString {
        match s.parse() {
            Ok(i) => IntOrString::Int(i),
            Err(_) => IntOrString::String(s.into()),
        }
    }

    fn plan(max_unavailable: &str, max_surge: &str) -> Plan {
        Plan {
            update_period: Duration::from_secs(60),
            timeout: Duration::from_secs(300),
            max_surge: ios(max_surge),
            max_unavailable: ios(max_unavailable),
        }
    }

    /// One step of an upstream `TestUpdate` scenario.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        /// foo-v2 is scaled up to n.
        Up(i32),
        /// With `ready` new pods available, foo-v1 is scaled down to n.
        Down { ready: i32, to: i32 },
        /// With `ready` new pods available, foo-v1 cannot be scaled down.
        Noop { ready: i32 },
    }
    use Step::{Down, Noop, Up};

    const fn down(ready: i32, to: i32) -> Step {
        Down { ready, to }
    }

    const fn noop(ready: i32) -> Step {
        Noop { ready }
    }

    struct Scenario {
        name: &'static str,
        /// foo-v1's replicas (its original-replicas annotation is the same).
        old: i32,
        /// foo-v2's replicas and desired-replicas.
        new: (i32, i32),
        /// Whether foo-v2 existed already (`Continuing …`) or was just created.
        existed: bool,
        max_unavailable: &'static str,
        max_surge: &'static str,
        /// The header's numbers: pods kept available, pods not exceeded.
        keep: i32,
        exceed: i32,
        steps: &'static [Step],
    }

    /// The scenarios of kubectl's `TestUpdate` (release-1.17), with their expectations.
    #[rustfmt::skip]
    const SCENARIOS: &[Scenario] = &[
        Scenario {
            name: "10->10 30/0 fast readiness",
            old: 10, new: (0, 10), existed: false, max_unavailable: "30%", max_surge: "0%",
            keep: 7, exceed: 10,
            steps: &[down(0, 7), Up(3), down(3, 4), Up(6), down(6, 1), Up(9), down(9, 0), Up(10)],
        },
        Scenario {
            name: "10->10 30/0 delayed readiness",
            old: 10, new: (0, 10), existed: false, max_unavailable: "30%", max_surge: "0%",
            keep: 7, exceed: 10,
            steps: &[
                down(0, 7), Up(3), noop(0), down(1, 6), Up(4), down(4, 3), Up(7), down(7, 0),
                Up(10),
            ],
        },
        Scenario {
            name: "10->10 30/0 fast readiness, continuation",
            old: 7, new: (3, 10), existed: false, max_unavailable: "30%", max_surge: "0%",
            keep: 7, exceed: 10,
            steps: &[down(3, 4), Up(6), down(6, 1), Up(9), down(9, 0), Up(10)],
        },
        Scenario {
            name: "10->10 30/0 fast readiness, continued after restart which prevented first scale-up",
            old: 7, new: (0, 10), existed: false, max_unavailable: "30%", max_surge: "0%",
            keep: 7, exceed: 10,
            steps: &[noop(0), Up(3), down(3, 4), Up(6), down(6, 1), Up(9), down(9, 0), Up(10)],
        },
        Scenario {
            name: "10->10 0/30 fast readiness",
            old: 10, new: (0, 10), existed: false, max_unavailable: "0%", max_surge: "30%",
            keep: 10, exceed: 13,
            steps: &[Up(3), down(3, 7), Up(6), down(6, 4), Up(9), down(9, 1), Up(10), down(10, 0)],
        },
        Scenario {
            name: "10->10 0/30 delayed readiness",
            old: 10, new: (0, 10), existed: false, max_unavailable: "0%", max_surge: "30%",
            keep: 10, exceed: 13,
            steps: &[
                Up(3), noop(0), down(1, 9), Up(4), down(3, 7), Up(6), down(6, 4), Up(9),
                down(9, 1), Up(10), noop(9), down(10, 0),
            ],
        },
        Scenario {
            name: "10->10 10/20 fast readiness",
            old: 10, new: (0, 10), existed: false, max_unavailable: "10%", max_surge: "20%",
            keep: 9, exceed: 12,
            steps: &[Up(2), down(2, 7), Up(5), down(5, 4), Up(8), down(8, 1), Up(10), down(10, 0)],
        },
        Scenario {
            name: "10->10 10/20 delayed readiness",
            old: 10, new: (0, 10), existed: false, max_unavailable: "10%", max_surge: "20%",
            keep: 9, exceed: 12,
            steps: &[
                Up(2), down(2, 7), Up(5), down(4, 5), Up(7), noop(4), down(7, 2), Up(10),
                down(9, 0),
            ],
        },
        Scenario {
            name: "10->10 10/20 fast readiness continued after restart which prevented first scale-down",
            old: 10, new: (2, 10), existed: false, max_unavailable: "10%", max_surge: "20%",
            keep: 9, exceed: 12,
            steps: &[down(2, 7), Up(5), down(5, 4), Up(8), down(8, 1), Up(10), down(10, 0)],
        },
        Scenario {
            name: "10->10 0/100 fast readiness",
            old: 10, new: (0, 10), existed: false, max_unavailable: "0%", max_surge: "100%",
            keep: 10, exceed: 20,
            steps: &[Up(10), down(10, 0)],
        },
        Scenario {
            name: "10->10 0/100 delayed readiness",
            old: 10, new: (0, 10), existed: false, max_unavailable: "0%", max_surge: "100%",
            keep: 10, exceed: 20,
            steps: &[Up(10), noop(0), down(2, 8), down(7, 3), down(10, 0)],
        },
        Scenario {
            name: "10->10 100/0 fast readiness",
            old: 10, new: (0, 10), existed: false, max_unavailable: "100%", max_surge: "0%",
            keep: 0, exceed: 10,
            steps: &[down(0, 0), Up(10)],
        },
        Scenario {
            name: "1->1 25/25 maintain minimum availability",
            old: 1, new: (0, 1), existed: false, max_unavailable: "25%", max_surge: "25%",
            keep: 1, exceed: 2,
            steps: &[Up(1), noop(0), down(1, 0)],
        },
        Scenario {
            name: "1->1 0/10 delayed readiness",
            old: 1, new: (0, 1), existed: false, max_unavailable: "0%", max_surge: "10%",
            keep: 1, exceed: 2,
            steps: &[Up(1), noop(0), down(1, 0)],
        },
        Scenario {
            name: "1->1 10/10 delayed readiness",
            old: 1, new: (0, 1), existed: false, max_unavailable: "10%", max_surge: "10%",
            keep: 1, exceed: 2,
            steps: &[Up(1), noop(0), down(1, 0)],
        },
        Scenario {
            name: "3->3 1/1 fast readiness (absolute values)",
            old: 3, new: (0, 3), existed: false, max_unavailable: "0", max_surge: "1",
            keep: 3, exceed: 4,
            steps: &[Up(1), down(1, 2), Up(2), down(2, 1), Up(3), down(3, 0)],
        },
        Scenario {
            name: "10->10 0/20 fast readiness, continued after restart which resulted in partial first scale-up",
            old: 6, new: (5, 10), existed: false, max_unavailable: "0%", max_surge: "20%",
            keep: 10, exceed: 12,
            steps: &[Up(6), down(6, 4), Up(8), down(8, 2), Up(10), down(10, 0)],
        },
        Scenario {
            name: "10->20 0/300 fast readiness",
            old: 10, new: (0, 20), existed: false, max_unavailable: "0%", max_surge: "300%",
            keep: 20, exceed: 80,
            steps: &[Up(20), down(20, 0)],
        },
        Scenario {
            name: "1->1 0/1 scale down unavailable rc to a ready rc (rollback)",
            old: 1, new: (1, 1), existed: true, max_unavailable: "0", max_surge: "1",
            keep: 1, exceed: 2,
            steps: &[down(1, 0)],
        },
        Scenario {
            name: "3->0 1/1 desired 0 (absolute values)",
            old: 3, new: (0, 0), existed: true, max_unavailable: "1", max_surge: "1",
            keep: 0, exceed: 1,
            steps: &[down(0, 0)],
        },
        Scenario {
            name: "3->0 10/10 desired 0 (percentages)",
            old: 3, new: (0, 0), existed: true, max_unavailable: "10%", max_surge: "10%",
            keep: 0, exceed: 0,
            steps: &[down(0, 0)],
        },
        Scenario {
            name: "3->0 10/10 desired 0 (create new RC)",
            old: 3, new: (0, 0), existed: false, max_unavailable: "10%", max_surge: "10%",
            keep: 0, exceed: 0,
            steps: &[down(0, 0)],
        },
        Scenario {
            name: "0->0 1/1 desired 0 (absolute values)",
            old: 0, new: (0, 0), existed: true, max_unavailable: "1", max_surge: "1",
            keep: 0, exceed: 1,
            steps: &[],
        },
        Scenario {
            name: "30->2 50%/0",
            old: 30, new: (0, 2), existed: false, max_unavailable: "50%", max_surge: "0",
            keep: 1, exceed: 2,
            steps: &[down(0, 1), Up(1), down(2, 0), Up(2)],
        },
        Scenario {
            name: "2->2 1/0 blocked oldRc",
            old: 2, new: (0, 2), existed: false, max_unavailable: "1", max_surge: "0",
            keep: 1, exceed: 2,
            steps: &[down(0, 1), Up(1), down(1, 0), Up(2)],
        },
        Scenario {
            name: "1->1 1/0 allow maxUnavailability",
            old: 1, new: (0, 1), existed: false, max_unavailable: "1%", max_surge: "0",
            keep: 0, exceed: 1,
            steps: &[down(0, 0), Up(1)],
        },
        Scenario {
            name: "1->2 25/25 complex asymmetric deployment",
            old: 1, new: (0, 2), existed: false, max_unavailable: "25%", max_surge: "25%",
            keep: 2, exceed: 3,
            steps: &[Up(2), down(2, 0)],
        },
        Scenario {
            name: "2->2 25/1 maxSurge trumps maxUnavailable",
            old: 2, new: (0, 2), existed: false, max_unavailable: "25%", max_surge: "1%",
            keep: 2, exceed: 3,
            steps: &[Up(1), down(1, 1), Up(2), down(2, 0)],
        },
        Scenario {
            name: "2->2 25/0 maxUnavailable resolves to zero, then one",
            old: 2, new: (0, 2), existed: false, max_unavailable: "25%", max_surge: "0%",
            keep: 1, exceed: 2,
            steps: &[down(0, 1), Up(1), down(1, 0), Up(2)],
        },
    ];

    #[tokio::test]
    async fn upstream_update_scenarios() {
        assert_eq!(SCENARIOS.len(), 29);
        for s in SCENARIOS {
            let old = foo_v1(s.old, Some(s.old));
            let new = foo_v2(s.new.0, s.new.1);
            let ready: Vec<i32> = s
                .steps
                .iter()
                .filter_map(|step| match *step {
                    Down { ready, .. } | Noop { ready } => Some(ready),
                    Up(_) => None,
                })
                .collect();
            let fake = Fake::new(&[&old, &new], &ready, None);
            let mut want = vec![
                if s.existed {
                    "Continuing update with existing controller foo-v2.".to_string()
                } else {
                    "Created foo-v2".to_string()
                },
                format!(
                    "Scaling up foo-v2 from {} to {}, scaling down foo-v1 from {} to 0 (keep {} pods available, don't exceed {} pods)",
                    s.new.0, s.new.1, s.old, s.keep, s.exceed
                ),
            ];
            for step in s.steps {
                match *step {
                    Up(n) => want.push(format!("Scaling foo-v2 up to {n}")),
                    Down { to, .. } => want.push(format!("Scaling foo-v1 down to {to}")),
                    Noop { .. } => {}
                }
            }
            let mut out = Vec::new();
            let result = roll(
                &fake,
                &mut out,
                &plan(s.max_unavailable, s.max_surge),
                old,
                (new, s.existed),
            )
            .await;
            let text = String::from_utf8(out).unwrap();
            let (old, new) = result.unwrap_or_else(|e| panic!("{}: {e}\n{text}", s.name));
            assert_eq!(text.lines().collect::<Vec<_>>(), want, "{}", s.name);
            assert!(text.ends_with('\n'));
            assert_eq!((replicas(&old), replicas(&new)), (0, s.new.1), "{}", s.name);
            assert_eq!(replicas(&fake.stored("foo-v1")), 0, "{}", s.name);
            assert_eq!(replicas(&fake.stored("foo-v2")), s.new.1, "{}", s.name);
        }
    }

    #[tokio::test]
    async fn no_progress_times_out() {
        let fake = Fake::new(&[&foo_v1(2, Some(2)), &foo_v2(0, 2)], &[], Some(0));
        let mut out = Vec::new();
        let err = roll(
            &fake,
            &mut out,
            &plan("0", "1"),
            foo_v1(2, Some(2)),
            (foo_v2(0, 2), false),
        )
        .await
        .unwrap_err();
        assert_eq!(err, "timed out waiting for any update progress to be made");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Created foo-v2\nScaling up foo-v2 from 0 to 2, scaling down foo-v1 from 2 to 0 (keep 2 pods available, don't exceed 3 pods)\nScaling foo-v2 up to 1\n"
        );
        // The last scale-up was after the first period; five more minutes without progress.
        let waited = fake.elapsed.get();
        assert!(waited > Duration::from_secs(360), "{waited:?}");
        assert!(waited <= Duration::from_secs(420), "{waited:?}");
    }

    #[tokio::test]
    async fn progress_keeps_the_update_going() {
        // A scale-down only every 4 minutes, inside a 5-minute timeout: no time out.
        let ready = [0, 0, 0, 1, 0, 0, 0, 2];
        let fake = Fake::new(&[&foo_v1(2, Some(2)), &foo_v2(0, 2)], &ready, None);
        let mut out = Vec::new();
        let result = roll(
            &fake,
            &mut out,
            &plan("0", "1"),
            foo_v1(2, Some(2)),
            (foo_v2(0, 2), false),
        )
        .await;
        let text = String::from_utf8(out).unwrap();
        assert!(result.is_ok(), "{result:?}\n{text}");
        assert!(text.ends_with("Scaling foo-v1 down to 0\n"), "{text}");
    }

    #[tokio::test]
    async fn a_missing_original_replicas_is_written() {
        let old = foo_v1(1, None);
        let fake = Fake::new(&[&old, &foo_v2(1, 1)], &[1], None);
        let mut out = Vec::new();
        roll(
            &fake,
            &mut out,
            &plan("100%", "0"),
            old,
            (foo_v2(1, 1), false),
        )
        .await
        .unwrap();
        let stored = fake.stored("foo-v1");
        assert_eq!(
            stored.annotations().get(ORIGINAL).map(String::as_str),
            Some("1")
        );
        // An existing one is left alone.
        let old = foo_v1(1, Some(7));
        let fake = Fake::new(&[&old, &foo_v2(1, 1)], &[1], None);
        roll(
            &fake,
            &mut out,
            &plan("100%", "0"),
            old,
            (foo_v2(1, 1), false),
        )
        .await
        .unwrap();
        assert_eq!(
            fake.stored("foo-v1")
                .annotations()
                .get(ORIGINAL)
                .map(String::as_str),
            Some("7")
        );
    }

    #[tokio::test]
    async fn a_bad_desired_replicas_annotation_is_an_error() {
        let mut new = foo_v2(0, 2);
        new.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(DESIRED.into(), "two".into());
        let fake = Fake::new(&[&foo_v1(2, Some(2)), &new], &[], None);
        let err = roll(
            &fake,
            &mut Vec::new(),
            &plan("0", "1"),
            foo_v1(2, Some(2)),
            (new, true),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err,
            "Unable to parse annotation for foo-v2: kubectl.kubernetes.io/desired-replicas=two"
        );
    }

    #[tokio::test]
    async fn the_target_is_created_with_no_pods_or_must_come_from_the_old_controller() {
        let source = format!("foo-v1:{UID}");
        // Created: 0 replicas, the wanted count and the source in annotations.
        let fake = Fake::new(&[&foo_v1(3, Some(3))], &[], None);
        let template = rc("foo-v2", 3, &[("version", "v2")]);
        let (created, existed) = target(&fake, template.clone(), &source).await.unwrap();
        assert!(!existed);
        assert_eq!(replicas(&created), 0);
        assert_eq!(created.annotations()[DESIRED], "3");
        assert_eq!(created.annotations()[SOURCE_ID], source);
        assert_eq!(replicas(&fake.stored("foo-v2")), 0);
        // Found again: it is the one.
        let (found, existed) = target(&fake, template.clone(), &source).await.unwrap();
        assert!(existed);
        assert_eq!(found, created);
        // Started from another controller.
        let err = target(&fake, template.clone(), "foo-v0:1")
            .await
            .unwrap_err();
        assert_eq!(
            err,
            format!(
                "Missing/unexpected annotations for controller foo-v2, expected foo-v0:1 : map[kubectl.kubernetes.io/desired-replicas:3 kubectl.kubernetes.io/update-source-id:{source}]"
            )
        );
        // No pods wanted.
        let fake = Fake::new(&[&foo_v1(3, Some(3))], &[], None);
        let err = target(&fake, rc("foo-v2", 0, &[]), &source)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            "Invalid controller spec for foo-v2; required: > 0 replicas, actual: 0"
        );
    }

    fn two_containers() -> ReplicationController {
        let mut r = rc("web", 2, &[("app", "web")]);
        let pod = r
            .spec
            .as_mut()
            .unwrap()
            .template
            .as_mut()
            .unwrap()
            .spec
            .as_mut()
            .unwrap();
        pod.containers.push(Container {
            name: "side".into(),
            image: Some("busybox:1".into()),
            ..Default::default()
        });
        r
    }

    #[test]
    fn image_errors() {
        let one = rc("web", 2, &[("app", "web")]);
        let mut none = one.clone();
        if let Some(p) = none
            .spec
            .as_mut()
            .and_then(|s| s.template.as_mut())
            .and_then(|t| t.spec.as_mut())
        {
            p.containers.clear();
        }
        for (old, argv, want) in [
            (
                &one,
                &["web", "--image=nginx:1"][..],
                "--image-pull-policy (Always|Never|IfNotPresent) must be provided when --image is the same as existing container image",
            ),
            (
                &one,
                &["web", "--image=nginx:2", "--container=nope"],
                "container nope not found in pod",
            ),
            (
                &two_containers(),
                &["web", "--image=nginx:2"],
                "must specify container to update when updating a multi-container pod",
            ),
            (
                &none,
                &["web", "--image=nginx:2"],
                "pod has no containers! (web)",
            ),
        ] {
            let a = args(argv);
            let err = new_from_image(old, &a, a.image().unwrap(), "", "deployment").unwrap_err();
            assert_eq!(err, want, "{argv:?}");
        }
    }

    #[test]
    fn the_new_controller_from_an_image() {
        let old = two_containers();
        let a = args(&[
            "web",
            "--image=busybox:2",
            "--container=side",
            "--image-pull-policy=Always",
        ]);
        let new = new_from_image(&old, &a, "busybox:2", "", "deployment").unwrap();
        let hash = selector(&new)["deployment"].clone();
        assert_eq!(hash.len(), 32);
        assert_eq!(new.name_any(), format!("web-{hash}"));
        let t = new.spec.as_ref().unwrap().template.as_ref().unwrap();
        assert_eq!(
            t.metadata.as_ref().unwrap().labels.as_ref().unwrap()["deployment"],
            hash
        );
        let c = &t.spec.as_ref().unwrap().containers;
        assert_eq!(c[1].image.as_deref(), Some("busybox:2"));
        assert_eq!(c[0].image.as_deref(), Some("nginx:1"));
        // The pull policy only matters when the image stays (as in kubectl).
        assert_eq!(c[1].image_pull_policy, None);
        let a = args(&[
            "web",
            "--image=nginx:1",
            "--container=web",
            "--image-pull-policy=Always",
        ]);
        let same = new_from_image(&old, &a, "nginx:1", "web-next", "deployment").unwrap();
        assert_eq!(same.name_any(), "web-next");
        let c = &same
            .spec
            .as_ref()
            .unwrap()
            .template
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .containers;
        assert_eq!(c[0].image_pull_policy.as_deref(), Some("Always"));
    }

    #[test]
    fn file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let old = rc("web", 3, &[("app", "web"), ("v", "1")]);
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let rc_yaml = "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: web-2\nspec:\n  selector:\n    app: web\n    v: \"2\"\n";
        let cases = [
            (
                write("empty.yaml", "# nothing\n"),
                "please make sure {} exists and is not empty",
            ),
            (
                write(
                    "pod.yaml",
                    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n",
                ),
                "{} contains a /v1, Kind=Pod not a ReplicationController",
            ),
            (
                write(
                    "deploy.yaml",
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n",
                ),
                "{} contains a apps/v1, Kind=Deployment not a ReplicationController",
            ),
            (
                write("two.yaml", &format!("{rc_yaml}---\n{rc_yaml}")),
                "{} specifies multiple items",
            ),
            (
                write(
                    "list.yaml",
                    "apiVersion: v1\nkind: List\nitems:\n- {kind: ReplicationController, apiVersion: v1}\n- {kind: ReplicationController, apiVersion: v1}\n",
                ),
                "{} specifies multiple items",
            ),
            (
                dir.path().join("missing.yaml"),
                "the path \"{}\" does not exist",
            ),
        ];
        for (path, want) in cases {
            let err = new_from_file(&old, &path).unwrap_err();
            assert_eq!(err, want.replace("{}", &path.display().to_string()));
        }
        // One object, in a List or not; replicas default to the old controller's.
        for name in ["one.yaml", "one-list.json"] {
            let path = if name == "one.yaml" {
                write(name, rc_yaml)
            } else {
                let value: serde_json::Value = serde_yaml::from_str(rc_yaml).unwrap();
                write(
                    name,
                    &json!({"apiVersion": "v1", "kind": "List", "items": [value]}).to_string(),
                )
            };
            let new = new_from_file(&old, &path).unwrap();
            assert_eq!(new.name_any(), "web-2");
            assert_eq!(replicas(&new), 3);
            check_pair(&old, &new, "f.yaml").unwrap();
        }
    }

    #[test]
    fn selectors_must_differ_on_a_shared_key() {
        let old = rc("web", 1, &[("app", "web")]);
        for sel in [
            &[("app", "web")][..],
            &[("app", "web"), ("v", "2")],
            &[("x", "y")],
        ] {
            assert_eq!(
                check_pair(&old, &rc("web-2", 1, sel), "f.yaml").unwrap_err(),
                "f.yaml must specify a matching key with non-equal value in Selector for web"
            );
        }
        check_pair(&old, &rc("web-2", 1, &[("app", "web2")]), "f.yaml").unwrap();
        assert_eq!(
            check_pair(&old, &old, "").unwrap_err(),
            " must specify a matching key with non-equal value in Selector for web"
        );
    }
}
