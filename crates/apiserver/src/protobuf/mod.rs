//! Request bodies in `application/vnd.kubernetes.protobuf`, turned into the JSON the rest of
//! the server reads.
//!
//! kubectl's typed clients (`kubectl create deployment|namespace`, `kubectl drain`) send
//! protobuf. The wire form is the magic `k8s\0`, then a `runtime.Unknown` whose `typeMeta`
//! names the kind and whose `raw` is the object. The field numbers come from Kubernetes'
//! generated.proto files, reduced to `schema.txt` by `tools/proto-schema.py`.
//!
//! Go writes every non-pointer field, set or not, so an unset `string` arrives as `""`, an
//! unset `int32` as `0` and an unset `Time` as an empty message. JSON would have left them out, and the
//! rest of the server reads absent and zero alike only where upstream's JSON would: so empty
//! strings, zero numbers and `false` are dropped, but for the fields that are pointers
//! upstream ([`POINTER_FIELDS`]), where zero is a value (`replicas: 0`, `runAsUser: 0`).
//! Map values and list items are kept as they are.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";
const MAX_DEPTH: usize = 64;

/// `Unix()` of Go's zero `time.Time` (January 1, year 1): how an unset `Time` travels.
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// Integer and boolean fields that are pointers in upstream's Go types: a zero on the wire
/// was set by the client.
pub const POINTER_FIELDS: &[&str] = &[
    "activeDeadlineSeconds",
    "allowPrivilegeEscalation",
    "automountServiceAccountToken",
    "blockOwnerDeletion",
    "collisionCount",
    "controller",
    "defaultMode",
    "deletionGracePeriodSeconds",
    "enableServiceLinks",
    "expirationSeconds",
    "fsGroup",
    "gracePeriodSeconds",
    "hostProcess",
    "hostUsers",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "immutable",
    "leaseDurationSeconds",
    "leaseTransitions",
    "lun",
    "minDomains",
    "mode",
    "optional",
    "orphanDependents",
    "partition",
    "priority",
    "privileged",
    "progressDeadlineSeconds",
    "readOnlyRootFilesystem",
    "replicas",
    "revisionHistoryLimit",
    "runAsGroup",
    "runAsNonRoot",
    "runAsUser",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "started",
    "terminationGracePeriodSeconds",
    "tolerationSeconds",
    "userNamespaces",
];

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

fn err<T>(m: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(m.into()))
}

/// Whether a `Content-Type` names Kubernetes' protobuf encoding.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/vnd.kubernetes.protobuf")
    })
}

/// Decodes a protobuf request body into the JSON object it stands for, with its `kind` and
/// `apiVersion`.
pub fn to_json(body: &[u8]) -> Result<Value, DecodeError> {
    let Some(rest) = body.strip_prefix(MAGIC) else {
        return err("the body does not start with the protobuf prefix \"k8s\\x00\"");
    };
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut r = Reader::new(rest);
    while let Some((num, wire)) = r.key()? {
        match (num, wire) {
            (1, Wire::Len) => {
                let mut tm = Reader::new(r.bytes()?);
                while let Some((n, w)) = tm.key()? {
                    match (n, w) {
                        (1, Wire::Len) => api_version = utf8(tm.bytes()?)?,
                        (2, Wire::Len) => kind = utf8(tm.bytes()?)?,
                        _ => tm.skip(w)?,
                    }
                }
            }
            (2, Wire::Len) => raw = r.bytes()?,
            (3, Wire::Len) => {
                let enc = r.bytes()?;
                if !enc.is_empty() {
                    return err(format!(
                        "content encoding {:?} is not supported",
                        String::from_utf8_lossy(enc)
                    ));
                }
            }
            (4, Wire::Len) => {
                let ct = r.bytes()?;
                if !ct.is_empty() && !is_protobuf(&String::from_utf8_lossy(ct)) {
                    return err(format!(
                        "raw content type {:?} is not supported",
                        String::from_utf8_lossy(ct)
                    ));
                }
            }
            _ => r.skip(wire)?,
        }
    }
    if kind.is_empty() {
        return err("the object has no kind");
    }
    let schema = schema();
    let Some(message) = schema.message_for(&api_version, &kind) else {
        return err(format!(
            "no protobuf schema for {kind} in {api_version:?} on this server"
        ));
    };
    let mut obj = decode_message(schema, message, raw, 0)?;
    let mut out = Map::new();
    out.insert("kind".into(), json!(kind));
    out.insert("apiVersion".into(), json!(api_version));
    out.append(&mut obj);
    Ok(Value::Object(out))
}

