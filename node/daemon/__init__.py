"""What `start` runs: the supervisor's loop, its worker pool, the outbox and the heartbeat process."""
