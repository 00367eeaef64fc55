"""What a running job has: its state dir and typed record, processes (`proc`, the one module
that owns subprocess), the scheduler file and probe, TLS material, progress reports."""
