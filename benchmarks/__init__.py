"""Performance measurements that print numbers (never timed assertions)."""
