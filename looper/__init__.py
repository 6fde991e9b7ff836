"""The engine of tutor: models, store, core operations, completion and the loop.

Nothing here knows about any chat service: front ends (the CLI, the chat bot in `bot/`) call
the core operations, file threads under keys of their own, and hand the looper a sink to
deliver answers to.
"""
