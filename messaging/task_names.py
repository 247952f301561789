"""The Celery task and queue names, shared by the worker that defines the tasks and whoever sends them."""

BATCH_TASK = "messaging.run_batch"
SEND_TASK = "messaging.send_message"
# Retention of messages and attempts; the name is from when it pruned attempts only, and stays so
# that a task queued by an older beat still finds its worker.
PRUNE_TASK = "messaging.prune_attempts"
# Delivery receipts: expire the messages that never got a final one, drop those no message claimed.
RECEIPT_SWEEP_TASK = "messaging.sweep_receipts"
# Batches (and pruning) have a queue of their own, which every worker also consumes: behind a
# backlog of thousands of sends in one queue, the batch (and with it stale-claim recovery) would
# wait its turn.
BATCH_QUEUE = "messaging.batch"
# Status callbacks: the sweep that hands out due events (batch queue), and the POSTs of one batch of them.
CALLBACK_DISPATCH_TASK = "messaging.dispatch_callbacks"
CALLBACK_TASK = "messaging.send_callbacks"
# Callback tasks have their own queue, which every worker also consumes: a backlog of them never
# stands in front of sends, and how many run at once is bounded where they are handed out.
CALLBACK_QUEUE = "messaging.callbacks"
