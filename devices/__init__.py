"""edgeprune.devices: target device profiles, the on-device profiling agent, remote transport.

Never imports torch: the agent runs on devices that have none.
"""