// --- the schema ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scalar {
    String,
    Int32,
    Int64,
    Bool,
    Bytes,
    Double,
    Float,
}

#[derive(Debug, Clone, Copy)]
enum Type {
    Scalar(Scalar),
    Message(&'static str),
}

#[derive(Debug)]
enum Shape {
    Optional(Type),
    /// A struct Go embeds with `json:",inline"`: its fields are the parent's.
    Inline(&'static str),
    Repeated(Type),
    Map(Scalar, Type),
}

#[derive(Debug)]
struct Field {
    name: &'static str,
    shape: Shape,
}

struct Schema {
    messages: HashMap<&'static str, HashMap<u64, Field>>,
}

fn scalar(name: &str) -> Option<Scalar> {
    Some(match name {
        "string" => Scalar::String,
        "int32" => Scalar::Int32,
        "int64" => Scalar::Int64,
        "bool" => Scalar::Bool,
        "bytes" => Scalar::Bytes,
        "double" => Scalar::Double,
        "float" => Scalar::Float,
        _ => return None,
    })
}

fn ty(name: &'static str) -> Type {
    scalar(name).map_or(Type::Message(name), Type::Scalar)
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| parse_schema(include_str!("schema.txt")))
}

/// Reads `schema.txt`. It is part of the binary and checked by a test, so a line that does
/// not parse is left out rather than reported.
fn parse_schema(text: &'static str) -> Schema {
    let mut messages: HashMap<&'static str, HashMap<u64, Field>> = HashMap::new();
    let mut current: Option<&'static str> = None;
    for line in text.lines() {
        let words: Vec<&'static str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] | ["#", ..] => {}
            ["message", name] => {
                messages.entry(name).or_default();
                current = Some(name);
            }
            [num, name, "map", k, v] => {
                if let (Some(m), Ok(num), Some(k)) = (current, num.parse(), scalar(k)) {
                    let shape = Shape::Map(k, ty(v));
                    messages
                        .entry(m)
                        .or_default()
                        .insert(num, Field { name, shape });
                }
            }
            [num, name, label, t] => {
                if let (Some(m), Ok(num)) = (current, num.parse()) {
                    let shape = match *label {
                        "repeated" => Shape::Repeated(ty(t)),
                        "inline" => Shape::Inline(t),
                        _ => Shape::Optional(ty(t)),
                    };
                    messages
                        .entry(m)
                        .or_default()
                        .insert(num, Field { name, shape });
                }
            }
            _ => {}
        }
    }
    Schema { messages }
}

impl Schema {
    /// The message of a kind: `apps/v1` Deployment is `apps.v1.Deployment`, core `v1` Pod is
    /// `core.v1.Pod`; kinds of meta/v1 (DeleteOptions) are found under any version.
    fn message_for(&self, api_version: &str, kind: &str) -> Option<&'static str> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let group = match group {
            "" => "core",
            "meta.k8s.io" => "meta",
            g => g.split('.').next().unwrap_or(g),
        };
        [
            format!("{group}.{version}.{kind}"),
            format!("meta.v1.{kind}"),
        ]
        .iter()
        .find_map(|n| self.messages.get_key_value(n.as_str()).map(|(k, _)| *k))
    }
}

