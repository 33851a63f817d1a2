"""
The WebSocket mock server for test suites: L{server.MockServer} (one real
wsdaemon on free loopback ports, C{ws://} and C{wss://}), L{ca} (the
throwaway CA its C{wss://} uses), and L{command}, C{wsdaemon-mock}: the same
server for a test suite in any language. The pytest fixture
(L{wsdaemon.pytest_plugin}) drives it too.
"""
