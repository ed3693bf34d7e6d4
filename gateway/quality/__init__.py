"""Measuring routing on a team's own traffic: shadow judging (shadow, judging), clients' feedback
(feedback), prompt capture (capture), the quality estimate (report, stats) and the export of labelled
traffic for retraining the router (export)."""