// --- the wire -----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Wire {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some((&b, rest)) = self.buf.split_first() else {
                return err("truncated varint");
            };
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        err("varint longer than 10 bytes")
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return err("truncated field");
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| DecodeError("field too long".into()))?;
        self.take(n)
    }

    fn key(&mut self) -> Result<Option<(u64, Wire)>, DecodeError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let k = self.varint()?;
        let wire = match k & 7 {
            0 => Wire::Varint,
            1 => Wire::Fixed64,
            2 => Wire::Len,
            5 => Wire::Fixed32,
            w => return err(format!("unsupported wire type {w}")),
        };
        Ok(Some((k >> 3, wire)))
    }

    fn skip(&mut self, wire: Wire) -> Result<(), DecodeError> {
        match wire {
            Wire::Varint => self.varint().map(drop),
            Wire::Fixed64 => self.take(8).map(drop),
            Wire::Fixed32 => self.take(4).map(drop),
            Wire::Len => self.bytes().map(drop),
        }
    }
}

fn utf8(b: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError("a string is not valid UTF-8".into()))
}

fn wire_of(s: Scalar) -> Wire {
    match s {
        Scalar::String | Scalar::Bytes => Wire::Len,
        Scalar::Int32 | Scalar::Int64 | Scalar::Bool => Wire::Varint,
        Scalar::Double => Wire::Fixed64,
        Scalar::Float => Wire::Fixed32,
    }
}

/// One scalar whose key has been read.
fn read_scalar(r: &mut Reader<'_>, s: Scalar) -> Result<Value, DecodeError> {
    Ok(match s {
        Scalar::String => Value::String(utf8(r.bytes()?)?),
        Scalar::Bytes => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(r.bytes()?))
        }
        // Negative int32s travel sign-extended to 64 bits; the low half is the value.
        Scalar::Int32 => json!(r.varint()? as i64 as i32),
        Scalar::Int64 => json!(r.varint()? as i64),
        Scalar::Bool => json!(r.varint()? != 0),
        Scalar::Double => {
            let b = r.take(8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            json!(f64::from_le_bytes(a))
        }
        Scalar::Float => {
            let b = r.take(4)?;
            let mut a = [0u8; 4];
            a.copy_from_slice(b);
            json!(f32::from_le_bytes(a))
        }
    })
}

/// A value of `t` whose key (of wire type `wire`) has been read; `None` for a message that
/// stands for JSON's absence (an unset `Time`).
fn read_value(
    schema: &Schema,
    r: &mut Reader<'_>,
    t: Type,
    wire: Wire,
    depth: usize,
) -> Result<Option<Value>, DecodeError> {
    match t {
        Type::Scalar(s) => {
            if wire != wire_of(s) {
                return err(format!("wire type {wire:?} where {s:?} was expected"));
            }
            read_scalar(r, s).map(Some)
        }
        Type::Message(m) => {
            if wire != Wire::Len {
                return err(format!("wire type {wire:?} where message {m} was expected"));
            }
            let fields = decode_message(schema, m, r.bytes()?, depth + 1)?;
            special(m, fields)
        }
    }
}

/// Whether a single field's value is what Go writes for a field left unset: an empty
/// string, or a zero or `false` of a field that is not a pointer upstream.
fn unset(field: &str, v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b && !POINTER_FIELDS.contains(&field),
        Value::Number(n) => n.as_f64() == Some(0.0) && !POINTER_FIELDS.contains(&field),
        _ => false,
    }
}

