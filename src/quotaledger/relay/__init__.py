"""The relay's domain: channels (upstreams) and the pipeline a relayed request goes through,
with no HTTP in it."""
