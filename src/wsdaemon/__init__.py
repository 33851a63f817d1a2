"""
wsdaemon: a WebSocket messaging daemon on Twisted and Autobahn.

Run it with C{twistd -n wsdaemon --config etc/wsdaemon.ini}; write your own
reply strategy with L{wsdaemon.strategies} (see ARCHITECTURE.md for the
layers).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wsdaemon")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
