"""The aggregator role: round state machine, assigners, straggler policies, persistence, servicer."""
