"""The packet registry: channels that fleets of edge runtimes follow, and staged rollouts (docs/fleet.md)."""
