//! `GET pods/{name}/log`: the log of a container of the simulated runtime.
//!
//! A simulated container prints nothing of its own, so its log is what the runtime did with
//! it: one line when an instance started (image, node, restart count) and one when it ended
//! (exit code, reason), read from the pod's container statuses. The request checks and their
//! 400 texts are the API server's and the kubelet's; `previous`, `timestamps`, `tailLines`,
//! `limitBytes`, `sinceSeconds`, `sinceTime` and `follow` behave as there.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use serde_json::Value;

use futures::StreamExt;

use crate::ApiState;
use crate::admission::FieldError;
use crate::errors::{ApiError, ApiResult};
use crate::resources::Resource;
use crate::rest::{Request, current};

/// How often a followed log looks for the end of its container.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// One line of a container's log.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub at: DateTime<Utc>,
    pub text: String,
}

/// The query of a log request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LogOptions {
    pub container: Option<String>,
    pub previous: bool,
    pub timestamps: bool,
    pub follow: bool,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
    pub since: Option<DateTime<Utc>>,
}

fn flag(req: &Request<'_>, name: &str) -> ApiResult<bool> {
    match req.q(name) {
        None | Some("false") => Ok(false),
        Some("true" | "") => Ok(true),
        Some(v) => Err(ApiError::bad_request(format!(
            "invalid value for {name}: {v:?}: must be true or false"
        ))),
    }
}

fn number(req: &Request<'_>, name: &str) -> ApiResult<Option<i64>> {
    req.q(name)
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!("invalid value for {name}: {v:?}: not a number"))
            })
        })
        .transpose()
}

/// What validation errors name: the options, as `PodLogOptions "name" is invalid: …`.
static POD_LOG_OPTIONS: Resource = Resource {
    group: "",
    version: "v1",
    kind: "PodLogOptions",
    plural: "pods",
    singular: "",
    namespaced: true,
    short_names: &[],
    all_category: false,
    subresources: &[],
    has_generation: false,
    has_status: false,
};

impl LogOptions {
    /// The options of `req` for pod `name`, validated as `PodLogOptions` is.
    pub fn from_request(req: &Request<'_>, name: &str, now: DateTime<Utc>) -> ApiResult<Self> {
        let mut invalid = Vec::new();
        let tail_lines = number(req, "tailLines")?;
        if let Some(n) = tail_lines.filter(|n| *n < 0) {
            invalid.push(FieldError::invalid(
                "tailLines",
                &n.into(),
                "must be greater than or equal to 0",
            ));
        }
        let limit_bytes = number(req, "limitBytes")?;
        if let Some(n) = limit_bytes.filter(|n| *n < 1) {
            invalid.push(FieldError::invalid(
                "limitBytes",
                &n.into(),
                "must be greater than 0",
            ));
        }
        let since_seconds = number(req, "sinceSeconds")?;
        if let Some(n) = since_seconds.filter(|n| *n < 1) {
            invalid.push(FieldError::invalid(
                "sinceSeconds",
                &n.into(),
                "must be greater than 0",
            ));
        }
        let since_time = req
            .q("sinceTime")
            .map(|t| {
                DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        ApiError::bad_request(format!(
                            "invalid value for sinceTime: {t:?}: not an RFC 3339 time"
                        ))
                    })
            })
            .transpose()?;
        if since_seconds.is_some() && since_time.is_some() {
            invalid.push(FieldError::forbidden(
                "",
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            ));
        }
        if !invalid.is_empty() {
            return Err(ApiError::invalid(&POD_LOG_OPTIONS, name, &invalid));
        }
        Ok(LogOptions {
            container: req
                .q("container")
                .filter(|c| !c.is_empty())
                .map(String::from),
            previous: flag(req, "previous")?,
            timestamps: flag(req, "timestamps")?,
            follow: flag(req, "follow")?,
            tail_lines,
            limit_bytes,
            since: since_time.or(since_seconds.map(|s| now - chrono::Duration::seconds(s))),
        })
    }
}

