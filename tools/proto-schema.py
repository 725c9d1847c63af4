#!/usr/bin/env python3
"""Writes crates/apiserver/src/protobuf/schema.txt: the protobuf field numbers
of the kinds ger serves, read from Kubernetes' generated.proto files.

usage: tools/proto-schema.py DIR > crates/apiserver/src/protobuf/schema.txt
DIR holds the v1.32 tree (api/core/v1/generated.proto,
apimachinery/pkg/apis/meta/v1/generated.proto, ...).
"""
import re
import sys

FILES = [
    "apimachinery/pkg/apis/meta/v1",
    "apimachinery/pkg/runtime",
    "apimachinery/pkg/runtime/schema",
    "apimachinery/pkg/util/intstr",
    "apimachinery/pkg/api/resource",
    "api/core/v1",
    "api/apps/v1",
    "api/coordination/v1",
    "api/policy/v1",
    "api/autoscaling/v1",
    "api/authentication/v1",
    "api/authorization/v1",
]
ROOTS = [
    "core.v1.Namespace", "core.v1.Node", "core.v1.Pod", "core.v1.Event",
    "core.v1.ReplicationController", "core.v1.Binding",
    "apps.v1.ControllerRevision", "apps.v1.DaemonSet", "apps.v1.Deployment",
    "apps.v1.ReplicaSet", "coordination.v1.Lease", "policy.v1.Eviction",
    "autoscaling.v1.Scale", "meta.v1.DeleteOptions",
    "core.v1.ConfigMap", "core.v1.Secret", "core.v1.ServiceAccount", "core.v1.Service",
    "core.v1.Endpoints",
    "authentication.v1.SelfSubjectReview", "authorization.v1.SelfSubjectAccessReview",
    "authorization.v1.SelfSubjectRulesReview",
]
# Fields Go embeds with `json:",inline"`: their fields belong to the parent in JSON.
INLINE = {
    ("core.v1.ConfigMapEnvSource", "localObjectReference"),
    ("core.v1.ConfigMapKeySelector", "localObjectReference"),
    ("core.v1.ConfigMapProjection", "localObjectReference"),
    ("core.v1.ConfigMapVolumeSource", "localObjectReference"),
    ("core.v1.SecretEnvSource", "localObjectReference"),
    ("core.v1.SecretKeySelector", "localObjectReference"),
    ("core.v1.SecretProjection", "localObjectReference"),
    ("core.v1.EphemeralContainer", "ephemeralContainerCommon"),
    ("core.v1.Probe", "handler"),
    ("core.v1.Volume", "volumeSource"),
}
SCALARS = {"string", "int32", "int64", "bool", "bytes", "double", "float"}


def short(pkg):
    for p in ("apimachinery.pkg.apis.", "apimachinery.pkg.util.", "apimachinery.pkg.api.",
              "apimachinery.pkg.", "api."):
        if pkg.startswith(p):
            return pkg[len(p):]
    return pkg


def parse(path):
    text = open(path).read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    pkg = short(re.search(r"package ([\w.]+);", text).group(1))
    msgs = {}
    for m in re.finditer(r"message (\w+) \{(.*?)\n\}", text, flags=re.S):
        fields = []
        for f in re.finditer(
                r"(optional|repeated)?\s*(map<\s*([\w.]+)\s*,\s*([\w.]+)\s*>|[\w.]+) (\w+) = (\d+);",
                m.group(2)):
            label, typ, mk, mv, name, num = f.groups()
            def ref(t):
                if t in SCALARS:
                    return t
                if t.startswith("."):
                    p, _, n = t[1:].rpartition(".")
                    return short(p) + "." + n
                return pkg + "." + t
            if mk:
                fields.append((int(num), name, "map", ref(mk), ref(mv)))
            else:
                fields.append((int(num), name, "repeated" if label == "repeated" else "optional", ref(typ)))
        msgs[pkg + "." + m.group(1)] = fields
    return msgs


def main():
    root = sys.argv[1]
    msgs = {}
    for f in FILES:
        msgs.update(parse(f"{root}/{f}/generated.proto"))
    seen, todo = [], list(ROOTS)
    while todo:
        name = todo.pop()
        if name in seen or name in SCALARS:
            continue
        seen.append(name)
        for f in msgs[name]:
            todo.extend(f[3:])
    print("# Protobuf field numbers of the kinds ger serves, from Kubernetes v1.32's")
    print("# generated.proto files (tools/proto-schema.py). One block per message:")
    print("# `message PKG.NAME`, then `NUMBER NAME optional|repeated|inline TYPE` or")
    print("# `NUMBER NAME map KEY VALUE`; an inline field's fields are its parent's in JSON.")
    for name in sorted(seen):
        print(f"message {name}")
        for f in sorted(msgs[name]):
            if (name, f[1]) in INLINE:
                f = (f[0], f[1], "inline") + f[3:]
            print(" ".join(str(x) for x in f))


main()
