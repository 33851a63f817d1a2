# A third party's Twisted plugin file: makes the "shout" strategy known by name.
from shout_strategy import shout  # noqa: F401
