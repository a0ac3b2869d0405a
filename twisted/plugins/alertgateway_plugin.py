"""
Registers C{twistd alertgateway}.  Imports nothing heavy and nothing that
installs a reactor: twistd loads every plugin just to list them.
"""

from twisted.application.service import ServiceMaker

alertgateway = ServiceMaker(
    "alertgateway",
    "alertgateway.app.tap",
    "Alert webhook gateway: Alertmanager/Grafana to the Alert Processor",
    "alertgateway",
)
