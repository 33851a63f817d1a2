# The twistd plugin: wiring only. The tap module is imported lazily, when the
# command is used, so that `twistd --help` stays fast.
from twisted.application.service import ServiceMaker

wsdaemon = ServiceMaker(
    "wsdaemon",
    "wsdaemon.tap",
    "A WebSocket messaging daemon (echo, scripted replies, human operators).",
    "wsdaemon",
)
