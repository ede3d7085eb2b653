"""Root conftest: the harness's pytest plugin is loaded through its pytest11 entry point.

Tests of the harness itself live in tests/, chaos scenarios in scenarios/.
"""
