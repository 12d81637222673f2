"""The vendor test application: one stdlib service made into three trading components."""
