"""pursuit.ui."""
