"""The chaos suite (issue 14): a mixed load over a NATS cluster and replicas of every service while
each of them, the NATS leader, a follower and Postgres are killed in turn."""
