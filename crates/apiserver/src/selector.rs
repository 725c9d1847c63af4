//! Label and field selectors with apimachinery's semantics (`labels.Parse`,
//! `metav1.LabelSelectorAsSelector`, `labels.FormatLabels`, `fields.ParseSelector`) and the
//! selectable fields kube-apiserver offers per resource.

use std::fmt;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: Option<&Value>) -> bool {
        let value = labels
            .and_then(|l| l.get(&self.key))
            .and_then(Value::as_str);
        match self.op {
            Op::Equals | Op::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Op::NotEquals | Op::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::Gt | Op::Lt => {
                let (Some(v), Some(bound)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|b| b.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.op == Op::Gt {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.first().map(String::as_str).unwrap_or("");
        match self.op {
            Op::Equals => write!(f, "{}={first}", self.key),
            Op::NotEquals => write!(f, "{}!={first}", self.key),
            Op::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Op::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
            Op::Exists => write!(f, "{}", self.key),
            Op::DoesNotExist => write!(f, "!{}", self.key),
            Op::Gt => write!(f, "{}>{first}", self.key),
            Op::Lt => write!(f, "{}<{first}", self.key),
        }
    }
}

/// A conjunction of requirements; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

fn valid_label_value(v: &str) -> Result<(), String> {
    let ok = v.len() <= 63
        && (v.is_empty()
            || (v.starts_with(|c: char| c.is_ascii_alphanumeric())
                && v.ends_with(|c: char| c.is_ascii_alphanumeric())
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid label value: \"{v}\": at key: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        ))
    }
}

fn valid_label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    });
    if name_ok && prefix_ok {
        Ok(())
    } else {
        Err(format!(
            "invalid label key \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ))
    }
}

/// Tokens of the label selector grammar.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Id(String),
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Not,
    Comma,
    Open,
    Close,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            '>' => {
                out.push(Tok::Gt);
                i += 1;
            }
            '<' => {
                out.push(Tok::Lt);
                i += 1;
            }
            '=' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Tok::DoubleEq);
                    i += 2;
                } else {
                    out.push(Tok::Eq);
                    i += 1;
                }
            }
            '!' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Tok::NotEq);
                    i += 2;
                } else {
                    out.push(Tok::Not);
                    i += 1;
                }
            }
            _ => {
                let start = i;
                while i < chars.len() && !" \t\n\r,()=!<>".contains(chars[i]) {
                    i += 1;
                }
                out.push(Tok::Id(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn ident(&mut self, what: &str) -> Result<String, String> {
        match self.next() {
            Some(Tok::Id(s)) => Ok(s),
            other => Err(format!(
                "found '{}', expected: {what}",
                describe(other.as_ref())
            )),
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            let key = self.ident("identifier after '!'")?;
            valid_label_key(&key)?;
            return Ok(Requirement {
                key,
                op: Op::DoesNotExist,
                values: Vec::new(),
            });
        }
        let key = self.ident("identifier")?;
        valid_label_key(&key)?;
        let op = match self.peek() {
            None | Some(Tok::Comma) => {
                return Ok(Requirement {
                    key,
                    op: Op::Exists,
                    values: Vec::new(),
                });
            }
            Some(Tok::Eq | Tok::DoubleEq) => Op::Equals,
            Some(Tok::NotEq) => Op::NotEquals,
            Some(Tok::Gt) => Op::Gt,
            Some(Tok::Lt) => Op::Lt,
            Some(Tok::Id(w)) if w == "in" => Op::In,
            Some(Tok::Id(w)) if w == "notin" => Op::NotIn,
            other => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    describe(other)
                ));
            }
        };
        self.pos += 1;
        let values = match op {
            Op::In | Op::NotIn => {
                if self.next() != Some(Tok::Open) {
                    return Err("found ')', expected: '('".into());
                }
                let mut values = Vec::new();
                loop {
                    match self.next() {
                        Some(Tok::Id(v)) => {
                            valid_label_value(&v)?;
                            values.push(v);
                            match self.next() {
                                Some(Tok::Comma) => continue,
                                Some(Tok::Close) => break,
                                other => {
                                    return Err(format!(
                                        "found '{}', expected: ',' or ')'",
                                        describe(other.as_ref())
                                    ));
                                }
                            }
                        }
                        Some(Tok::Comma) => values.push(String::new()),
                        Some(Tok::Close) => {
                            if values.is_empty() {
                                values.push(String::new());
                            }
                            break;
                        }
                        other => {
                            return Err(format!(
                                "found '{}', expected: ',', ')' or identifier",
                                describe(other.as_ref())
                            ));
                        }
                    }
                }
                values.sort();
                values.dedup();
                values
            }
            Op::Gt | Op::Lt => {
                let v = self.ident("integer")?;
                if v.parse::<i64>().is_err() {
                    return Err(format!("invalid value \"{v}\": must be an integer"));
                }
                vec![v]
            }
            _ => {
                let v = match self.peek() {
                    Some(Tok::Id(_)) => self.ident("identifier")?,
                    _ => String::new(),
                };
                valid_label_value(&v)?;
                vec![v]
            }
        };
        Ok(Requirement { key, op, values })
    }
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "".into(),
        Some(Tok::Id(s)) => s.clone(),
        Some(Tok::Eq) => "=".into(),
        Some(Tok::DoubleEq) => "==".into(),
        Some(Tok::NotEq) => "!=".into(),
        Some(Tok::Gt) => ">".into(),
        Some(Tok::Lt) => "<".into(),
        Some(Tok::Not) => "!".into(),
        Some(Tok::Comma) => ",".into(),
        Some(Tok::Open) => "(".into(),
        Some(Tok::Close) => ")".into(),
    }
}

