"""PostgreSQL: the pool, the one Records class over named queries, the migrations."""