fn decode_message(
    schema: &Schema,
    message: &'static str,
    buf: &[u8],
    depth: usize,
) -> Result<Map<String, Value>, DecodeError> {
    if depth > MAX_DEPTH {
        return err("objects nest too deeply");
    }
    let Some(fields) = schema.messages.get(message) else {
        return err(format!("no protobuf schema for message {message}"));
    };
    let mut out = Map::new();
    let mut r = Reader::new(buf);
    while let Some((num, wire)) = r.key()? {
        let Some(field) = fields.get(&num) else {
            r.skip(wire)?;
            continue;
        };
        match field.shape {
            Shape::Optional(t) => match read_value(schema, &mut r, t, wire, depth)? {
                Some(v) if !(matches!(t, Type::Scalar(_)) && unset(field.name, &v)) => {
                    out.insert(field.name.to_string(), v);
                }
                _ => {
                    out.remove(field.name);
                }
            },
            Shape::Inline(m) => {
                if wire != Wire::Len {
                    return err(format!("wire type {wire:?} where message {m} was expected"));
                }
                let mut inner = decode_message(schema, m, r.bytes()?, depth + 1)?;
                out.append(&mut inner);
            }
            Shape::Repeated(t) => {
                let items = out
                    .entry(field.name)
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(items) = items else {
                    return err(format!("field {} is both a list and not", field.name));
                };
                match t {
                    // Packed numbers: one length-delimited run of values.
                    Type::Scalar(s) if wire == Wire::Len && wire_of(s) != Wire::Len => {
                        let mut run = Reader::new(r.bytes()?);
                        while !run.buf.is_empty() {
                            items.push(read_scalar(&mut run, s)?);
                        }
                    }
                    _ => items
                        .push(read_value(schema, &mut r, t, wire, depth)?.unwrap_or(Value::Null)),
                }
            }
            Shape::Map(k, v) => {
                if wire != Wire::Len {
                    return err(format!("map field {} is not length-delimited", field.name));
                }
                let mut entry = Reader::new(r.bytes()?);
                let (mut key, mut value) = (None, None);
                while let Some((n, w)) = entry.key()? {
                    match n {
                        1 => key = Some(read_value(schema, &mut entry, Type::Scalar(k), w, depth)?),
                        2 => value = Some(read_value(schema, &mut entry, v, w, depth)?),
                        _ => entry.skip(w)?,
                    }
                }
                let key = match key.flatten() {
                    Some(Value::String(s)) => s,
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                let value = value.flatten().unwrap_or_else(|| match v {
                    Type::Scalar(Scalar::String | Scalar::Bytes) => json!(""),
                    Type::Scalar(Scalar::Bool) => json!(false),
                    Type::Scalar(_) => json!(0),
                    Type::Message(m) => special(m, Map::new()).ok().flatten().unwrap_or(json!({})),
                });
                let map = out
                    .entry(field.name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(key, value);
                }
            }
        }
    }
    Ok(out)
}

/// The JSON forms of the messages that are not objects in JSON.
fn special(message: &str, mut fields: Map<String, Value>) -> Result<Option<Value>, DecodeError> {
    let int = |f: &Map<String, Value>, k: &str| f.get(k).and_then(Value::as_i64).unwrap_or(0);
    Ok(Some(match message {
        "meta.v1.Time" | "meta.v1.MicroTime" => {
            // Go writes an unset Time as an empty message (or, older, as year 1).
            let (secs, nanos) = (int(&fields, "seconds"), int(&fields, "nanos"));
            if fields.is_empty() || (secs == GO_ZERO_TIME && nanos == 0) {
                return Ok(None);
            }
            let nanos = u32::try_from(nanos).ok().filter(|n| *n < 1_000_000_000);
            let Some(t) = nanos.and_then(|n| chrono::DateTime::from_timestamp(secs, n)) else {
                return err(format!(
                    "time out of range: {secs}s {}ns",
                    int(&fields, "nanos")
                ));
            };
            let format = if message == "meta.v1.Time" {
                "%Y-%m-%dT%H:%M:%SZ"
            } else {
                "%Y-%m-%dT%H:%M:%S%.6fZ"
            };
            json!(t.format(format).to_string())
        }
        "intstr.IntOrString" => {
            if int(&fields, "type") == 1 {
                fields.remove("strVal").unwrap_or(json!(""))
            } else {
                json!(int(&fields, "intVal"))
            }
        }
        "resource.Quantity" => match fields.remove("string") {
            Some(Value::String(s)) if !s.is_empty() => json!(s),
            _ => json!("0"),
        },
        "runtime.RawExtension" | "meta.v1.FieldsV1" => {
            let raw = fields
                .remove("raw")
                .or_else(|| fields.remove("Raw"))
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(raw)
                .map_err(|e| DecodeError(e.to_string()))?;
            if bytes.is_empty() {
                return Ok(None);
            }
            serde_json::from_slice(&bytes)
                .map_err(|e| DecodeError(format!("an embedded object is not JSON: {e}")))?
        }
        _ => Value::Object(fields),
    }))
}

#[cfg(test)]
mod tests;