/// The container the request is about, checked as the API server checks it.
pub fn container_of(pod: &Pod, wanted: Option<&str>) -> ApiResult<String> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let names: Vec<&str> = spec
        .map(|s| s.containers.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    let init: Vec<&str> = spec
        .and_then(|s| s.init_containers.as_ref())
        .map(|v| v.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    let container = match wanted {
        Some(c) => {
            if !names.contains(&c) && !init.contains(&c) {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            c.to_string()
        }
        None if names.len() == 1 => names[0].to_string(),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            return Err(ApiError::bad_request(msg));
        }
    };
    if spec
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
        .is_empty()
    {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    Ok(container)
}

fn status_of<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    let st = pod.status.as_ref()?;
    st.container_statuses
        .iter()
        .chain(st.init_container_statuses.iter())
        .flatten()
        .find(|c| c.name == container)
}

/// The log lines of `container` (current instance, or the previous one), and whether that
/// instance has ended; a 400 as the kubelet answers when there is no such instance.
pub fn lines(pod: &Pod, container: &str, previous: bool) -> ApiResult<(Vec<Line>, bool)> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default();
    let status = status_of(pod, container);
    let image = status.map(|s| s.image.clone()).unwrap_or_else(|| {
        pod.spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == container)
            .and_then(|c| c.image.clone())
            .unwrap_or_default()
    });
    let restarts = status.map_or(0, |s| s.restart_count);
    let last = status
        .and_then(|s| s.last_state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    let now = status.and_then(|s| s.state.as_ref());
    // The kubelet's order: the previous instance when asked, else the running one, else the
    // one that ended, else (waiting to restart) the one before.
    let (started, terminated, instance) = if previous {
        match last {
            Some(t) => (t.started_at.clone(), Some(t), restarts.saturating_sub(1)),
            None => {
                return Err(ApiError::bad_request(format!(
                    "previous terminated container \"{container}\" in pod \"{name}\" not found"
                )));
            }
        }
    } else if let Some(r) = now.and_then(|s| s.running.as_ref()) {
        (r.started_at.clone(), None, restarts)
    } else if let Some(t) = now.and_then(|s| s.terminated.as_ref()) {
        (t.started_at.clone(), Some(t), restarts)
    } else if let Some(t) = last {
        (t.started_at.clone(), Some(t), restarts.saturating_sub(1))
    } else {
        let reason = now
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone())
            .unwrap_or_else(|| "ContainerCreating".into());
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    };
    let mut out = Vec::new();
    if let Some(at) = started.map(|t| t.0) {
        out.push(Line {
            at,
            text: format!(
                "ger: simulated container {container} started from image {image} on node {node} (restart {instance})"
            ),
        });
    }
    if let Some(t) = terminated {
        let at = t
            .finished_at
            .as_ref()
            .map(|t| t.0)
            .or(out.first().map(|l| l.at))
            .unwrap_or_else(Utc::now);
        let reason = t.reason.as_deref().unwrap_or("Completed");
        out.push(Line {
            at,
            text: format!(
                "ger: container {container} exited with code {} ({reason})",
                t.exit_code
            ),
        });
    }
    Ok((out, terminated.is_some()))
}