impl LabelSelector {
    /// Parse the `labelSelector` query syntax.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut p = Parser {
            toks: lex(s)?,
            pos: 0,
        };
        let mut requirements = Vec::new();
        while p.peek().is_some() {
            requirements.push(p.requirement()?);
            match p.next() {
                None => break,
                Some(Tok::Comma) => {}
                other => {
                    return Err(format!(
                        "found '{}', expected: ','",
                        describe(other.as_ref())
                    ));
                }
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// From a `metav1.LabelSelector` (matchLabels + matchExpressions).
    pub fn from_label_selector(sel: Option<&Value>) -> Result<Self, String> {
        let mut requirements = Vec::new();
        let Some(sel) = sel.filter(|s| !s.is_null()) else {
            return Ok(Self::default());
        };
        if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in m {
                let v = v.as_str().unwrap_or("");
                valid_label_key(k)?;
                valid_label_value(v)?;
                requirements.push(Requirement {
                    key: k.clone(),
                    op: Op::Equals,
                    values: vec![v.to_string()],
                });
            }
        }
        for e in sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = e
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            valid_label_key(&key)?;
            let mut values: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            values.sort();
            values.dedup();
            let op = match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => Op::In,
                "NotIn" => Op::NotIn,
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                other => {
                    return Err(format!(
                        "\"{other}\" is not a valid label selector operator"
                    ));
                }
            };
            requirements.push(Requirement { key, op, values });
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// `labels.SelectorFromSet`: every key equals its value.
    pub fn from_map(map: Option<&Value>) -> Self {
        let mut requirements: Vec<Requirement> = map
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                op: Op::Equals,
                values: vec![v.as_str().unwrap_or("").to_string()],
            })
            .collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements }
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: Option<&Value>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// `LabelSelectorAsSelector(sel).String()`; "" for an empty or absent selector.
pub fn label_selector_string(sel: Option<&Value>) -> Result<String, String> {
    LabelSelector::from_label_selector(sel).map(|s| s.to_string())
}

