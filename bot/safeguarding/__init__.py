"""Safeguarding: spotting disclosures (detector) and handing them, durably, to the school's DSL.

The hand-off side is split into small modules with one job each:

* ``store``      the database models (Disclosure, AuditEvent, OutboxMessage) and engines
* ``crypto``     encryption at rest of the child's words
* ``spool``      the append-only local file used when the database is unreachable
* ``service``    ``record_disclosure`` (DB first, spool second, never raises) and ``replay_spool``
* ``notifiers``  e-mail and Slack/Teams webhook senders; alerts never carry the child's words
* ``outbox``     exactly-once delivery with back-off, and escalation to deputy DSLs
* ``reconcile``  recovers disclosures that reached Rasa while the action server was down
* ``worker``     runs all of the above on a timer in the action server
* ``cli``        ``schoolguide disclosures ...`` for the DSL

Nothing is imported here so that importing the detector stays cheap.
"""