/// The bytes of `lines` as the options ask: since, tail, timestamps, then the byte limit.
pub fn render(lines: &[Line], opts: &LogOptions) -> Vec<u8> {
    let kept: Vec<&Line> = lines
        .iter()
        .filter(|l| opts.since.is_none_or(|s| l.at >= s))
        .collect();
    let skip = match opts.tail_lines {
        Some(n) => kept.len().saturating_sub(usize::try_from(n).unwrap_or(0)),
        None => 0,
    };
    let mut out = Vec::new();
    for l in &kept[skip..] {
        if opts.timestamps {
            out.extend_from_slice(l.at.to_rfc3339_opts(SecondsFormat::Nanos, true).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(l.text.as_bytes());
        out.push(b'\n');
    }
    if let Some(limit) = opts.limit_bytes {
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    out
}

fn decode(v: Value) -> ApiResult<Pod> {
    serde_json::from_value(v).map_err(|e| ApiError::internal(format!("stored pod: {e}")))
}

fn text_response(body: Body) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// `GET /api/v1/namespaces/{ns}/pods/{name}/log`.
pub async fn pod_log(st: &ApiState, req: &Request<'_>, name: &str) -> ApiResult<Response> {
    let opts = LogOptions::from_request(req, name, Utc::now())?;
    st.cache.sync().await;
    let ns = req.namespace.clone();
    let pod = decode(current(st, req.res, ns.as_deref(), name)?)?;
    let container = container_of(&pod, opts.container.as_deref())?;
    let (lines, ended) = lines(&pod, &container, opts.previous)?;
    let first = render(&lines, &opts);
    if !opts.follow || opts.previous || ended {
        return Ok(text_response(Body::from(first)));
    }
    // Follow: what there is now, then the end of this instance when it comes.
    let st = st.clone();
    let res = req.res;
    let name = name.to_string();
    let started = lines.first().map(|l| l.at);
    let seen = lines.len();
    let tail = instance_end(st, res, ns, name, container, (started, seen), opts);
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(first) })
        .chain(futures::stream::once(tail));
    Ok(text_response(Body::from_stream(stream)))
}

/// Waits for the followed instance to end (or the pod to go) and returns its last lines.
async fn instance_end(
    st: ApiState,
    res: &'static Resource,
    ns: Option<String>,
    name: String,
    container: String,
    (started, seen): (Option<DateTime<Utc>>, usize),
    opts: LogOptions,
) -> Result<Vec<u8>, std::io::Error> {
    loop {
        tokio::time::sleep(FOLLOW_POLL).await;
        let Ok(v) = current(&st, res, ns.as_deref(), &name) else {
            return Ok(Vec::new());
        };
        let Ok(pod) = decode(v) else {
            return Ok(Vec::new());
        };
        match lines(&pod, &container, false) {
            // Restarted: the followed instance ended while nobody looked.
            Ok((lines, _)) if lines.first().map(|l| l.at) != started => {
                return Ok(Vec::new());
            }
            Ok((lines, true)) => {
                let rest = LogOptions {
                    tail_lines: None,
                    limit_bytes: None,
                    ..opts
                };
                return Ok(render(lines.get(seen..).unwrap_or_default(), &rest));
            }
            Ok((_, false)) => {}
            // Restarted or gone back to waiting: the followed instance is over.
            Err(_) => return Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    const T0: &str = "2026-12-01T10:00:00Z";
    const T1: &str = "2026-12-01T10:00:05Z";
    const T2: &str = "2026-12-01T10:00:09Z";

    fn pod(node: &str, statuses: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "agent-x", "namespace": "default"},
            "spec": {"nodeName": node,
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "agent", "image": "agent:v1"}, {"name": "sidecar", "image": "proxy:v2"}]},
            "status": {"containerStatuses": statuses},
        }))
        .unwrap()
    }

    fn texts(r: ApiResult<(Vec<Line>, bool)>) -> Result<(Vec<String>, bool), String> {
        r.map(|(l, ended)| (l.into_iter().map(|l| l.text).collect(), ended))
            .map_err(|e| e.message)
    }

    #[test]
    fn the_container_is_named_as_the_api_server_asks() {
        let p = pod("edge-1", json!([]));
        assert_eq!(container_of(&p, Some("sidecar")).unwrap(), "sidecar");
        assert_eq!(container_of(&p, Some("init")).unwrap(), "init");
        assert_eq!(
            container_of(&p, None).unwrap_err().message,
            "a container name must be specified for pod agent-x, choose one of: [agent sidecar] or one of the init containers: [init]"
        );
        assert_eq!(
            container_of(&p, Some("nope")).unwrap_err().message,
            "container nope is not valid for pod agent-x"
        );
        let unscheduled = pod("", json!([]));
        let e = container_of(&unscheduled, Some("agent")).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "pod agent-x does not have a host assigned")
        );
    }

    #[test]
    fn each_container_state_gives_the_kubelets_answer() {
        let status = |state: Value, last: Value, restarts: i32| {
            pod(
                "edge-1",
                json!([{"name": "agent", "image": "agent:v1", "imageID": "", "ready": false,
                    "restartCount": restarts, "state": state, "lastState": last}]),
            )
        };
        let started = "ger: simulated container agent started from image agent:v1 on node edge-1";
        let running = status(json!({"running": {"startedAt": T0}}), json!({}), 0);
        assert_eq!(
            texts(lines(&running, "agent", false)),
            Ok((vec![format!("{started} (restart 0)")], false))
        );
        assert_eq!(
            texts(lines(&running, "agent", true)),
            Err("previous terminated container \"agent\" in pod \"agent-x\" not found".into())
        );
        let done = status(
            json!({"terminated": {"startedAt": T0, "finishedAt": T1, "exitCode": 0, "reason": "Completed"}}),
            json!({}),
            0,
        );
        assert_eq!(
            texts(lines(&done, "agent", false)),
            Ok((
                vec![
                    format!("{started} (restart 0)"),
                    "ger: container agent exited with code 0 (Completed)".into()
                ],
                true
            ))
        );
        // Waiting to restart: the instance before; the restarted one once running again.
        let crashed = json!({"terminated": {"startedAt": T0, "finishedAt": T1, "exitCode": 3, "reason": "Error"}});
        let backoff = status(
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            crashed.clone(),
            1,
        );
        let previous = vec![
            format!("{started} (restart 0)"),
            "ger: container agent exited with code 3 (Error)".to_string(),
        ];
        assert_eq!(
            texts(lines(&backoff, "agent", false)),
            Ok((previous.clone(), true))
        );
        assert_eq!(
            texts(lines(&backoff, "agent", true)),
            Ok((previous.clone(), true))
        );
        let again = status(json!({"running": {"startedAt": T2}}), crashed, 1);
        assert_eq!(
            texts(lines(&again, "agent", false)),
            Ok((vec![format!("{started} (restart 1)")], false))
        );
        assert_eq!(texts(lines(&again, "agent", true)), Ok((previous, true)));
        let pulling = status(json!({"waiting": {"reason": "ErrImagePull"}}), json!({}), 0);
        assert_eq!(
            texts(lines(&pulling, "agent", false)),
            Err("container \"agent\" in pod \"agent-x\" is waiting to start: ErrImagePull".into())
        );
        // No status yet: still being created.
        assert_eq!(
            texts(lines(&running, "sidecar", false)),
            Err(
                "container \"sidecar\" in pod \"agent-x\" is waiting to start: ContainerCreating"
                    .into()
            )
        );
    }

    #[test]
    fn options_cut_the_log_as_the_kubelet_does() {
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        let log = vec![
            Line {
                at: at(T0),
                text: "one".into(),
            },
            Line {
                at: at(T1),
                text: "two".into(),
            },
            Line {
                at: at(T2),
                text: "three".into(),
            },
        ];
        let r = |o: LogOptions| String::from_utf8(render(&log, &o)).unwrap();
        assert_eq!(r(LogOptions::default()), "one\ntwo\nthree\n");
        assert_eq!(
            r(LogOptions {
                tail_lines: Some(2),
                ..Default::default()
            }),
            "two\nthree\n"
        );
        assert_eq!(
            r(LogOptions {
                tail_lines: Some(0),
                ..Default::default()
            }),
            ""
        );
        assert_eq!(
            r(LogOptions {
                since: Some(at(T1)),
                ..Default::default()
            }),
            "two\nthree\n"
        );
        assert_eq!(
            r(LogOptions {
                limit_bytes: Some(6),
                ..Default::default()
            }),
            "one\ntw"
        );
        assert_eq!(
            r(LogOptions {
                timestamps: true,
                tail_lines: Some(1),
                ..Default::default()
            }),
            "2026-12-01T10:00:09.000000000Z three\n"
        );
    }
}
