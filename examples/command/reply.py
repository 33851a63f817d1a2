#!/usr/bin/env python3
"""
The seed's loop as a `strategy = command` backend: read a line, print a reply.

Each text message from the client is one line on stdin; each line printed is
one message back. Flush after each line: a pipe is block-buffered otherwise,
and the reply would wait for the buffer to fill.
"""

import sys

for line in sys.stdin:
    print("reply: " + line.rstrip("\n"), flush=True)
