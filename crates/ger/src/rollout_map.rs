//! `ger rollout-map`: a rollout as a picture, for when a table of thousands of rows says too
//! little. A DaemonSet is drawn one cell per node, in node-name order, so a node keeps its place
//! from one picture to the next; a Deployment one cell per pod, updated pods first, so the
//! picture is a progress bar.
//!
//! ```text
//! daemonset default/agent: revision 2 (7c9d5b6f8), 12 nodes
//! ####+ooo!x..
//! # updated 4  + updating 1  o old 3  ! unavailable 1  x node not ready 1  . no pod 2
//! ```
//!
//! `--watch` redraws every second until the rollout is complete. Colours on a terminal
//! (`--color auto|always|never`).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, Resource, ResourceExt};

#[derive(Debug, clap::Args)]
pub struct MapArgs {
    /// What to draw: `daemonset/NAME` (`ds/NAME`) or `deployment/NAME` (`deploy/NAME`).
    pub target: String,
    /// The namespace (default: the kubeconfig's).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// The kubeconfig (default: `KUBECONFIG`, then `~/.kube/config`).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Redraw every second until the rollout is complete.
    #[arg(short, long)]
    pub watch: bool,
    /// Cells per line.
    #[arg(long, default_value_t = 64)]
    pub width: usize,
    /// Colour the cells: auto (on a terminal), always, never.
    #[arg(long, default_value = "auto")]
    pub color: String,
}

/// What one cell shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cell {
    /// A pod of the current revision, available.
    Updated,
    /// A pod of the current revision, not available yet.
    Updating,
    /// A pod of an older revision, available.
    Old,
    /// A pod of an older revision, not available.
    Unavailable,
    /// A pod being deleted.
    Terminating,
    /// A node that is not Ready (DaemonSets).
    NodeDown,
    /// A node without a pod of the DaemonSet.
    NoPod,
}

impl Cell {
    const ALL: [Cell; 7] = [
        Cell::Updated,
        Cell::Updating,
        Cell::Old,
        Cell::Unavailable,
        Cell::Terminating,
        Cell::NodeDown,
        Cell::NoPod,
    ];

    fn glyph(self) -> char {
        match self {
            Cell::Updated => '#',
            Cell::Updating => '+',
            Cell::Old => 'o',
            Cell::Unavailable => '!',
            Cell::Terminating => '-',
            Cell::NodeDown => 'x',
            Cell::NoPod => '.',
        }
    }

    /// The ANSI colour of the glyph.
    fn colour(self) -> &'static str {
        match self {
            Cell::Updated => "32",
            Cell::Updating => "33",
            Cell::Old => "34",
            Cell::Unavailable | Cell::NodeDown => "31",
            Cell::Terminating | Cell::NoPod => "90",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Cell::Updated => "updated",
            Cell::Updating => "updating",
            Cell::Old => "old",
            Cell::Unavailable => "unavailable",
            Cell::Terminating => "terminating",
            Cell::NodeDown => "node not ready",
            Cell::NoPod => "no pod",
        }
    }
}

/// The cells, `width` to a line.
pub fn render(cells: &[Cell], width: usize, colour: bool) -> String {
    let mut out = String::new();
    for line in cells.chunks(width.max(1)) {
        for c in line {
            if colour {
                out.push_str(&format!("\x1b[{}m{}\x1b[0m", c.colour(), c.glyph()));
            } else {
                out.push(c.glyph());
            }
        }
        out.push('\n');
    }
    out
}

