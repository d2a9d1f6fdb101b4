"""The services: every change an entry point can ask for, with its rules, in one place.

The CLI, the HTTP API, the review UI and the daemon parse their input, call one function
here and print (or return) the result. A service validates (text limits, adapters of
another base model), writes in its own transaction(s), and announces to the plugins
*after* each commit exactly what that commit changed, through an `Announcer`. A partial
failure therefore still announces what was saved.
"""

from catalogcap.services.announce import SILENT, Announcer, Callbacks, Deferred

__all__ = ["SILENT", "Announcer", "Callbacks", "Deferred"]
