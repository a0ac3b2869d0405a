"""
The Python kustomize subset of L{tests.deploy.kustomize}, on small
kustomizations written by each test, so it is trusted where kubectl is not
installed to compare with (where it is, L{tests.deploy.test_manifests}
compares the real overlays).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from twisted.trial.unittest import TestCase

from tests.deploy.kustomize import KustomizeError, Manifest, build, merge, set_image


def deployment(name: str = "app", image: str = "app:1.0") -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 3,
            "template": {
                "spec": {
                    "initContainers": [{"name": "init", "image": image}],
                    "containers": [
                        {"name": "main", "image": image, "env": [{"name": "A", "value": "1"}]},
                        {"name": "side", "image": "other:2"},
                    ],
                    "volumes": [{"name": "v", "emptyDir": {}}],
                }
            },
        },
    }


class BuildTests(TestCase):
    """
    L{build} on kustomizations in a temporary directory.
    """

    def write(self, files: dict[str, Any]) -> Path:
        """
        Write YAML files (a list value: several documents) under a fresh
        directory, returning it.
        """
        root = Path(self.mktemp())
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            documents = content if isinstance(content, list) else [content]
            path.write_text(yaml.safe_dump_all(documents), encoding="utf-8")
        return root

    def test_resources_namespace_images(self) -> None:
        """
        Resources are read from files and base directories; the overlay's
        namespace is set on namespaced resources and renames Namespace
        objects; images are replaced in containers and init containers;
        the output is in kustomize's legacy kind order.
        """
        root = self.write(
            {
                "base/kustomization.yaml": {"resources": ["all.yaml"], "namespace": "one"},
                "base/all.yaml": [
                    deployment(),
                    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "app"}},
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "one"}},
                    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}},
                ],
                "overlay/kustomization.yaml": {
                    "resources": ["../base"],
                    "namespace": "two",
                    "images": [{"name": "app", "newName": "registry/app", "newTag": "2.0"}],
                },
            }
        )
        manifests = build(root / "overlay")
        self.assertEqual(
            [(m["kind"], m["metadata"]["name"], m["metadata"].get("namespace")) for m in manifests],
            [
                ("Namespace", "two", None),
                ("ClusterRole", "r", None),
                ("Service", "app", "two"),
                ("Deployment", "app", "two"),
            ],
        )
        pod = manifests[-1]["spec"]["template"]["spec"]
        self.assertEqual(
            [c["image"] for c in pod["initContainers"] + pod["containers"]],
            ["registry/app:2.0", "registry/app:2.0", "other:2"],
        )

    def test_patches(self) -> None:
        """
        A strategic-merge patch file changes the resource of its kind and
        name: containers merge by name, env by name, a null removes a key,
        and C{$patch: delete} removes a list item or a whole resource.
        """
        patch = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "app"},
            "spec": {
                "replicas": 1,
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "main", "env": [{"name": "B", "value": "2"}]},
                            {"name": "side", "$patch": "delete"},
                        ],
                        "initContainers": None,
                    }
                },
            },
        }
        delete = {"$patch": "delete", "apiVersion": "v1", "kind": "Service", "metadata": {"name": "app"}}
        root = self.write(
            {
                "kustomization.yaml": {
                    "resources": ["app.yaml", "service.yaml"],
                    "patches": [{"path": "patch.yaml"}, {"path": "delete.yaml"}],
                },
                "app.yaml": deployment(),
                "service.yaml": {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "app"}},
                "patch.yaml": patch,
                "delete.yaml": delete,
            }
        )
        [result] = build(root)
        spec = result["spec"]["template"]["spec"]
        self.assertEqual(result["spec"]["replicas"], 1)
        self.assertNotIn("initContainers", spec)
        self.assertEqual(
            spec["containers"],
            [{"name": "main", "image": "app:1.0", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}],
        )
        self.assertEqual(spec["volumes"], [{"name": "v", "emptyDir": {}}])

    def test_errors(self) -> None:
        """
        What kustomize refuses, or this renderer does not implement, is an
        error: an unsupported key, a missing resource, a patch matching
        nothing, a resource given twice, a file outside the kustomization.
        """
        cases: list[dict[str, Any]] = [
            {"kustomization.yaml": {"resources": ["a.yaml"], "commonLabels": {"a": "b"}}, "a.yaml": deployment()},
            {"kustomization.yaml": {"resources": ["missing.yaml"]}},
            {
                "kustomization.yaml": {"resources": ["a.yaml"], "patches": [{"path": "p.yaml"}]},
                "a.yaml": deployment(),
                "p.yaml": deployment(name="other"),
            },
            {"kustomization.yaml": {"resources": ["a.yaml", "b.yaml"]}, "a.yaml": deployment(), "b.yaml": deployment()},
            {
                "kustomization.yaml": {"resources": ["a.yaml"], "patches": [{"path": "p.yaml", "target": {}}]},
                "a.yaml": deployment(),
                "p.yaml": deployment(),
            },
        ]
        for files in cases:
            self.assertRaises(KustomizeError, build, self.write(files))
        root = self.write({"k/kustomization.yaml": {"resources": ["../a.yaml"]}, "a.yaml": deployment()})
        self.assertRaises(KustomizeError, build, root / "k")


class MergeTests(TestCase):
    """
    L{merge} and L{set_image} on their own.
    """

    def test_merge_keys(self) -> None:
        """
        Volume mounts merge by mount path and container ports by
        containerPort; other lists are replaced.
        """
        original = {
            "volumeMounts": [{"name": "a", "mountPath": "/a"}],
            "ports": [{"containerPort": 80, "name": "http"}],
            "args": ["x", "y"],
        }
        patch = {
            "volumeMounts": [{"name": "b", "mountPath": "/a", "readOnly": True}],
            "ports": [{"containerPort": 81}],
            "args": ["z"],
        }
        self.assertEqual(
            merge(original, patch),
            {
                "volumeMounts": [{"name": "b", "mountPath": "/a", "readOnly": True}],
                "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 81}],
                "args": ["z"],
            },
        )
        self.assertEqual(original["args"], ["x", "y"], "the original is not changed")

    def test_images(self) -> None:
        """
        Only images of the given name change: a new tag, a new name
        keeping the tag, a digest replacing the tag; registries with ports
        are not mistaken for tags.
        """
        cases = [
            ("app:1", {"name": "app", "newTag": "2"}, "app:2"),
            ("app:1", {"name": "app", "newName": "r.io/app"}, "r.io/app:1"),
            ("app:1", {"name": "app", "digest": "sha256:ab"}, "app@sha256:ab"),
            ("r:5000/app", {"name": "r:5000/app", "newTag": "3"}, "r:5000/app:3"),
            ("application:1", {"name": "app", "newTag": "2"}, "application:1"),
        ]
        for image, change, expected in cases:
            manifest: Manifest = {"kind": "Pod", "spec": {"containers": [{"name": "c", "image": image}]}}
            set_image(manifest, change)
            self.assertEqual(manifest["spec"]["containers"][0]["image"], expected, (image, change))