/// `# updated 4  + updating 1 …`: every state that occurs, with its count.
pub fn legend(cells: &[Cell]) -> String {
    let mut counts: BTreeMap<Cell, usize> = BTreeMap::new();
    for c in cells {
        *counts.entry(*c).or_default() += 1;
    }
    Cell::ALL
        .iter()
        .filter_map(|c| {
            counts
                .get(c)
                .map(|n| format!("{} {} {n}", c.glyph(), c.label()))
        })
        .collect::<Vec<_>>()
        .join("  ")
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Ready for at least `min_ready` seconds (`podutil.IsPodAvailable`).
fn available(p: &Pod, min_ready: i32) -> bool {
    let Some(ready) = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
    else {
        return false;
    };
    if ready.status != "True" {
        return false;
    }
    let since = ready.last_transition_time.as_ref().map(|t| t.0);
    min_ready <= 0 || since.is_some_and(|t| (Utc::now() - t).num_seconds() >= i64::from(min_ready))
}

/// The cell of one pod, given the label value that marks the current revision.
fn pod_cell(p: &Pod, label: &str, current: &str, min_ready: i32) -> Cell {
    let updated = p.labels().get(label).is_some_and(|h| h == current);
    match (
        p.metadata.deletion_timestamp.is_some(),
        updated,
        available(p, min_ready),
    ) {
        (true, _, _) => Cell::Terminating,
        (false, true, true) => Cell::Updated,
        (false, true, false) => Cell::Updating,
        (false, false, true) => Cell::Old,
        (false, false, false) => Cell::Unavailable,
    }
}

fn owned_by<K: Resource>(obj: &K, uid: &str) -> bool {
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// Sorts `node-2` before `node-10`: the name with its trailing number as a number.
fn natural(name: &str) -> (String, u64, String) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, num) = name.split_at(name.len() - digits);
    (stem.to_string(), num.parse().unwrap_or(0), name.to_string())
}

fn selector_of(labels: Option<&BTreeMap<String, String>>) -> String {
    labels
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

struct Picture {
    title: String,
    cells: Vec<Cell>,
    complete: bool,
}

async fn daemonset(client: &Client, ns: &str, name: &str) -> Result<Picture, String> {
    let ds = Api::<DaemonSet>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .map_err(|e| format!("daemonset {ns}/{name}: {e}"))?;
    let uid = ds.uid().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let revisions = Api::<ControllerRevision>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    let current = revisions
        .items
        .iter()
        .filter(|r| owned_by(*r, &uid))
        .max_by_key(|r| r.revision);
    let hash = current
        .and_then(|r| r.labels().get("controller-revision-hash").cloned())
        .unwrap_or_default();
    let selector = selector_of(spec.selector.match_labels.as_ref());
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| e.to_string())?;
    let mut on_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in pods.items.iter().filter(|p| owned_by(*p, &uid)) {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        on_node.entry(node.unwrap_or_default()).or_default().push(p);
    }
    let mut nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    nodes.sort_by_cached_key(|n| natural(&n.name_any()));
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let cells: Vec<Cell> = nodes
        .iter()
        .map(|n| {
            let pods = on_node.get(&n.name_any());
            // The best pod on the node speaks for it (a surge pod beside an old one).
            let best = pods.and_then(|ps| {
                ps.iter()
                    .map(|p| pod_cell(p, "controller-revision-hash", &hash, min_ready))
                    .min()
            });
            match (node_ready(n), best) {
                (false, _) => Cell::NodeDown,
                (true, Some(c)) => c,
                (true, None) => Cell::NoPod,
            }
        })
        .collect();
    let status = ds.status.unwrap_or_default();
    let desired = status.desired_number_scheduled;
    let complete = status.observed_generation >= ds.metadata.generation
        && status.updated_number_scheduled.unwrap_or(0) == desired
        && status.number_available.unwrap_or(0) == desired;
    let revision = current.map_or(0, |r| r.revision);
    Ok(Picture {
        title: format!(
            "daemonset {ns}/{name}: revision {revision} ({hash}), {} nodes, {desired} desired",
            nodes.len()
        ),
        cells,
        complete,
    })
}

