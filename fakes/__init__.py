"""Fakes of the services tutor talks to (Slack, OpenAI), served on 127.0.0.1 for the
tests and the benchmarks."""
