"""Notifications: every model has a topic, and its subscribers are told what happens to it.

A topic is its model, resolved lazily: no table, so every model has one from the moment it exists
(nothing to create with it, nothing to backfill for models that came before) and loses it (with its
subscriptions, by foreign key) when it is deleted. Topic events come from the durable event log; this
part is one more consumer of it, no second bus: ``events`` maps log topics (``geo.run.*``,
``geo.results.available``, ``registry.*``) to the event types subscribers see.

Modules:

- ``events`` — the table of log topics to event types, and the notification body every sink sends.
- ``models`` — subscriptions, deliveries (the rows of the delivery queue), the fan-out's cursor.
- ``schemas`` / ``service`` / ``api`` — subscriptions (webhook, NATS, MQTT), deliveries, the topic's
  server-sent events (``GET /api/v1/topics/{model}/events``, resumable with ``Last-Event-ID``).
- ``fanout`` — follows the log from a persisted cursor, writes one delivery per event and subscriber
  (deliveries and the cursor in one transaction: nothing lost, nothing twice).
- ``dispatch`` — the two claimed queues: the cursor (one fan-out round at a time) and the deliveries
  (only the head of each subscription's line is claimable: events arrive in order).
- ``runner`` — one attempt at a delivery and its outcome: delivered, retried after a doubling wait, or dead.
- ``sinks`` — a signed webhook POST (through ``modelyard.fetch``'s URL guard), a NATS or MQTT publish.
- ``signing`` — the webhook signature (HMAC-SHA256 over ``"{timestamp}.{body}"``).
- ``workflows`` — the DBOS workflows running the two queues' claims.
"""
