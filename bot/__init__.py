"""The Slack bridge: Bolt in Socket Mode, the /tutor router, events and the Slack sink.

Everything that speaks Slack lives here; storage is reached only through the core operations
of `looper.core`.
"""
