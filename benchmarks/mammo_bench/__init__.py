"""Latency, memory and throughput measurements of the device path on real hardware."""