/// `labels.FormatLabels`: sorted `k=v` pairs, or `<none>`.
pub fn format_labels(map: Option<&Value>) -> String {
    let s = LabelSelector::from_map(map).to_string();
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub negate: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

/// Fields each resource can be selected by, besides metadata.name and metadata.namespace.
fn selectable(resource: &str) -> &'static [&'static str] {
    match resource {
        "secrets" => &["type"],
        "pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "nodes" => &["spec.unschedulable"],
        "namespaces" => &["status.phase"],
        "replicasets" | "replicationcontrollers" => &["status.replicas"],
        _ => &[],
    }
}

/// Split on unescaped `sep`, keeping escapes for a later unescape.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            cur.push(c);
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        } else if c == sep {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('\\' | ',' | '=')) => out.push(n),
                Some(n) => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{n}"
                    ));
                }
                None => return Err("invalid field selector: unterminated escape sequence".into()),
            }
        } else if matches!(c, ',' | '=') {
            return Err(format!("invalid field selector: unescaped {c} in value"));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// `metadata.name`, `metadata.namespace` and every selectable field of `resource`, rendered
/// as [`FieldSelector::matches_fields`] compares them.
pub fn field_values(resource: &str, obj: &Value) -> Vec<(&'static str, String)> {
    ["metadata.name", "metadata.namespace"]
        .iter()
        .chain(selectable(resource))
        .map(|f| (*f, field_value(resource, obj, f)))
        .collect()
}

/// The value of a selectable field, as upstream's field sets render it.
fn field_value(resource: &str, obj: &Value, field: &str) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let b = |v: &Value| v.as_bool().unwrap_or(false).to_string();
    match field {
        "metadata.name" => s(&obj["metadata"]["name"]),
        "metadata.namespace" => s(&obj["metadata"]["namespace"]),
        "spec.hostNetwork" | "spec.unschedulable" => {
            let key = field.trim_start_matches("spec.");
            b(&obj["spec"][key])
        }
        "status.replicas" => obj["status"]["replicas"].as_i64().unwrap_or(0).to_string(),
        "status.podIPs" => obj["status"]["podIPs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|ip| ip["ip"].as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        "source" if resource == "events" => s(&obj["source"]["component"]),
        f => {
            let mut cur = obj;
            for part in f.split('.') {
                cur = &cur[part];
            }
            s(cur)
        }
    }
}

impl FieldSelector {
    /// Parse `f=v`, `f==v`, `f!=v`, comma-separated, with `\` escapes in values.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        for term in split_unescaped(s, ',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let (field, value, negate) = if let Some(i) = term.find("!=") {
                (&term[..i], &term[i + 2..], true)
            } else if let Some(i) = term.find("==") {
                (&term[..i], &term[i + 2..], false)
            } else if let Some(i) = term.find('=') {
                (&term[..i], &term[i + 1..], false)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                ));
            };
            requirements.push(FieldRequirement {
                field: field.trim().to_string(),
                value: unescape(value)?,
                negate,
            });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn check_supported(&self, resource: &str) -> Result<(), String> {
        for r in &self.requirements {
            let ok = matches!(r.field.as_str(), "metadata.name" | "metadata.namespace")
                || selectable(resource).contains(&r.field.as_str());
            if !ok {
                return Err(format!("field label not supported: {}", r.field));
            }
        }
        Ok(())
    }

    pub fn matches(&self, resource: &str, obj: &Value) -> bool {
        self.matches_fields(&field_values(resource, obj))
    }

    /// [`FieldSelector::matches`] over values rendered by [`field_values`].
    pub fn matches_fields(&self, fields: &[(&'static str, String)]) -> bool {
        self.requirements.iter().all(|r| {
            let v = fields
                .iter()
                .find(|(f, _)| *f == r.field)
                .map_or("", |(_, v)| v.as_str());
            (v == r.value) != r.negate
        })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The name pinned by `metadata.name=X`, if any.
    pub fn exact_name(&self) -> Option<&str> {
        self.pinned("metadata.name")
    }

    /// The value `field=X` pins, if the selector has such a term.
    pub fn pinned(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && !r.negate)
            .map(|r| r.value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_table() {
        let labels = json!({"app": "web", "tier": "fe", "n": "5"});
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (web,db)", true),
            ("app in (db)", false),
            ("app notin (db)", true),
            ("app notin (web)", false),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier=fe", true),
            ("app=web, tier=be", false),
            ("  app  in  ( web , db ) ", true),
            ("n>3", true),
            ("n<3", false),
            ("app=", false),
        ];
        for (s, want) in cases {
            let sel = LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(sel.matches(Some(&labels)), *want, "{s}");
        }
        assert!(
            LabelSelector::parse("app=")
                .unwrap()
                .matches(Some(&json!({"app": ""})))
        );
        for bad in [
            "app in web",
            "=x",
            "app in (a",
            "a b",
            "Bad Key=x",
            "app=v@l",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn selectors_print_as_upstream() {
        let sel = json!({"matchLabels": {"release": "canary", "app": "myapp"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]},
                                 {"key": "zone", "operator": "DoesNotExist"}]});
        assert_eq!(
            label_selector_string(Some(&sel)).unwrap(),
            "app=myapp,release=canary,tier in (a,b),!zone"
        );
        assert_eq!(label_selector_string(None).unwrap(), "");
        assert!(
            label_selector_string(Some(
                &json!({"matchExpressions": [{"key": "a", "operator": "Foo"}]})
            ))
            .unwrap_err()
            .contains("\"Foo\" is not a valid label selector operator")
        );
        assert_eq!(format_labels(Some(&json!({"b": "2", "a": "1"}))), "a=1,b=2");
        assert_eq!(format_labels(None), "<none>");
        assert_eq!(
            LabelSelector::parse("b in (y,x),a").unwrap().to_string(),
            "a,b in (x,y)"
        );
    }

    #[test]
    fn field_selector_table() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": "node-1"}, "status": {"phase": "Running"}});
        let cases: &[(&str, bool)] = &[
            ("metadata.name=p", true),
            ("metadata.name==p", true),
            ("metadata.name!=p", false),
            (
                "spec.nodeName=node-1,status.phase!=Succeeded,status.phase!=Failed",
                true,
            ),
            ("status.phase=Pending", false),
            ("spec.hostNetwork=false", true),
        ];
        for (s, want) in cases {
            let sel = FieldSelector::parse(s).unwrap();
            sel.check_supported("pods").unwrap();
            assert_eq!(sel.matches("pods", &pod), *want, "{s}");
        }
        let ev = json!({"involvedObject": {"kind": "Node", "name": "n1", "uid": "n1"}, "source": {"component": "kubelet"}});
        let sel = FieldSelector::parse("involvedObject.name=n1,involvedObject.namespace=,involvedObject.kind=Node,source=kubelet").unwrap();
        sel.check_supported("events").unwrap();
        assert!(sel.matches("events", &ev));
        let node = json!({"metadata": {"name": "n"}, "spec": {}});
        assert!(
            FieldSelector::parse("spec.unschedulable=false")
                .unwrap()
                .matches("nodes", &node)
        );
        assert_eq!(
            FieldSelector::parse("spec.bogus=1")
                .unwrap()
                .check_supported("pods"),
            Err("field label not supported: spec.bogus".to_string())
        );
        let esc = FieldSelector::parse(r"metadata.name=a\,b").unwrap();
        assert_eq!(esc.requirements[0].value, "a,b");
        assert_eq!(esc.exact_name(), Some("a,b"));
        assert!(FieldSelector::parse("nonsense").is_err());
        let rs = json!({"status": {}});
        assert!(
            FieldSelector::parse("status.replicas=0")
                .unwrap()
                .matches("replicasets", &rs)
        );
    }
}
