"""The designs tidegate is measured against."""
