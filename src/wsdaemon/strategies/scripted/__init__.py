"""
The scripted reply strategy: a WebSocket mock server driven by a rules file.

C{rules} loads and checks the file, C{template} compiles reply templates,
C{lines} finds line numbers in TOML, C{strategy} runs the rules per
connection.
"""
