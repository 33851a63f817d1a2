"""
C{python -m wsdaemon.mock}: the C{wsdaemon-mock} command.
"""

from wsdaemon.mock.command import main

raise SystemExit(main())
