"""pursuit.agent."""
