#!/usr/bin/env python3
"""
Write grafana-dashboard.yaml (the ConfigMap Grafana's dashboard sidecar
loads) from dashboard.json, the dashboard as Grafana exports it.

Run it after every change to dashboard.json:

    python3 deploy/monitoring/sync-dashboard.py

tests/deploy/test_monitoring.py fails while the two differ.
"""

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

HEADER = """\
# GENERATED from dashboard.json by sync-dashboard.py: edit dashboard.json and
# run `python3 deploy/monitoring/sync-dashboard.py`.
#
# Grafana's dashboard sidecar (kube-prometheus-stack: grafana.sidecar.dashboards)
# loads every ConfigMap labelled grafana_dashboard: "1"; without the sidecar,
# import dashboard.json in Grafana (Dashboards -> New -> Import).
apiVersion: v1
kind: ConfigMap
metadata:
  name: alertgateway-dashboard
  labels:
    app.kubernetes.io/name: alertgateway
    app.kubernetes.io/part-of: kubernaut
    grafana_dashboard: "1"
data:
  alertgateway.json: |
"""


def main() -> None:
    text = (HERE / "dashboard.json").read_text()
    json.loads(text)  # refuse to embed a broken dashboard
    body = "".join(f"    {line}\n" if line else "\n" for line in text.splitlines())
    (HERE / "grafana-dashboard.yaml").write_text(HEADER + body)


if __name__ == "__main__":
    main()
