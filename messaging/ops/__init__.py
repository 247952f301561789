"""Operations over PostgreSQL and Redis together: the audit, pruning, the /metrics exposition."""
