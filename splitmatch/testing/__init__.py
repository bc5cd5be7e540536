"""Tools for testing code written for a GPU on a CPU.

``host_syncs`` runs such code on an emulated device and counts what would make the host wait
for a GPU (synchronisations) and what it sends to it (host-to-device copies and bytes). Used by
the tests and the benchmarks; nothing of splitmatch imports this part, and it imports nothing
of splitmatch.
"""
