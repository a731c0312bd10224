"""The node application: config, clock, sequence numbers, flash store,
batching, transports and the asyncio app that ties them together."""