async fn deployment(client: &Client, ns: &str, name: &str) -> Result<Picture, String> {
    let d = Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .map_err(|e| format!("deployment {ns}/{name}: {e}"))?;
    let uid = d.uid().unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    let revision_of = |rs: &ReplicaSet| {
        rs.annotations()
            .get("deployment.kubernetes.io/revision")
            .and_then(|r| r.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let sets = Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    let newest = sets
        .items
        .iter()
        .filter(|rs| owned_by(*rs, &uid))
        .max_by_key(|rs| revision_of(rs));
    let hash = newest
        .and_then(|rs| rs.labels().get("pod-template-hash").cloned())
        .unwrap_or_default();
    let selector = selector_of(spec.selector.match_labels.as_ref());
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| e.to_string())?;
    let set_uids: Vec<String> = sets
        .items
        .iter()
        .filter(|rs| owned_by(*rs, &uid))
        .filter_map(|rs| rs.uid())
        .collect();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut cells: Vec<(Cell, String)> = pods
        .items
        .iter()
        .filter(|p| set_uids.iter().any(|u| owned_by(*p, u)))
        .map(|p| {
            (
                pod_cell(p, "pod-template-hash", &hash, min_ready),
                p.name_any(),
            )
        })
        .collect();
    cells.sort();
    let status = d.status.unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let complete = status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && status.updated_replicas.unwrap_or(0) == replicas
        && status.replicas.unwrap_or(0) == replicas
        && status.available_replicas.unwrap_or(0) == replicas;
    let revision = newest.map_or(0, revision_of);
    Ok(Picture {
        title: format!("deployment {ns}/{name}: revision {revision} ({hash}), {replicas} replicas"),
        cells: cells.into_iter().map(|(c, _)| c).collect(),
        complete,
    })
}

pub async fn run(args: MapArgs) -> Result<(), String> {
    let (kind, name) = args
        .target
        .split_once('/')
        .ok_or_else(|| format!("expected KIND/NAME, got {:?}", args.target))?;
    let kind = match kind.to_ascii_lowercase().as_str() {
        "ds" | "daemonset" | "daemonsets" | "daemonset.apps" => "daemonset",
        "deploy" | "deployment" | "deployments" | "deployment.apps" => "deployment",
        other => {
            return Err(format!(
                "cannot draw {other:?}: expected daemonset/NAME or deployment/NAME"
            ));
        }
    };
    let config = crate::cluster::config_for(args.kubeconfig.as_deref()).await?;
    let ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| e.to_string())?;
    let colour = match args.color.as_str() {
        "always" => true,
        "never" => false,
        "auto" => std::io::stdout().is_terminal(),
        other => {
            return Err(format!(
                "--color must be auto, always or never, not {other:?}"
            ));
        }
    };
    loop {
        let picture = match kind {
            "daemonset" => daemonset(&client, &ns, name).await?,
            _ => deployment(&client, &ns, name).await?,
        };
        if args.watch && colour {
            // Home and clear, so the picture stays in place.
            print!("\x1b[H\x1b[2J");
        }
        println!("{}", picture.title);
        print!("{}", render(&picture.cells, args.width, colour));
        println!("{}", legend(&picture.cells));
        if picture.complete {
            println!("rollout complete");
        }
        if !args.watch || picture.complete {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !colour {
            println!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_draw_width_to_a_line_with_a_legend() {
        let cells = [
            Cell::Updated,
            Cell::Updated,
            Cell::Updating,
            Cell::Old,
            Cell::Unavailable,
            Cell::NodeDown,
            Cell::NoPod,
        ];
        assert_eq!(render(&cells, 3, false), "##+\no!x\n.\n");
        assert_eq!(
            legend(&cells),
            "# updated 2  + updating 1  o old 1  ! unavailable 1  x node not ready 1  . no pod 1"
        );
        assert_eq!(render(&[Cell::Updated], 0, true), "\x1b[32m#\x1b[0m\n");
        assert_eq!(legend(&[]), "");
    }

    #[test]
    fn nodes_sort_by_their_number() {
        let mut names = vec!["node-10", "node-2", "edge-1", "node-1", "node"];
        names.sort_by_cached_key(|n| natural(n));
        assert_eq!(names, ["edge-1", "node", "node-1", "node-2", "node-10"]);
    }

    #[test]
    fn a_pod_is_drawn_by_revision_readiness_and_deletion() {
        let pod = |hash: &str, ready: &str, deleting: bool| -> Pod {
            let mut v = serde_json::json!({
                "metadata": {"name": "p", "labels": {"controller-revision-hash": hash}},
                "status": {"conditions": [{"type": "Ready", "status": ready,
                    "lastTransitionTime": "2020-01-01T00:00:00Z"}]},
            });
            if deleting {
                v["metadata"]["deletionTimestamp"] = "2020-01-01T00:00:00Z".into();
            }
            serde_json::from_value(v).unwrap_or_default()
        };
        let cell = |p: &Pod| pod_cell(p, "controller-revision-hash", "new", 0);
        assert_eq!(cell(&pod("new", "True", false)), Cell::Updated);
        assert_eq!(cell(&pod("new", "False", false)), Cell::Updating);
        assert_eq!(cell(&pod("old", "True", false)), Cell::Old);
        assert_eq!(cell(&pod("old", "False", false)), Cell::Unavailable);
        assert_eq!(cell(&pod("new", "True", true)), Cell::Terminating);
        // Ready since 2020, so available whatever minReadySeconds says within reason.
        assert_eq!(
            pod_cell(
                &pod("new", "True", false),
                "controller-revision-hash",
                "new",
                30
            ),
            Cell::Updated
        );
    }
}
