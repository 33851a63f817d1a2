"""
The webhook strategy: each connection's events (connect, message,
disconnect) POSTed, signed, to the team's backend; its answers say what the
client gets back.
"""
