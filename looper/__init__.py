"""The engine of tutor: models, store, core operations, completion and the loop.

Nothing here knows about Slack; front ends (the CLI, the Slack bot) call the core
operations and hand the looper a sink to deliver answers to.
"""
