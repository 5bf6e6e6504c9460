"""Topologies beyond one star: middle (regional) aggregators and schedules."""
