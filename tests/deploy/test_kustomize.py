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

from tests.deploy.kustomize import KustomizeError, Manifest, build, config_map_hash, json_patch, merge, set_image


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


class GeneratorTests(TestCase):
    """
    C{configMapGenerator}, C{components} and JSON patches.
    """

    def write(self, files: dict[str, Any]) -> Path:
        root = Path(self.mktemp())
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content if isinstance(content, str) else yaml.safe_dump(content), encoding="utf-8")
        return root

    def test_hash_is_kustomizes(self) -> None:
        """
        The suffix is the one kustomize 5 gives the same data (taken from
        C{kubectl kustomize}): it does not depend on the name, and Go's
        escaping of < > & is part of what is hashed.
        """
        self.assertEqual(config_map_hash({"data": {"f.txt": "a: 1\n"}}), "mh6mf4mh59")
        self.assertEqual(config_map_hash({"metadata": {"name": "x"}, "data": {"f.txt": "a: 1\n"}}), "mh6mf4mh59")
        self.assertNotEqual(config_map_hash({"data": {"f": "<"}}), config_map_hash({"data": {"f": "&"}}))

    def test_generated_and_replaced(self) -> None:
        """
        A generated ConfigMap is named after its content, the pod template
        mounting it follows the name, and an overlay's generator with
        C{behavior: replace} changes the content (so the name) and keeps
        the base's labels.
        """
        root = self.write(
            {
                "base/kustomization.yaml": {
                    "resources": ["app.yaml"],
                    "configMapGenerator": [
                        {"name": "conf", "files": ["app.conf"], "options": {"labels": {"app": "x"}}}
                    ],
                },
                "base/app.conf": "one\n",
                "base/app.yaml": {
                    **deployment(),
                    "spec": {"template": {"spec": {"volumes": [{"name": "c", "configMap": {"name": "conf"}}]}}},
                },
                "overlay/kustomization.yaml": {
                    "resources": ["../base"],
                    "namespace": "n",
                    "configMapGenerator": [{"name": "conf", "behavior": "replace", "files": ["app.conf"]}],
                },
                "overlay/app.conf": "two\n",
            }
        )
        for directory, content in (("base", "one\n"), ("overlay", "two\n")):
            configmap, app = build(root / directory)
            self.assertEqual(configmap["data"], {"app.conf": content})
            self.assertEqual(configmap["metadata"]["labels"], {"app": "x"})
            name = f"conf-{config_map_hash(configmap)}"
            self.assertEqual(configmap["metadata"]["name"], name)
            self.assertEqual(app["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"], name)

    def test_components(self) -> None:
        """
        A component adds its resources to the kustomization including it,
        which then applies its namespace to them; a kustomization where a
        component is expected (or the reverse) is refused.
        """
        component = {"apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component", "resources": ["s.yaml"]}
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}
        root = self.write(
            {
                "extra/kustomization.yaml": component,
                "extra/s.yaml": service,
                "app/kustomization.yaml": {"components": ["../extra"], "namespace": "n"},
                "wrong/kustomization.yaml": {"resources": ["../extra"]},
            }
        )
        [built] = build(root / "app")
        self.assertEqual(built["metadata"], {"name": "s", "namespace": "n"})
        self.assertRaises(KustomizeError, build, root / "wrong")

    def test_json_patch(self) -> None:
        """
        JSON patch operations add (at an index, or at the end with C{-}),
        replace and remove; a C{test} that does not hold fails the build.
        """
        document = {"a": [1, 2], "b": {"c": 1}}
        patched = json_patch(
            document,
            [
                {"op": "add", "path": "/a/0", "value": 0},
                {"op": "add", "path": "/a/-", "value": 3},
                {"op": "test", "path": "/b/c", "value": 1},
                {"op": "replace", "path": "/b/c", "value": 2},
                {"op": "remove", "path": "/a/1"},
            ],
        )
        self.assertEqual(patched, {"a": [0, 2, 3], "b": {"c": 2}})
        self.assertEqual(document, {"a": [1, 2], "b": {"c": 1}})
        self.assertRaises(KustomizeError, json_patch, document, [{"op": "test", "path": "/b/c", "value": 9}])
        self.assertRaises(KustomizeError, json_patch, document, [{"op": "replace", "path": "/a/5", "value": 9}])
        self.assertRaises(KustomizeError, json_patch, document, [{"op": "move", "path": "/a", "from": "/b"}])


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
